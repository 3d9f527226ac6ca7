"""One wrapper over seq2seq (T5) and causal (Llama-style) students.

Methods see only `Student.score(inputs, targets)`: the logits aligned with the target tokens, the
target ids and a mask, identical in shape for both families, so every loss runs on both.

Full fine-tuning, or LoRA through peft (`Student.load(..., lora=LoraSpec(...))`): the base model is
frozen and only the adapter trains. A LoRA student saves in peft's own format: the adapter
(`adapter_config.json` + `adapter_model.safetensors`, a few MB) with the reference to its base
(`base_model_name_or_path`: an absolute local folder, e.g. a tiny model in the store, or a hub id)
and the tokenizer; `Student.load(folder)` sees the adapter, loads the base and puts the adapter on
it. Not merged, because (1) a checkpoint is then a few MB instead of a second copy of the model
(a 7B student would write 13 GB per `best`/`last`), (2) the trainable tensors saved are exactly
those the optimizer state refers to, so a killed run resumes exactly, and (3) the folder is what
vLLM serves as a LoRA adapter on top of its base (`teacher: {name: vllm, lora: ...}`). The price:
the base must still be there when the checkpoint is loaded (the store's tiny models are
content-addressed and never move; a hub base is read from the HF cache). `merged()` gives a plain
model for tools that want one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.models import Family, load_model

# The causal family reads "<input>\n<target></s>"; the newline marks where the answer starts.
CAUSAL_SEP = "\n"

# LoRA target modules per family when the spec names none: the attention query and value
# projections (T5's are called q and v; Llama's q_proj and v_proj, TDG's setting).
LORA_TARGETS: dict[str, list[str]] = {"t5": ["q", "v"], "llama": ["q_proj", "v_proj"]}
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Scored:
    """Per-token view of a batch of (input, target) pairs.

    logits [B, T, V] predict targets [B, T]; mask [B, T] is True on target tokens (EOS included).
    """

    logits: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    # last hidden states (only when asked for: score_encoded's `hidden=True`), [B, T', d], and
    # where they hold tokens, [B, T']: T5's decoder states over the target (they read the input
    # through cross-attention); a causal student's states over input and target together
    hidden: torch.Tensor | None = None
    hidden_mask: torch.Tensor | None = None

    def token_nll(self) -> torch.Tensor:
        """[B, T] negative log-likelihood of each target token (0 where masked)."""
        nll = F.cross_entropy(self.logits.transpose(1, 2), self.targets, reduction="none")
        return nll * self.mask

    def sequence_nll(self) -> torch.Tensor:
        """[B] mean NLL over each sequence's target tokens."""
        return self.token_nll().sum(1) / self.mask.sum(1).clamp(min=1)


@dataclass
class Encoded:
    """Inputs encoded once, to score several targets each (Student.encode / score_encoded).

    T5: the encoder's states [B, S, d] and mask [B, S]; a causal student has no separate encoder
    (its input and target are one sequence), so only the texts are kept."""

    inputs: list[str]
    states: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def detach(self) -> Encoded:
        return Encoded(self.inputs, None if self.states is None else self.states.detach(), self.mask)


@dataclass
class Student:
    model: Any
    tokenizer: Any
    family: Family
    max_input_len: int = 256
    max_target_len: int = 128
    # token ids by (text, max length, special tokens): training scores the same inputs and teacher
    # chains every epoch (QCRD: m + k candidates per example per step), and tokenizing them again
    # costs a fifth of a small model's forward pass on CPU
    _ids: dict[tuple[str, int, bool], list[int]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, name_or_path: str | Path, device: str = "cpu", lora: Any = None, seed: int = 0, **lengths: int) -> Student:
        """A plain model (hub id or folder), or a saved LoRA student (a folder with an adapter).

        `lora` (a harness.config.LoraSpec or a dict of its fields) puts a fresh adapter on a plain
        model, initialised from `seed` (the global RNG is left as it was).
        """
        adapter = Path(name_or_path) / ADAPTER_CONFIG
        if adapter.is_file():
            from peft import PeftModel
            from transformers import AutoTokenizer

            base = json.loads(adapter.read_text())["base_model_name_or_path"]
            model, _, family = load_model(base, device)
            tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
            if family == "llama":
                tokenizer.padding_side = "left"
            model = PeftModel.from_pretrained(model, str(name_or_path), is_trainable=True).to(device)
            return cls(model, tokenizer, family, **lengths)
        model, tokenizer, family = load_model(name_or_path, device)
        student = cls(model, tokenizer, family, **lengths)
        if lora is not None:
            student.add_lora(lora, base=str(name_or_path), seed=seed)
        return student

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def add_lora(self, lora: Any, base: str, seed: int = 0) -> None:
        """Freeze the model and train a LoRA adapter on it (peft), saved with `base` as its base."""
        from peft import LoraConfig, TaskType, get_peft_model

        opts = lora if isinstance(lora, dict) else lora.model_dump()
        targets = opts.get("target_modules") or LORA_TARGETS[self.family]
        config = LoraConfig(
            task_type=TaskType.SEQ_2_SEQ_LM if self.family == "t5" else TaskType.CAUSAL_LM,
            r=opts.get("r", 8),
            lora_alpha=opts.get("alpha", 16),
            lora_dropout=opts.get("dropout", 0.05),
            target_modules=list(targets),
        )
        # a local base is referenced by its absolute path, so the checkpoint loads from anywhere
        ref = str(Path(base).resolve()) if Path(base).is_dir() else base
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                self.model = get_peft_model(self.model, config)
            except ValueError as e:
                from harness.errors import UserError

                raise UserError(f"student.lora: {str(e).splitlines()[0]}") from None
        self.model.peft_config["default"].base_model_name_or_path = ref

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The parameters the optimizer updates: all of them, or the adapter's under LoRA."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def restore(self, folder: str | Path) -> None:
        """Put the weights saved in `folder` (by `save`) into this student, in place for LoRA."""
        if self.is_lora:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            # peft saves the adapter "default" in the folder itself and any other in a subfolder
            for name in self.model.peft_config:
                sub = Path(folder) if name == "default" else Path(folder) / name
                weights = load_file(str(sub / "adapter_model.safetensors"), device=str(self.device))
                set_peft_model_state_dict(self.model, weights, adapter_name=name)
        else:
            self.model = Student.load(folder, device=str(self.device)).model

    def merged(self) -> Any:
        """A plain transformers model: the adapter merged into a copy of the base under LoRA."""
        if not self.is_lora:
            return self.model
        import copy

        return copy.deepcopy(self.model).merge_and_unload()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_text(self, input_text: str) -> str:
        """What generation continues from."""
        return input_text + CAUSAL_SEP if self.family == "llama" else input_text

    def score(self, inputs: list[str], targets: list[str]) -> Scored:
        """Run the model on (input, target) pairs with teacher forcing."""
        if self.family == "t5":
            ids, attn = self._batch(inputs, self.max_input_len)
            labels = self._labels(targets)
            out = self.model(input_ids=ids, attention_mask=attn, labels=labels)
            mask = labels != -100
            return Scored(out.logits, labels.clamp(min=0), mask)
        return self._score_causal(inputs, targets)

    def token_ids(self, texts: list[str], max_length: int, special: bool = True) -> list[list[int]]:
        """The tokenizer's ids of each text (truncated to max_length), cached across calls."""
        cache = self._ids
        missing = [t for t in dict.fromkeys(texts) if (t, max_length, special) not in cache]
        if missing:
            if len(cache) > 1_000_000:  # a bound, far above any train set's distinct texts
                cache.clear()
                missing = list(dict.fromkeys(texts))
            enc = self.tokenizer(missing, add_special_tokens=special, truncation=True, max_length=max_length)
            for t, ids in zip(missing, enc.input_ids, strict=True):
                cache[(t, max_length, special)] = ids
        return [cache[(t, max_length, special)] for t in texts]

    def _pad(self, rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad rows to one width: (ids [B, T], mask [B, T]) on the student's device."""
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [value] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        return ids, mask

    def _batch(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._pad(self.token_ids(texts, max_length), self.tokenizer.pad_token_id)

    def _labels(self, targets: list[str]) -> torch.Tensor:
        """T5 target ids [B, T], -100 on padding."""
        return self._pad(self.token_ids(targets, self.max_target_len), -100)[0]

    def _score_causal(self, inputs: list[str], targets: list[str], hidden: bool = False) -> Scored:
        """Causal family: concatenate, right-pad, and score only the target part."""
        eos = self.tokenizer.eos_token_id
        prompts = self.token_ids([self.prompt_text(x) for x in inputs], self.max_input_len)
        answers = self.token_ids(targets, self.max_target_len - 1, special=False)
        rows = [p + t + [eos] for p, t in zip(prompts, answers, strict=True)]
        ids, attn = self._pad(rows, self.tokenizer.pad_token_id)
        labels, _ = self._pad([[-100] * len(p) + t + [eos] for p, t in zip(prompts, answers, strict=True)], -100)
        out = self.model(input_ids=ids, attention_mask=attn, output_hidden_states=hidden)
        labels = labels[:, 1:]
        mask = labels != -100
        if not hidden:
            return Scored(out.logits[:, :-1], labels.clamp(min=0), mask)
        return Scored(out.logits[:, :-1], labels.clamp(min=0), mask, out.hidden_states[-1], attn.bool())

    def encode(self, inputs: list[str]) -> Encoded:
        """Run T5's encoder once over `inputs`, for score_encoded to reuse across many targets."""
        if self.family != "t5":
            return Encoded(list(inputs))
        ids, attn = self._batch(inputs, self.max_input_len)
        states = self.model.get_encoder()(input_ids=ids, attention_mask=attn).last_hidden_state
        return Encoded(list(inputs), states, attn)

    def score_encoded(self, enc: Encoded, rows: list[int], targets: list[str], hidden: bool = False) -> Scored:
        """`score(inputs[rows], targets)` with the inputs' encoder states from `enc` (T5: the
        encoder is not run again; row r of the result reads input rows[r]). `hidden` also returns
        the last hidden states at the target positions (Scored.hidden)."""
        if enc.states is None:  # causal: nothing to reuse
            if not hidden:
                return self.score([enc.inputs[r] for r in rows], targets)
            return self._score_causal([enc.inputs[r] for r in rows], targets, hidden=True)
        from transformers.modeling_outputs import BaseModelOutput

        index = torch.tensor(rows, device=enc.states.device)
        labels = self._labels(targets)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc.states.index_select(0, index)),
            attention_mask=enc.mask.index_select(0, index),
            labels=labels,
            output_hidden_states=hidden,
        )
        mask = labels != -100
        return Scored(out.logits, labels.clamp(min=0), mask, out.decoder_hidden_states[-1] if hidden else None, mask if hidden else None)

    def features(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(states [B, T, d], mask [B, T]): what the student's encoder makes of `texts` (T5: its
        encoder; causal: the transformer under the LM head), for heads such as QCRD's judge."""
        ids, attn = self._batch(texts, self.max_input_len + self.max_target_len)
        body = self.model.get_encoder() if self.family == "t5" else self.model.get_decoder()
        states = body(input_ids=ids, attention_mask=attn).last_hidden_state
        return states, attn.bool()

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "d_model", None) or cfg.hidden_size)

    def save(self, out: Path) -> None:
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
