"""nt — negative training on negative chains (TDG's "NT" baseline).

Li et al. 2024, "Turning Dust into Gold" (TDG, AAAI, arXiv 2312.12832) compare against negative
training (He & Glass 2020, "Negative Training for Neural Dialogue Response Generation", ACL,
arXiv 1903.02134): the likelihood of a negative sample is minimised (gradient ascent on its NLL),
while positive samples keep ordinary maximum likelihood so the model stays fluent.

TDG only names this baseline, so this is He & Glass's standard form, precisely:
- items are the teacher chains of each train example, positives and negatives, in one shuffled
  pool (as mix / ul), each negative flagged;
- a positive row contributes its mean token NLL, -1/|y| sum_t log p(y_t | y_<t, x);
- a negative row contributes -weight * its mean token NLL, i.e. +weight/|y| sum_t log p(y_t|...)
  (He & Glass's L_NEG = log P(y_neg | x), minimised), weight 1.0;
- rows are averaged over the batch (per-sequence means, as common.nll_loss, so gradient
  accumulation stays exact).
This objective is unbounded below: a negative chain's NLL can grow without limit. He & Glass
rely on few negative updates; here the shared loop's gradient clipping (max_grad_norm) bounds each
step, and the option `nll_cap` (off by default, the paper's form) clamps each negative token's
NLL at the cap, so a token already that improbable gets no further push (and no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.student import Student
from harness.training import Item, TrainContext, TrainResult
from methods.base import MethodDef
from methods.common import Reduction, chain_items, reduce_tokens, score_flagged
from methods.finetune import test_input  # the task's own input

CITATION = (
    "Li et al. 2024, Turning Dust into Gold (TDG), AAAI, arXiv 2312.12832 (NT baseline); "
    "He & Glass 2020, Negative Training for Neural Dialogue Response Generation, ACL, arXiv 1903.02134"
)


@dataclass(frozen=True)
class NTConfig:
    weight: float = 1.0  # weight of the negative-likelihood term
    nll_cap: float | None = None  # clamp of a negative token's NLL; None: unbounded (He & Glass)
    max_chains: int | None = None  # chains of each kind (positive, negative) per example; None: all

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.nll_cap is not None and self.nll_cap <= 0:
            raise ValueError(f"nll_cap must be > 0 or None, got {self.nll_cap}")
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


def nt_loss(
    token_nll: torch.Tensor,
    mask: torch.Tensor,
    negative: torch.Tensor,
    weight: float = 1.0,
    nll_cap: float | None = None,
    reduction: Reduction = "sequence",
) -> torch.Tensor:
    """L = 1/B [ sum_{b pos} 1/|y_b| sum_t -log p(y_b,t | y_b,<t, x_b)
               - weight * sum_{b neg} 1/|y_b| sum_t min(-log p(y_b,t | y_b,<t, x_b), nll_cap) ]

    token_nll, mask: [B, T] (token_nll 0 where mask is False); negative: [B] bool -> scalar.
    nll_cap None: no clamp. That is reduction "sequence"; "token" divides the same per-token
    terms by the batch's target token count (methods.common.reduce_tokens). With no negative
    row this is common.nll_loss exactly.
    """
    capped = token_nll if nll_cap is None else token_nll.clamp(max=nll_cap)
    per_token = torch.where(negative.unsqueeze(1), -weight * capped, token_nll)
    return reduce_tokens(per_token, mask, reduction)


def loss_fn(cfg: NTConfig, reduction: Reduction = "sequence"):
    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        token_nll, mask, negative = score_flagged(student, batch)
        return nt_loss(token_nll, mask, negative, cfg.weight, cfg.nll_cap, reduction), {
            "neg_share": negative.float().mean().item()
        }

    return loss


def train(ctx: TrainContext, cfg: NTConfig) -> TrainResult:
    return ctx.fit(chain_items(ctx, negatives=True, max_chains=cfg.max_chains), loss_fn(cfg, ctx.config.loss_reduction))


METHOD = MethodDef(
    "nt", NTConfig, train, test_input, CITATION,
    "teacher positives (NLL) + negatives (likelihood minimised)",
    inputs=frozenset({"positives", "negatives"}),
)
