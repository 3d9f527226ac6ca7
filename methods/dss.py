"""dss — Distilling Step-by-Step (Hsieh et al. 2023, arXiv 2305.02301).

Each training example is used twice, with task prefixes: "predict: x -> gold label" and
"explain: x -> teacher rationale". Only the predict task is decoded at test time.
Rationales are teacher positives: the first positive chain of each example (DSS has one PaLM
chain per example); examples with no positive chain are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.student import Scored, Student
from harness.training import Item, TrainContext, TrainResult
from harness.types import Example
from methods.base import MethodDef
from methods.finetune import nll_loss

CITATION = "Hsieh et al. 2023, Distilling Step-by-Step!, arXiv 2305.02301"


@dataclass(frozen=True)
class DSSConfig:
    """Paper defaults (Sec. 3.2; reference code: T5 v1.1, lr 5e-5, batch 64, 10k steps)."""

    alpha: float = 0.5  # weight of the label-prediction loss
    predict_prefix: str = "predict: "
    explain_prefix: str = "explain: "

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


def dss_loss(pred_loss: torch.Tensor, expl_loss: torch.Tensor, alpha: float) -> torch.Tensor:
    """L = alpha * L_label + (1 - alpha) * L_rationale

    pred_loss, expl_loss: scalars (each a mean NLL over the batch) -> scalar.
    The paper (Eq. 3) writes L = L_label + lambda * L_rationale with lambda = 1; the released code
    uses this alpha form with alpha = 0.5, which is the same objective up to a factor of 2.
    """
    return alpha * pred_loss + (1 - alpha) * expl_loss


def score_tasks(student: Student, batch: Sequence[Item], cfg: DSSConfig) -> tuple[Scored, Scored]:
    """(predict pass, explain pass) of a batch; shared with methods/mi.py."""
    inputs = [b["input"] for b in batch]
    # two passes, not one concatenated batch: labels are a few tokens and rationales tens,
    # so sharing one padded width would waste most of the label pass
    p = student.score([cfg.predict_prefix + x for x in inputs], [b["label"] for b in batch])
    e = student.score([cfg.explain_prefix + x for x in inputs], [b["rationale"] for b in batch])
    return p, e


def loss_fn(cfg: DSSConfig):
    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        p, e = score_tasks(student, batch, cfg)
        pred = nll_loss(p.token_nll(), p.mask)
        expl = nll_loss(e.token_nll(), e.mask)
        return dss_loss(pred, expl, cfg.alpha), {"pred_loss": pred.item(), "expl_loss": expl.item()}

    return loss


def test_input(task: Any, example: Example, cfg: DSSConfig) -> str:
    return cfg.predict_prefix + task.student_input(example)


def items(ctx: TrainContext) -> list[Item]:
    """One item per train example with a teacher positive (its first); shared with methods/mi.py."""
    out = []
    for ex in ctx.train:
        pos = ctx.positives.get(ex.id)
        if pos:
            out.append({"input": ctx.task.student_input(ex), "label": ex.answer, "rationale": pos[0].text})
    ctx.log({"data/examples": len(out), "data/no_positive": len(ctx.train) - len(out)}, 0)
    return out


def train(ctx: TrainContext, cfg: DSSConfig) -> TrainResult:
    return ctx.fit(items(ctx), loss_fn(cfg))


METHOD = MethodDef("dss", DSSConfig, train, test_input, CITATION, "gold labels + teacher positives (rationales)")
