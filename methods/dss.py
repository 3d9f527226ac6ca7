"""dss — Distilling Step-by-Step (Hsieh et al. 2023, arXiv 2305.02301).

Each training example is used twice, with task prefixes: "predict: x -> gold label" and
"explain: x -> teacher rationale". Only the predict task is decoded at test time.

As the DSS reference code trains: every train example is in both tasks; the explain target is
the rationale of the example's teacher chain whatever its label (DSS has one PaLM chain per
example, right or wrong), and the rationale alone: the chain's `rationale` field, without its
answer statement (DSS splits on "The answer is" and trains on the part before it). With K > 1
chains per example the first one (sample 0) is used. `rationale: positive_only` is the filtered
form: the first positive chain's rationale, and examples without a positive are left out of
both tasks. An example with no chain at all (or an empty rationale) trains the predict task
only. The count of each case goes to the log (data/...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from harness.student import Scored, Student
from harness.training import Item, TrainContext, TrainResult
from harness.types import Example
from methods.base import MethodDef
from methods.common import Reduction, nll_loss

CITATION = "Hsieh et al. 2023, Distilling Step-by-Step!, arXiv 2305.02301"
RATIONALE_CHOICES = ("any", "positive_only")


@dataclass(frozen=True)
class DSSConfig:
    """Paper defaults (Sec. 3.2; reference code: T5 v1.1, lr 5e-5, batch 64, 10k steps)."""

    alpha: float = 0.5  # weight of the label-prediction loss
    predict_prefix: str = "predict: "
    explain_prefix: str = "explain: "
    # "any": every example, its first teacher chain's rationale whatever its label (DSS code);
    # "positive_only": examples with a teacher positive only, the first positive's rationale
    rationale: Literal["any", "positive_only"] = "any"

    def __post_init__(self) -> None:
        check_two_tasks(self)


class TwoTasks(Protocol):
    """The fields the predict/explain helpers below read (DSSConfig, MIConfig)."""

    alpha: float
    predict_prefix: str
    explain_prefix: str
    rationale: str


def check_two_tasks(cfg: TwoTasks) -> None:
    if not 0.0 <= cfg.alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {cfg.alpha}")
    if cfg.rationale not in RATIONALE_CHOICES:
        raise ValueError(f"rationale must be one of {', '.join(RATIONALE_CHOICES)}, got {cfg.rationale!r}")


def dss_loss(pred_loss: torch.Tensor, expl_loss: torch.Tensor, alpha: float) -> torch.Tensor:
    """L = alpha * L_label + (1 - alpha) * L_rationale

    pred_loss, expl_loss: scalars (each a mean NLL over the batch) -> scalar.
    The paper (Eq. 3) writes L = L_label + lambda * L_rationale with lambda = 1; the released code
    uses this alpha form with alpha = 0.5, which is the same objective up to a factor of 2.
    """
    return alpha * pred_loss + (1 - alpha) * expl_loss


@dataclass
class TaskPasses:
    """The predict pass of every item, and the explain pass of the items with a rationale
    (`explained`: their rows in the batch; `explain` is None when no item has one)."""

    predict: Scored
    explain: Scored | None
    explained: list[int]


def score_tasks(student: Student, batch: Sequence[Item], cfg: TwoTasks) -> TaskPasses:
    """Both passes of a batch; shared with methods/mi.py."""
    inputs = [b["input"] for b in batch]
    # two passes, not one concatenated batch: labels are a few tokens and rationales tens,
    # so sharing one padded width would waste most of the label pass
    p = student.score([cfg.predict_prefix + x for x in inputs], [b["label"] for b in batch])
    explained = [i for i, b in enumerate(batch) if b["rationale"]]
    e = None
    if explained:
        e = student.score([cfg.explain_prefix + inputs[i] for i in explained], [batch[i]["rationale"] for i in explained])
    return TaskPasses(p, e, explained)


def task_losses(passes: TaskPasses, reduction: Reduction = "sequence") -> tuple[torch.Tensor, torch.Tensor]:
    """(L_pred, L_expl), each common.nll_loss over its own pass; L_expl is 0 without rationales."""
    p, e = passes.predict, passes.explain
    pred = nll_loss(p.token_nll(), p.mask, reduction)
    expl = nll_loss(e.token_nll(), e.mask, reduction) if e is not None else pred.new_zeros(())
    return pred, expl


def loss_fn(cfg: DSSConfig, reduction: Reduction = "sequence"):
    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        pred, expl = task_losses(score_tasks(student, batch, cfg), reduction)
        return dss_loss(pred, expl, cfg.alpha), {"pred_loss": pred.item(), "expl_loss": expl.item()}

    return loss


def test_input(task: Any, example: Example, cfg: TwoTasks) -> str:
    return cfg.predict_prefix + task.student_input(example)


def items(ctx: TrainContext, cfg: TwoTasks) -> list[Item]:
    """Items {"input", "label", "rationale" (None: predict task only)}; shared with methods/mi.py."""
    out: list[Item] = []
    counts = dict.fromkeys(("with_positive", "rationale_from_negative", "no_rationale", "dropped_no_positive"), 0)
    for ex in ctx.train:
        pos, neg = ctx.positives.get(ex.id, []), ctx.negatives.get(ex.id, [])
        counts["with_positive"] += bool(pos)
        if cfg.rationale == "positive_only":
            if not pos:
                counts["dropped_no_positive"] += 1
                continue
            chain = pos[0]
        else:
            chain = min(pos + neg, key=lambda c: c.meta.get("sample", 0), default=None)
            counts["rationale_from_negative"] += chain is not None and not chain.correct
        rationale = chain.reasoning.strip() if chain is not None else ""
        counts["no_rationale"] += not rationale
        out.append({"input": ctx.task.student_input(ex), "label": ex.answer, "rationale": rationale or None})
    ctx.log({"data/examples": len(out), "data/train_examples": len(ctx.train), **{f"data/{k}": v for k, v in counts.items()}}, 0)
    return out


def train(ctx: TrainContext, cfg: DSSConfig) -> TrainResult:
    return ctx.fit(items(ctx, cfg), loss_fn(cfg, ctx.config.loss_reduction))


METHOD = MethodDef(
    "dss", DSSConfig, train, test_input, CITATION,
    "gold labels + a teacher chain's rationale (any label by default)",
    inputs=frozenset({"gold", "positives", "negatives"}),
    passes=2,
)
