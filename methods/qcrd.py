"""qcrd — Quality-guided Contrastive Rationale Distillation (Wang et al. 2024, arXiv 2405.13014).

DSS's two tasks ("predict: x -> gold label", "explain: x -> rationale", Sec. 3.1) with the
rationale task made contrastive (Sec. 3.2-3.3):

- positives S_pos: the example's first m teacher samples (the bank's, by sample index) whose
  answer agrees with their majority (self-consistency, Sec. 3.2.1; a gold-labelled bank keeps its
  own labels); m 5 at T 0.7 in the paper. `m: 1` is the ablation "w/o ED" (no extension and
  denoising: one teacher chain).
- negatives S_neg, k per example (k 1), from `negatives`:
  "self" (default): sampled at T 1.5 from the student as it was j iterations earlier (j 5; the
  self-adversarial generator, Sec. 3.2.1 and A.2), "teacher": the bank's minority answers among
  the m samples ("SC" of Table A.3), "fixed": a fixed generator, the DSS model of the same cell
  settings (options `dss:`), sampled the same way ("Fixed" of Table A.3). `k: 0` is "w/o NK".
- the quality judge D(x, r) in (0, 1) (Sec. 3.3.1, A.3): the student's encoder over "x \\n r" (a
  causal student: its last hidden states over the rationale task's sequence, see below),
  max-pooled over tokens, then two linear
  layers (ReLU between) and a sigmoid; pretrained `judge_pretrain_steps` (500) on teacher
  positives against teacher negatives (topped up with word-masked / word-replaced copies, A.3),
  then trained online with L_D. `judge: false` is "w/o QJ" (s_pos = 1, s_neg = 0, no L_D).

The loss of a batch (Eqs. 2-8), l(x, r) the mean token NLL of rationale r given "explain: x":

    L_D   = mean_i [ logsumexp_j s_neg_ij - logsumexp_j s_pos_ij ]                    (Eq. 2)
    L_cl  = mean_i [ s_pos_i * min_j l(x_i, r_pos_ij)
                     - beta * (1 - s_neg_i) * max_j min(l(x_i, r_neg_ij) - delta, 0) ]   (Eqs. 3-7)
    L     = a1 * L_pred + a2 * L_cl + a3 * 0.9^iteration * L_D                        (Eq. 8)

beta 0.2, delta 3, a1 = a2 = a3 = 0.5. s_pos_i / s_neg_i are the judge's scores of the rationale
the min / max picked, used as constant weights (detached: the student must not lower L_cl by
lowering the judge's scores; L_D is what trains the judge). L_D averages over examples with both
a positive and a negative; L_cl over examples with a positive. `scheme` replaces the min/max
(Table 5): minmax (default), maxmin, sampling (one of each at random), mean (plain means, no
quality weights), wmean (means of s_pos_j * l_pos_j and (1 - s_neg_j) * l~_neg_j).

"Iteration". The paper samples "previous iterations" of the student, keeps "a minimum of j
checkpoints" (A.2) and decays a3 "per iteration"; with a per-step iteration a3 would vanish within
a hundred of its 10,000 steps. Here an iteration is one checkpoint interval, `iteration_steps`
(default: the run's eval_every, where the DSS code it builds on saves a checkpoint): at the start
of iteration i the queue's oldest snapshot (the student j iterations earlier; the earliest one
while fewer exist) samples the negatives of every micro-batch of the iteration in large batches,
then a snapshot of the current student joins the queue and the oldest leaves it, and a3 =
0.5 * 0.9^i. Snapshots are the trainable weights (a LoRA adapter, or the whole model), kept in
memory when j of them fit in `snapshot_memory_mb`, else as files in the work folder.

The judge's features. T5 (`judge_features: encoder`): the student's encoder over "x \n r", a
pass of its own. A causal student has no separate encoder: its hidden states over the rationale
task's sequence ("explain: x \n r") are the judge's features, taken from the scoring pass itself,
which then runs with a graph for every candidate (L_D's gradients reach the student through
them). `judge_features: reuse` takes detached features from the scoring pass (T5: the decoder's
states over r; causal: as above) and trains the judge's head only: the cheapest form.

Cost. The rationale candidates of an example are scored in one batched pass that reuses T5's
encoder states (run once per example, Student.encode). For min/max/sampling schemes only the two
picked rationales need gradients: all m + k are scored without a graph, then the two picked are
scored again with one (exact: the same values, the same gradients).
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from harness.bank import label_by_majority
from harness.errors import UserError
from harness.student import Student
from harness.training import Item, TrainContext, TrainResult, fit, micro_batches
from methods.base import MethodDef
from methods.common import Reduction, nll_loss

CITATION = "Wang et al. 2024, QCRD: Quality-guided Contrastive Rationale Distillation for LLMs, arXiv 2405.13014"
SCHEMES = ("minmax", "maxmin", "sampling", "mean", "wmean")
SOURCES = ("self", "teacher", "fixed")
FEATURES = ("encoder", "reuse")
JUDGE_FILE = "judge.safetensors"


@dataclass(frozen=True)
class QCRDConfig:
    """Paper defaults (Sec. 4.1 Implementation details; A.2-A.4)."""

    predict_prefix: str = "predict: "
    explain_prefix: str = "explain: "
    a1: float = 0.5  # L_pred
    a2: float = 0.5  # L_cl
    a3: float = 0.5  # L_D, times a3_decay per iteration
    a3_decay: float = 0.9
    beta: float = 0.2
    delta: float = 3.0
    scheme: Literal["minmax", "maxmin", "sampling", "mean", "wmean"] = "minmax"
    m: int = 5  # teacher samples per example taken for positives (Table 6 top); 1 = "w/o ED"
    negatives: Literal["self", "teacher", "fixed"] = "self"  # Table A.3's negative source
    k: int = 1  # negatives per example (Table 6 bottom); 0 = "w/o NK"
    j: int = 5  # the generator is the student j iterations earlier (Table A.3)
    temperature: float = 1.5  # negative sampling temperature (Table A.5); 0 = greedy
    negative_max_new_tokens: int | None = None  # None: the student's max_target_len
    iteration_steps: int | None = None  # None: the run's eval_every (see the module docstring)
    judge: bool = True  # the quality judge; False = "w/o QJ"
    judge_pretrain_steps: int = 500
    judge_hidden: int | None = None  # width of the judge's first linear layer; None: the student's hidden size
    judge_features: Literal["encoder", "reuse"] = "encoder"
    judge_augment: bool = True  # A.3: balance pretraining negatives with word-masked / replaced copies
    snapshot_memory_mb: float = 1024.0  # j snapshots larger than this live on disk
    sample_batch_size: int = 64  # prompts per generate call when sampling negatives
    dss: dict[str, Any] = field(default_factory=dict)  # options of the DSS generator (negatives: fixed)

    def __post_init__(self) -> None:
        for name in ("a1", "a2", "a3", "beta", "delta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.a3_decay <= 1:
            raise ValueError(f"a3_decay must be in (0, 1], got {self.a3_decay}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.negatives not in SOURCES:
            raise ValueError(f"negatives must be one of {', '.join(SOURCES)}, got {self.negatives!r}")
        if self.judge_features not in FEATURES:
            raise ValueError(f"judge_features must be one of {', '.join(FEATURES)}, got {self.judge_features!r}")
        if self.m < 1 or self.k < 0 or self.j < 1:
            raise ValueError(f"need m >= 1, k >= 0, j >= 1; got m={self.m}, k={self.k}, j={self.j}")
        if self.temperature < 0 or (self.temperature == 0 and self.k > 1 and self.negatives != "teacher"):
            raise ValueError("temperature must be >= 0, and greedy sampling (0) gives one negative: use k <= 1")
        if self.iteration_steps is not None and self.iteration_steps < 1:
            raise ValueError(f"iteration_steps must be >= 1, got {self.iteration_steps}")
        if self.judge_pretrain_steps < 0 or self.sample_batch_size < 1:
            raise ValueError("judge_pretrain_steps must be >= 0 and sample_batch_size >= 1")
        if not isinstance(self.dss, dict):
            raise ValueError(f"dss must be a mapping of DSS options, got {self.dss!r}")

    @property
    def samples_negatives(self) -> bool:
        return self.k > 0 and self.negatives in ("self", "fixed")


# --------------------------------------------------------------------------- the loss, pure


def pick(scheme: str, values: torch.Tensor, mask: torch.Tensor, positive: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """[N] index of the rationale each row's many-to-one loss takes (minmax / maxmin / sampling).

    values, mask [N, M]: l(x_i, r_ij) and which j exist. minmax takes the min for positives and
    the max for negatives, maxmin the opposite, sampling one uniformly among the valid ones.
    Rows without a valid entry get index 0 (their term is masked out by the caller)."""
    if scheme == "sampling":
        u = torch.rand(values.shape, generator=generator, device="cpu").to(values.device)
        return u.masked_fill(~mask, -1.0).argmax(1)
    take_min = positive == (scheme == "minmax")
    v = values.detach().float()
    if take_min:
        return v.masked_fill(~mask, math.inf).argmin(1)
    return v.masked_fill(~mask, -math.inf).argmax(1)


def margin(l_neg: torch.Tensor, delta: float) -> torch.Tensor:
    """l~ = min(l - delta, 0): a negative already less likely than delta nats per token is left alone."""
    return torch.clamp(l_neg - delta, max=0.0)


def contrastive_loss(
    l_pos: torch.Tensor,
    pos_mask: torch.Tensor,
    l_neg: torch.Tensor,
    neg_mask: torch.Tensor,
    s_pos: torch.Tensor,
    s_neg: torch.Tensor,
    scheme: str = "minmax",
    beta: float = 0.2,
    delta: float = 3.0,
    pos_pick: torch.Tensor | None = None,
    neg_pick: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_cl of Eqs. 3-7, the mean over rows (examples) with at least one positive.

    l_pos [N, M], l_neg [N, K]: per-rationale losses; *_mask: which exist; s_pos [N, M], s_neg
    [N, K]: judge scores (1 and 0 without a judge), taken as constants. pos_pick / neg_pick [N]:
    the picked rationale per row (default: `pick` on the values). Rows without a negative have no
    negative term."""
    rows = pos_mask.any(1)
    if not rows.any():
        return l_pos.sum() * 0.0
    s_pos, s_neg = s_pos.detach(), s_neg.detach()
    has_neg = neg_mask.any(1)
    if scheme in ("mean", "wmean"):
        w_pos = s_pos if scheme == "wmean" else torch.ones_like(s_pos)
        w_neg = (1 - s_neg) if scheme == "wmean" else torch.ones_like(s_neg)
        pos_term = (w_pos * l_pos * pos_mask).sum(1) / pos_mask.sum(1).clamp(min=1)
        neg_term = (w_neg * margin(l_neg, delta) * neg_mask).sum(1) / neg_mask.sum(1).clamp(min=1)
    else:
        p = pick(scheme, l_pos, pos_mask, True, generator) if pos_pick is None else pos_pick
        pos_term = s_pos.gather(1, p[:, None])[:, 0] * l_pos.gather(1, p[:, None])[:, 0]
        if l_neg.shape[1]:
            q = pick(scheme, l_neg, neg_mask, False, generator) if neg_pick is None else neg_pick
            neg_term = (1 - s_neg.gather(1, q[:, None])[:, 0]) * margin(l_neg.gather(1, q[:, None])[:, 0], delta)
        else:
            neg_term = torch.zeros_like(pos_term)
    per_row = pos_term - beta * torch.where(has_neg, neg_term, torch.zeros_like(neg_term))
    return per_row[rows].mean()


def judge_loss(s_pos: torch.Tensor, pos_mask: torch.Tensor, s_neg: torch.Tensor, neg_mask: torch.Tensor) -> torch.Tensor:
    """L_D of Eq. 2: mean over rows with a positive and a negative of
    -log( sum_j exp(s_pos_j) / sum_j exp(s_neg_j) ) = logsumexp(s_neg) - logsumexp(s_pos).
    s_* [N, M] / [N, K] in (0, 1), masks bool of the same shapes; 0 when no row qualifies."""
    rows = pos_mask.any(1) & neg_mask.any(1)
    if not rows.any():
        return (s_pos.sum() + s_neg.sum()) * 0.0
    lse_pos = torch.logsumexp(s_pos.masked_fill(~pos_mask, -math.inf), 1)
    lse_neg = torch.logsumexp(s_neg.masked_fill(~neg_mask, -math.inf), 1)
    return (lse_neg - lse_pos)[rows].mean()


def a3_at(step: int, a3: float, decay: float, iteration_steps: int) -> float:
    """a3 after the decays of the iterations completed before `step` (1-based): a3 * decay^i,
    i = (step - 1) // iteration_steps (0 in the first iteration)."""
    return a3 * decay ** ((step - 1) // iteration_steps)


def qcrd_loss(l_pred: torch.Tensor, l_cl: torch.Tensor, l_d: torch.Tensor, a1: float, a2: float, a3: float) -> torch.Tensor:
    """Eq. 8: L = a1 L_pred + a2 L_cl + a3 L_D (a3 already decayed, see a3_at)."""
    return a1 * l_pred + a2 * l_cl + a3 * l_d


# --------------------------------------------------------------------------- the judge


class JudgeHead(torch.nn.Module):
    """Max pooling over tokens, then Linear -> ReLU -> Linear -> sigmoid: [B, T, d], [B, T] -> [B]."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(d, hidden)
        self.l2 = torch.nn.Linear(hidden, 1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = states.float().masked_fill(~mask.bool().unsqueeze(-1), -math.inf).amax(1)
        pooled = torch.nan_to_num(pooled, neginf=0.0)  # a row without tokens
        return torch.sigmoid(self.l2(torch.relu(self.l1(pooled)))).squeeze(-1)

    def named(self) -> dict[str, torch.nn.Parameter]:
        return {f"judge.{n}": p for n, p in self.named_parameters()}


def new_head(student: Student, cfg: QCRDConfig, seed: int) -> JudgeHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = JudgeHead(student.hidden_size, cfg.judge_hidden or student.hidden_size)
    return head.to(student.device)


def judge_text(x: str, r: str) -> str:
    return f"{x}\n{r}"


def shares_scoring_pass(student: Student, cfg: QCRDConfig) -> bool:
    """Whether the judge reads the rationale scoring pass's states (see the module docstring)."""
    return cfg.judge and (cfg.judge_features == "reuse" or student.family != "t5")


def judge_scores(student: Student, head: JudgeHead, xs: Sequence[str], rs: Sequence[str], hidden: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """[R] D(x_r, r_r). `hidden` (states, mask) of the scoring pass when the judge shares it,
    else a pass of the student's encoder over "x \\n r" (gradients reach the encoder)."""
    if hidden is None:
        hidden = student.features([judge_text(x, r) for x, r in zip(xs, rs, strict=True)])
    return head(*hidden)


# --------------------------------------------------------------------------- data


def teacher_sets(ctx: TrainContext, m: int) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, int]]:
    """(positive rationales, negative rationales, counts) per train example id: the first m
    teacher samples by sample index, relabelled by their own majority when the bank was labelled
    by majority (as m samples would be), else keeping the bank's labels. Duplicates dropped."""
    label = label_by_majority(ctx.task)
    pos: dict[str, list[str]] = {}
    neg: dict[str, list[str]] = {}
    counts = dict.fromkeys(("with_positive", "without_positive", "without_teacher_negative", "positives", "teacher_negatives"), 0)
    for ex in ctx.train:
        chains = sorted(ctx.positives.get(ex.id, []) + ctx.negatives.get(ex.id, []), key=lambda c: c.meta.get("sample", 0))[:m]
        if chains and any("majority" in c.meta for c in chains):
            chains = label(ex, chains)
        p = list(dict.fromkeys(c.reasoning.strip() for c in chains if c.correct and c.reasoning.strip()))
        n = list(dict.fromkeys(c.reasoning.strip() for c in chains if not c.correct and c.reasoning.strip()))
        pos[ex.id], neg[ex.id] = p, n
        counts["with_positive"] += bool(p)
        counts["without_positive"] += not p
        counts["without_teacher_negative"] += not n
        counts["positives"] += len(p)
        counts["teacher_negatives"] += len(n)
    return pos, neg, counts


def items(ctx: TrainContext, cfg: QCRDConfig) -> list[Item]:
    """{"input", "label", "positives", "teacher_negatives"} per train example; an example without
    a positive trains the predict task only. Counts go to the log (data/...)."""
    pos, neg, counts = teacher_sets(ctx, cfg.m)
    ctx.log({"data/examples": len(ctx.train), **{f"data/{k}": v for k, v in counts.items()}}, 0)
    return [{"input": ctx.task.student_input(ex), "label": ex.answer, "positives": pos[ex.id], "teacher_negatives": neg[ex.id]} for ex in ctx.train]


def corrupt(text: str, vocab: Sequence[str], rng: random.Random, rate: float = 0.15) -> str:
    """A.3's augmentation: each word masked ("_") or replaced by a random corpus word with
    probability `rate` (at least one word changed)."""
    words = text.split()
    if not words:
        return "_"
    hit = [rng.random() < rate for _ in words]
    if not any(hit):
        hit[rng.randrange(len(words))] = True
    return " ".join((("_" if rng.random() < 0.5 else rng.choice(vocab)) if h else w) for w, h in zip(words, hit, strict=True))


def pretrain_items(data: Sequence[Item], augment: bool, seed: int) -> tuple[list[Item], int]:
    """Judge pretraining items {"input", "positives", "negatives"}: examples with a positive; the
    negatives are the teacher's, topped up to as many as the positives with corrupted copies of
    them (or of the positives when the teacher has none). Returns the items and the copies made."""
    rng = random.Random(seed)
    vocab = sorted({w for it in data for r in it["positives"] + it["teacher_negatives"] for w in r.split()}) or ["_"]
    out, made = [], 0
    for it in data:
        if not it["positives"]:
            continue
        negs = list(it["teacher_negatives"])
        if augment:
            sources = negs or it["positives"]
            while len(negs) < len(it["positives"]):
                negs.append(corrupt(rng.choice(sources), vocab, rng))
                made += 1
        if negs:
            out.append({"input": it["input"], "positives": it["positives"], "negatives": negs})
    return out, made


def padded(groups: Sequence[Sequence[Any]], values: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat per-candidate values [R] (groups in order) -> ([N, width] values, [N, width] mask)."""
    n = len(groups)
    out = values.new_zeros((n, width))
    mask = torch.zeros((n, width), dtype=torch.bool, device=values.device)
    at = 0
    for i, g in enumerate(groups):
        if g:
            out[i, : len(g)] = values[at : at + len(g)]
            mask[i, : len(g)] = True
            at += len(g)
    return out, mask


@dataclass(frozen=True)
class Candidates:
    """The rationales of a batch's examples as one flat list of rows, positives first, then
    negatives: what one batched scoring pass takes and what `split` turns back into per-example
    [N, M] / [N, K] tensors with their masks."""

    pos: Sequence[Sequence[str]]
    neg: Sequence[Sequence[str]]

    @functools.cached_property
    def pairs(self) -> list[tuple[int, str]]:
        """(example index, rationale) of every candidate."""
        return [(i, r) for i, rs in enumerate(self.pos) for r in rs] + [(i, r) for i, rs in enumerate(self.neg) for r in rs]

    @property
    def rows(self) -> list[int]:
        return [i for i, _ in self.pairs]

    @property
    def texts(self) -> list[str]:
        return [r for _, r in self.pairs]

    def split(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat per-candidate values [R] -> (pos [N, M], pos_mask, neg [N, K], neg_mask)."""
        n_pos = sum(map(len, self.pos))
        pos, pos_mask = padded(self.pos, values[:n_pos], max(map(len, self.pos), default=0))
        neg, neg_mask = padded(self.neg, values[n_pos:], max(map(len, self.neg), default=0))
        return pos, pos_mask, neg, neg_mask


# --------------------------------------------------------------------------- snapshots and negatives


class SnapshotQueue:
    """The j most recent snapshots of the trainable weights, oldest first: in memory (CPU), or as
    safetensors files in `folder` when `on_disk`. A file evicted after the last saved state stays
    until the next save (a resume from that state still needs it)."""

    def __init__(self, j: int, folder: Path, on_disk: bool) -> None:
        self.j, self.folder, self.on_disk = j, Path(folder), on_disk
        self.steps: list[int] = []
        self.memory: dict[int, dict[str, torch.Tensor]] = {}
        self.evicted: list[Path] = []

    def _file(self, step: int) -> Path:
        return self.folder / f"snapshot-{step:07d}.safetensors"

    def push(self, step: int, weights: dict[str, torch.Tensor]) -> None:
        cpu = {n: t.detach().to("cpu", copy=True).contiguous() for n, t in weights.items()}
        if self.on_disk:
            from safetensors.torch import save_file

            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".snapshot-{step:07d}.tmp"
            save_file(cpu, str(tmp))
            tmp.replace(self._file(step))
        else:
            self.memory[step] = cpu
        self.steps.append(step)
        while len(self.steps) > self.j:
            old = self.steps.pop(0)
            if self.on_disk:
                self.evicted.append(self._file(old))
            else:
                del self.memory[old]

    def oldest(self) -> dict[str, torch.Tensor] | None:
        if not self.steps:
            return None
        if self.on_disk:
            from safetensors.torch import load_file

            return load_file(str(self._file(self.steps[0])))
        return self.memory[self.steps[0]]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"steps": list(self.steps)}
        if not self.on_disk:
            state["weights"] = {f"{s}/{n}": t for s in self.steps for n, t in self.memory[s].items()}
        return state

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.steps = list((state or {}).get("steps", []))
        self.memory, self.evicted = {}, []
        if self.on_disk:  # files written after that state belong to steps that run again
            keep = {self._file(s).name for s in self.steps}
            for f in self.folder.glob("*snapshot-*"):
                if f.name not in keep:
                    f.unlink()
        else:
            for key, t in (state or {}).get("weights", {}).items():
                s, n = key.split("/", 1)
                self.memory.setdefault(int(s), {})[n] = t

    def saved(self) -> None:
        for f in self.evicted:
            f.unlink(missing_ok=True)
        self.evicted = []

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("snapshot-*.safetensors")) if self.folder.exists() else []


def sampling_seed(seed: int, iteration: int) -> int:
    return int(hashlib.sha256(f"qcrd:{seed}:{iteration}".encode()).hexdigest()[:8], 16)


def _copy_into(params: dict[str, torch.nn.Parameter], weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n].to(p.device))


class QCRDCompanion:
    """What `fit` trains and carries beside the student (harness.training.Companion): the judge
    head, the snapshot queue, and the negatives sampled for the current iteration (with the inputs
    they were sampled for), so a resumed run continues with exactly the negatives it had."""

    def __init__(self, cfg: QCRDConfig, data: Sequence[Item], tcfg: Any, head: JudgeHead | None, folder: Path, student: Student, generator: Student | None = None) -> None:
        self.cfg, self.data, self.tcfg, self.head, self.generator = cfg, data, tcfg, head, generator
        self.iteration_steps = cfg.iteration_steps or tcfg.eval_every
        self.total = tcfg.total_steps(len(data))
        self.queue: SnapshotQueue | None = None
        if cfg.samples_negatives and cfg.negatives == "self":
            size_mb = sum(p.numel() * p.element_size() for p in student.trainable_parameters().values()) / 2**20
            self.queue = SnapshotQueue(cfg.j, Path(folder) / "snapshots", on_disk=size_mb * cfg.j > cfg.snapshot_memory_mb)
        self.pool: list[list[str]] = []
        self.pool_keys: list[str] = []
        self.pool_iteration, self.pool_start = -1, 0
        self.step, self.cursor = 1, 0
        self.sample_seconds = 0.0  # spent sampling at the current step (logged by the loss)

    # -- harness.training.Companion
    def parameters(self) -> dict[str, torch.nn.Parameter]:
        return self.head.named() if self.head is not None else {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue.state_dict() if self.queue is not None else {},
            "pool": self.pool,
            "pool_keys": self.pool_keys,
            "pool_iteration": self.pool_iteration,
            "pool_start": self.pool_start,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        if self.queue is not None:
            self.queue.load_state_dict(state.get("queue"))
        self.pool = [list(p) for p in state.get("pool", [])]
        self.pool_keys = list(state.get("pool_keys", []))
        self.pool_iteration, self.pool_start = int(state.get("pool_iteration", -1)), int(state.get("pool_start", 0))

    def step_begin(self, student: Student, step: int, micro: int) -> None:
        self.step, self.cursor, self.sample_seconds = step, micro, 0.0
        iteration = (step - 1) // self.iteration_steps
        if self.cfg.samples_negatives and iteration != self.pool_iteration:
            self._sample(student, iteration)

    def saved(self) -> None:
        if self.queue is not None:
            self.queue.saved()

    # -- negatives
    def _sample(self, student: Student, iteration: int) -> None:
        """Sample the negatives of every micro-batch of `iteration` from its generator (the
        queue's oldest snapshot, or the fixed model), in batches; then queue a snapshot of now."""
        import time

        from harness.decoding import HFDecoder, SamplingParams

        t0 = time.perf_counter()
        cfg, tcfg = self.cfg, self.tcfg
        first = iteration * self.iteration_steps  # steps done before the iteration
        start = first * tcfg.grad_accum
        n_micro = min(self.iteration_steps, self.total - first) * tcfg.grad_accum
        stream = micro_batches(self.data, tcfg.batch_size, tcfg.run_seed, start=start)
        flat = [it for _ in range(n_micro) for it in next(stream)]
        params = SamplingParams(
            n=cfg.k,
            temperature=cfg.temperature,
            max_new_tokens=cfg.negative_max_new_tokens or student.max_target_len,
            seed=sampling_seed(tcfg.run_seed, iteration),
        )
        prompts = [cfg.explain_prefix + it["input"] for it in flat]
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):  # sampling never moves the training RNGs
            if self.generator is not None:
                gens = HFDecoder(self.generator, cfg.sample_batch_size).sample(prompts, params)
            else:
                assert self.queue is not None
                weights = student.trainable_parameters()
                now = {n: p.detach().clone() for n, p in weights.items()}
                earlier = self.queue.oldest()
                try:
                    if earlier is not None:
                        _copy_into(weights, earlier)
                    gens = HFDecoder(student, cfg.sample_batch_size).sample(prompts, params)
                finally:
                    _copy_into(weights, now)
                self.queue.push(first, now)
                del now, earlier
        self.pool = [[g.text for g in gs] for gs in gens]
        self.pool_keys = [it["input"] for it in flat]
        self.pool_iteration, self.pool_start = iteration, start
        self.sample_seconds = time.perf_counter() - t0

    def negatives_for(self, batch: Sequence[Item]) -> list[list[str]]:
        """The k negatives of each item of the next micro-batch."""
        cfg = self.cfg
        if cfg.k == 0:
            return [[] for _ in batch]
        if cfg.negatives == "teacher":
            return [list(b["teacher_negatives"][: cfg.k]) for b in batch]
        at = (self.cursor - self.pool_start) * len(batch)
        self.cursor += 1
        if self.pool_keys[at : at + len(batch)] != [b["input"] for b in batch]:
            raise RuntimeError("qcrd: the sampled negatives are out of step with the micro-batches")
        return self.pool[at : at + len(batch)]


# --------------------------------------------------------------------------- training


def loss_fn(cfg: QCRDConfig, comp: QCRDCompanion, reduction: Reduction, seed: int) -> Any:
    """The batch loss of the module docstring (Eq. 8) and its parts as metrics."""

    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        shared = shares_scoring_pass(student, cfg)
        with_grads = cfg.judge and cfg.judge_features == "encoder" and shared  # causal: L_D through the pass
        all_grad = cfg.scheme in ("mean", "wmean") or with_grads
        p = student.score([cfg.predict_prefix + b["input"] for b in batch], [b["label"] for b in batch])
        l_pred = nll_loss(p.token_nll(), p.mask, reduction)
        micro = comp.cursor
        negs = comp.negatives_for(batch)
        rows = [i for i, b in enumerate(batch) if b["positives"]]
        metrics = {"qcrd/pred": l_pred.item(), "qcrd/sample_seconds": comp.sample_seconds}
        if not rows:
            return cfg.a1 * l_pred, metrics
        pos_groups = [batch[i]["positives"] for i in rows]
        neg_groups = [negs[i] for i in rows]
        cands = Candidates(pos_groups, neg_groups)
        cand_rows, cand_texts = cands.rows, cands.texts
        # T5: the encoder runs once per example; every candidate rationale reads its states
        enc = student.encode([cfg.explain_prefix + batch[i]["input"] for i in rows])
        hidden = None
        pos_pick = neg_pick = None
        if all_grad:  # mean / wmean, or the judge's gradients through this pass: every candidate has a graph
            sc = student.score_encoded(enc, cand_rows, cand_texts, hidden=shared)
            values = sc.sequence_nll()
            if shared:
                hidden = (sc.hidden if with_grads else sc.hidden.detach(), sc.hidden_mask)
            l_pos, pos_mask, l_neg, neg_mask = cands.split(values)
        else:  # pick on values scored without a graph, then score only the picked with one
            with torch.no_grad():
                sc = student.score_encoded(enc.detach(), cand_rows, cand_texts, hidden=shared)
                values = sc.sequence_nll()
                if shared:
                    hidden = (sc.hidden, sc.hidden_mask)
            l_pos, pos_mask, l_neg, neg_mask = cands.split(values)
            gen = torch.Generator().manual_seed(sampling_seed(seed, comp.step * 10_000 + micro))
            pos_pick = pick(cfg.scheme, l_pos, pos_mask, True, gen)
            neg_pick = pick(cfg.scheme, l_neg, neg_mask, False, gen) if l_neg.shape[1] else None
            with_neg = [g for g in range(len(rows)) if neg_groups[g]]
            picked = [pos_groups[g][int(pos_pick[g])] for g in range(len(rows))]
            if neg_pick is not None:
                picked += [neg_groups[g][int(neg_pick[g])] for g in with_neg]
            again = student.score_encoded(enc, list(range(len(rows))) + with_neg, picked).sequence_nll()
            n = len(rows)
            l_pos = l_pos.clone()
            l_pos[torch.arange(n, device=l_pos.device), pos_pick] = again[:n]
            if neg_pick is not None and with_neg:
                at = torch.tensor(with_neg, device=l_neg.device)
                l_neg = l_neg.clone()
                l_neg[at, neg_pick[at]] = again[n:]
        if cfg.judge:
            assert comp.head is not None
            s = judge_scores(student, comp.head, [batch[rows[g]]["input"] for g in cand_rows], cand_texts, hidden)
            s_pos, _, s_neg, _ = cands.split(s)
            l_d = judge_loss(s_pos, pos_mask, s_neg, neg_mask)
            a3 = a3_at(comp.step, cfg.a3, cfg.a3_decay, comp.iteration_steps)
            metrics.update({"qcrd/judge": l_d.item(), "qcrd/a3": a3, "qcrd/s_pos": s_pos[pos_mask].mean().item()})
            if neg_mask.any():
                metrics["qcrd/s_neg"] = s_neg[neg_mask].mean().item()
        else:  # w/o QJ: every positive weighs 1, every negative 1 - 0
            s_pos, s_neg = torch.ones_like(l_pos), torch.zeros_like(l_neg)
            l_d, a3 = l_pred.new_zeros(()), 0.0
        l_cl = contrastive_loss(l_pos, pos_mask, l_neg, neg_mask, s_pos, s_neg, cfg.scheme, cfg.beta, cfg.delta, pos_pick, neg_pick)
        metrics.update({"qcrd/cl": l_cl.item(), "qcrd/l_pos": l_pos[pos_mask].mean().item()})
        if neg_mask.any():
            metrics.update({"qcrd/l_neg": l_neg[neg_mask].mean().item(), "qcrd/neg_within_margin": (l_neg[neg_mask] < cfg.delta).float().mean().item()})
        return qcrd_loss(l_pred, l_cl, l_d, cfg.a1, cfg.a2, a3), metrics

    return loss


def pretrain_loss(cfg: QCRDConfig, head: JudgeHead) -> Any:
    """L_D alone on teacher positives vs negatives (A.3): the judge's pretraining."""

    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        cands = Candidates([b["positives"] for b in batch], [b["negatives"] for b in batch])
        hidden = None
        if shares_scoring_pass(student, cfg):  # the states the training steps will read
            with torch.set_grad_enabled(cfg.judge_features == "encoder"):
                enc = student.encode([cfg.explain_prefix + b["input"] for b in batch])
                sc = student.score_encoded(enc, cands.rows, cands.texts, hidden=True)
                hidden = (sc.hidden, sc.hidden_mask)
        s = judge_scores(student, head, [batch[i]["input"] for i in cands.rows], cands.texts, hidden)
        s_pos, pos_mask, s_neg, neg_mask = cands.split(s)
        value = judge_loss(s_pos, pos_mask, s_neg, neg_mask)
        return value, {"s_pos": s_pos[pos_mask].mean().item(), "s_neg": s_neg[neg_mask].mean().item()}

    return loss


class HeadOnly:
    """The companion of the judge's pretraining: its head's parameters, nothing else to carry."""

    def __init__(self, head: JudgeHead) -> None:
        self.head = head

    def parameters(self) -> dict[str, torch.nn.Parameter]:
        return self.head.named()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        pass

    def step_begin(self, student: Student, step: int, micro: int) -> None:
        pass

    def saved(self) -> None:
        pass


def pretrained_judge(ctx: TrainContext, cfg: QCRDConfig, data: Sequence[Item], head: JudgeHead) -> None:
    """Pretrain the judge (head and the student's encoder) for judge_pretrain_steps on the teacher's
    positives vs negatives, once per student / bank / budget / seed (a cached stage), and load it."""
    from safetensors.torch import load_file, save_file

    pre, made = pretrain_items(data, cfg.judge_augment, ctx.config.run_seed)
    ctx.log({"data/judge_pretrain_examples": len(pre), "data/judge_augmented_negatives": made}, 0)
    if not pre:
        ctx.log({"data/judge_not_pretrained": 1}, 0)
        return
    steps = cfg.judge_pretrain_steps
    tcfg = ctx.config.model_copy(update={"steps": steps, "epochs": None, "eval_every": steps, "warmup_steps": 0, "schedule": "constant"})
    key = {"steps": steps, "m": cfg.m, "augment": cfg.judge_augment, "features": cfg.judge_features, "hidden": cfg.judge_hidden, "prefix": cfg.explain_prefix}

    def build(work: Path) -> None:
        def log(metrics: dict[str, float], step: int) -> None:
            ctx.log({f"qcrd_judge/{k}": v for k, v in metrics.items()}, step)

        fit(ctx.student, pre, pretrain_loss(cfg, head), tcfg, None, work, log, ctx.show_progress, HeadOnly(head))
        save_file({n: p.detach().cpu().contiguous() for n, p in head.state_dict().items()}, str(work / JUDGE_FILE))

    folder = ctx.cached("qcrd-judge", key, build)
    ctx.student.restore(folder / "best")
    head.load_state_dict(load_file(str(folder / JUDGE_FILE), device=str(ctx.student.device)))


def train(ctx: TrainContext, cfg: QCRDConfig) -> TrainResult:
    import shutil

    data = items(ctx, cfg)
    if not any(it["positives"] for it in data):
        raise UserError("qcrd: no train example has a teacher positive (a rationale agreeing with its samples' majority)")
    head = None
    if cfg.judge:
        head = new_head(ctx.student, cfg, ctx.config.run_seed)
        if cfg.judge_pretrain_steps:
            pretrained_judge(ctx, cfg, data, head)
    generator = None
    if cfg.samples_negatives and cfg.negatives == "fixed":
        if "dss" not in ctx.models:
            raise UserError("qcrd negatives: fixed samples from a trained DSS model (ctx.models['dss']); the pipeline provides it")
        s = ctx.student
        generator = Student.load(ctx.models["dss"], str(s.device), max_input_len=s.max_input_len, max_target_len=s.max_target_len)
        generator.model.eval()
    comp = QCRDCompanion(cfg, data, ctx.config, head, ctx.out_dir, ctx.student, generator)
    result = ctx.fit(data, loss_fn(cfg, comp, ctx.config.loss_reduction, ctx.config.run_seed), comp)
    shutil.rmtree(ctx.out_dir / "snapshots", ignore_errors=True)  # the checkpoint is the student alone
    return result


def test_input(task: Any, example: Any, cfg: QCRDConfig) -> str:
    return cfg.predict_prefix + task.student_input(example)


def stages(cfg: QCRDConfig) -> tuple[str, ...]:
    """The DSS model a fixed negative generator samples from; nothing otherwise."""
    return ("dss",) if cfg.samples_negatives and cfg.negatives == "fixed" else ()


def passes(cfg: QCRDConfig) -> float:
    """Sequences per example in forward+backward equivalents (the dry run's estimate): predict;
    the picked positive (and negative) with gradients and the m + k candidates without (a third
    each), or all of them with gradients for mean / wmean; the judge's encoder pass over the
    m + k pairs (about half a model, with gradients)."""
    picked = 1 + (cfg.k > 0)
    cands = cfg.m + cfg.k
    rationale = cands if cfg.scheme in ("mean", "wmean") else (picked + cands / 3 if cands > picked else picked)
    judge = cands / 2 if cfg.judge and cfg.judge_features == "encoder" else 0.0
    return 1 + rationale + judge


def plan(cfg: QCRDConfig) -> tuple[str, ...]:
    src = {
        "self": f"sampled at T {cfg.temperature:g} from its own snapshot {cfg.j} iterations back",
        "teacher": "the teacher's minority answers (SC)",
        "fixed": f"sampled at T {cfg.temperature:g} from the DSS model of the same settings (its cell's checkpoint, else trained once here)",
    }[cfg.negatives]
    negs = f"{cfg.k} negative(s) per example {src}" if cfg.k else "no negatives (w/o NK)"
    judge = f"the judge pretrained {cfg.judge_pretrain_steps} steps (cached per student/bank/seed), then online" if cfg.judge else "no judge (w/o QJ)"
    return (f"the student: predict + {cfg.scheme} contrastive loss over up to {cfg.m} teacher positives; {negs}; {judge}",)


METHOD = MethodDef(
    "qcrd", QCRDConfig, train, test_input, CITATION,
    "gold labels + teacher positives by self-consistency; negatives from the student's own earlier snapshots, weighted by a judge",
    inputs=frozenset({"gold", "positives", "negatives"}),
    passes=passes,
    stages=stages,
    plan=plan,
    quick={"judge_pretrain_steps": 4},
)
