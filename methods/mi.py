"""mi — Distilling Step-by-Step plus a mutual-information term (Chen et al. 2024, arXiv 2403.03348).

"Learning to Maximize Mutual Information for Chain-of-Thought Distillation" (Findings of ACL 2024)
keeps DSS's two tasks ("predict: x -> label", "explain: x -> rationale") and adds a term tying the
two heads' output distributions together. As in the authors' released code (the form this file
implements):

    a = max_t softmax(pred_logits)_t .detach()     [B, V]   (label pass, no gradient)
    b = max_t softmax(expl_logits)_t               [B, V]   (rationale pass)
    L = alpha * L_pred + (1 - alpha) * L_expl + beta * CrossEntropy(logits=b, soft target=a)

with beta 0.1. The max over time runs over target positions only: padding positions (mask False)
are excluded from the pooling. `a` is used as the code uses it — the per-token maxima, not
renormalised to sum to 1 — and CrossEntropy is torch's with probability targets, averaged over
the batch. Deviation from the authors' CLI: the term can be switched off (`mi_term: false`, or
`beta: 0`); off, the loss is DSS's exactly. Test time decodes the predict task, as DSS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from harness.student import Student
from harness.training import Item, TrainContext, TrainResult
from methods import dss
from methods.base import MethodDef
from methods.common import Reduction

CITATION = "Chen et al. 2024, Learning to Maximize Mutual Information for Chain-of-Thought Distillation, Findings of ACL, arXiv 2403.03348"


@dataclass(frozen=True)
class MIConfig:
    """DSS's four fields (the same defaults) plus the MI term's weight and switch."""

    alpha: float = 0.5  # weight of the label-prediction loss, as dss
    predict_prefix: str = "predict: "
    explain_prefix: str = "explain: "
    rationale: Literal["any", "positive_only"] = "any"  # as dss: the teacher chain whatever its label
    beta: float = 0.1  # weight of the MI cross-entropy term (authors' code)
    mi_term: bool = True  # False: exactly DSS

    def __post_init__(self) -> None:
        dss.check_two_tasks(self)
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


def max_over_time(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, V] probabilities, [B, T] mask -> [B, V] maximum over the unmasked positions.

    Masked positions are set to 0 before the max; a softmax is > 0 everywhere, so they can never
    be the maximum of a row with at least one target token (a row with none gives zeros).
    """
    return probs.masked_fill(~mask.unsqueeze(-1), 0.0).amax(dim=1)


def mi_loss(
    pred_logits: torch.Tensor, pred_mask: torch.Tensor, expl_logits: torch.Tensor, expl_mask: torch.Tensor
) -> torch.Tensor:
    """CrossEntropy(b as logits, a as soft target) = -1/B sum_b sum_v a_b,v log softmax(b_b)_v

    a = max_t softmax(pred_logits) (detached), b = max_t softmax(expl_logits), both [B, V];
    pred_logits [B, Tp, V], pred_mask [B, Tp], expl_logits [B, Te, V], expl_mask [B, Te] -> scalar.
    Gradient flows into expl_logits only.
    """
    a = max_over_time(pred_logits.softmax(-1), pred_mask).detach()
    b = max_over_time(expl_logits.softmax(-1), expl_mask)
    return F.cross_entropy(b, a)


def loss_fn(cfg: MIConfig, reduction: Reduction = "sequence"):
    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        passes = dss.score_tasks(student, batch, cfg)
        pred, expl = dss.task_losses(passes, reduction)
        total = dss.dss_loss(pred, expl, cfg.alpha)
        metrics = {"pred_loss": pred.item(), "expl_loss": expl.item()}
        if cfg.mi_term and passes.explain is not None:
            # the term ties each row's two passes: only rows with a rationale have both
            p, e, rows = passes.predict, passes.explain, passes.explained
            mi = mi_loss(p.logits[rows], p.mask[rows], e.logits, e.mask)
            total = total + cfg.beta * mi
            metrics["mi_loss"] = mi.item()
        return total, metrics

    return loss


def train(ctx: TrainContext, cfg: MIConfig) -> TrainResult:
    return ctx.fit(dss.items(ctx, cfg), loss_fn(cfg, ctx.config.loss_reduction))


METHOD = MethodDef(
    "mi", MIConfig, train, dss.test_input, CITATION,
    "gold labels + a teacher chain's rationale, as dss",
    inputs=frozenset({"gold", "positives", "negatives"}),
    passes=2,
)
