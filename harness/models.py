"""Student models: build tiny offline ones, and load any model (hub id or local directory).

A tiny model is a real Hugging Face model directory (config, weights, tokenizer written with
`save_pretrained`), so every other part of the project loads it exactly like a hub model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from harness.errors import UserError
from harness.settings import TinyConfig

Family = Literal["t5", "llama"]
FAMILIES: tuple[str, ...] = ("t5", "llama")

PAD, EOS, BOS, UNK = "<pad>", "</s>", "<s>", "<unk>"
# Part of a stored tiny model's cache key: bump it when the same TinyConfig builds a different
# model (2: the tiny T5's embedding std, so an old store's T5 at NLL ~65 is not reused; 3: digits
# keep their leading space in the tokenizer).
TINY_BUILD = 3
TINY_T5_EMBED_STD = 0.02  # the tiny T5's (tied) token embedding; LlamaConfig's initializer_range


def corpus(task: Any, examples: Iterable[Any], extra: Iterable[str] = ()) -> list[str]:
    """Text a tiny model's tokenizer is trained on: questions, gold answers and rationales
    (the task's own correct chain when it can write one), plus `extra` (e.g. teacher chains)."""
    texts: list[str] = []
    for ex in examples:
        texts += [ex.question, ex.answer]
        if ex.rationale:
            texts.append(ex.rationale)
        elif task.writes_chains:
            texts.append(task.write_chain(ex)[0])
    return texts + list(extra)


def train_tokenizer(texts: Iterable[str], vocab_size: int, family: Family) -> Any:
    """A byte-level BPE tokenizer trained on `texts`, with digits split one per token (as Llama's
    tokenizer does) so that arithmetic is learnable by a small model.

    A digit keeps the space before it (" 47" is " 4", "7"; Llama's tokenizer writes "▁", "4",
    "7"): a number's first digit is marked as such, and arith sequences are a sixth shorter (a
    question is 9 tokens instead of 12), which is a sixth less compute per training step."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, EOS, BOS, UNK]
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?[0-9]"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos_id = tok.token_to_id(EOS)
    bos_id = tok.token_to_id(BOS)
    # T5 appends </s> to every input; Llama prepends <s>. The causal training code appends EOS
    # to targets itself, so the causal tokenizer only adds BOS.
    if family == "t5":
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
        )
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        padding_side="right" if family == "t5" else "left",
    )


def build_tiny_model(family: Family, texts: Iterable[str], out: Path, cfg: TinyConfig = TinyConfig()) -> Path:
    """Train a tokenizer on `texts`, build a randomly initialised model, save both to `out`."""
    import torch
    from transformers import LlamaForCausalLM, T5ForConditionalGeneration

    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r} (choose from: {', '.join(FAMILIES)})")
    if cfg.d_model % cfg.n_heads or cfg.d_model // cfg.n_heads < 32:
        raise UserError(f"tiny model head size must be a whole number >= 32, got d_model={cfg.d_model}, n_heads={cfg.n_heads}")
    quiet_transformers()
    tokenizer = train_tokenizer(texts, cfg.vocab_size, family)
    torch.manual_seed(cfg.seed if cfg.seed is not None else 0)
    config = tiny_hf_config(family, cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
    model: Any = T5ForConditionalGeneration(config) if family == "t5" else LlamaForCausalLM(config)
    if family == "t5":
        # T5 initialises its token embedding with std 1.0, and transformers (>= 5) always ties
        # lm_head to it; T5 v1.1 (tie_word_embeddings=False, kept here: the papers' students)
        # does not rescale the decoder output, so the initial logits would have std
        # ~sqrt(d_model) and the untrained token NLL would be ~65 instead of ~log(vocab). The
        # embedding is re-drawn with the tiny Llama's std (initializer_range 0.02): both families
        # start with logits of std ~0.02 * sqrt(d_model) and an NLL near log(vocab), and differ in
        # architecture only. Not T5's other remedy (tie_word_embeddings=True: the original T5's
        # d_model**-0.5 output scaling): with the std-1.0 tied embedding the logit of the input
        # token itself stays ~sqrt(d_model) * d_model**-0.5 * sqrt(d_model) and the NLL starts at
        # ~log(vocab) + 1.4; an initializer_factor would rescale every weight and layer norm too.
        with torch.no_grad():
            model.shared.weight.normal_(0.0, TINY_T5_EMBED_STD)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_hf_config(family: Family, cfg: TinyConfig, vocab_size: int, pad_id: int = 0, eos_id: int = 1, bos_id: int = 2) -> Any:
    """The transformers config of a tiny student (also used to count its parameters in a dry run)."""
    from transformers import LlamaConfig, T5Config

    common = dict(vocab_size=vocab_size, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=bos_id)
    if family == "t5":
        return T5Config(
            d_model=cfg.d_model,
            d_kv=cfg.d_model // cfg.n_heads,
            num_heads=cfg.n_heads,
            d_ff=cfg.d_ff,
            num_layers=cfg.n_layers,
            num_decoder_layers=cfg.n_layers,
            feed_forward_proj="gated-gelu",  # T5 v1.1, the DSS/QCRD students
            # no dropout, like the tiny Llama: the families differ in architecture only, and
            # dropout's random masks cost a fifth of a CPU training step at this size
            dropout_rate=0.0,
            decoder_start_token_id=pad_id,
            tie_word_embeddings=False,  # T5 v1.1: no output rescaling (see build_tiny_model)
            **common,
        )
    return LlamaConfig(
        hidden_size=cfg.d_model,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=False,
        **common,
    )


def quiet_transformers() -> None:
    """No per-file progress bars or info logs from transformers: the pipeline shows its own."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def check_model_ref(name: str, what: str = "model") -> None:
    """Fail in seconds, before any work, when a model cannot load: a local folder that is missing
    or holds no config, or (offline) a hub id that is not in the Hugging Face cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise UserError(f"{what} {name!r}: the folder has no config.json (not a saved model)")
        return
    if name.startswith((".", "/", "~")) or path.exists():
        raise UserError(f"{what} {name!r}: model directory does not exist")
    if _hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise UserError(f"{what} {name!r}: not a local folder and not in the Hugging Face cache "
                            "(hub access is off: HF_HUB_OFFLINE=1)")


def load_model(name_or_path: str | Path, device: str = "cpu") -> tuple[Any, Any, Family]:
    """Load (model, tokenizer, family) from a local directory or a hub id.

    The family is read from the config: encoder-decoder models are "t5" (seq2seq), everything
    else "llama" (causal). A missing model fails with one line, in seconds when offline.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    quiet_transformers()
    name = str(name_or_path)
    local = Path(name).is_dir()
    if not local and (name.startswith((".", "/", "~")) or Path(name).exists()):
        raise UserError(f"model directory {name!r} does not exist")
    try:
        config = AutoConfig.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
        family: Family = "t5" if getattr(config, "is_encoder_decoder", False) else "llama"
        cls = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
        model = cls.from_pretrained(name)
    except (OSError, ValueError) as e:
        hint = " (hub access is off: HF_HUB_OFFLINE=1)" if _hub_offline() else ""
        raise UserError(f"cannot load model {name!r}{hint}: {str(e).splitlines()[0]}") from None
    if family == "llama":
        tokenizer.padding_side = "left"  # batched generation continues from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer, family
