"""ul — unlikelihood training on negative chains (TDG's "UL" baseline).

Li et al. 2024, "Turning Dust into Gold" (TDG, AAAI, arXiv 2312.12832) compare against
unlikelihood training (Welleck et al. 2020, "Neural Text Generation with Unlikelihood Training",
ICLR, arXiv 1908.04319) on the teacher's negative chains: maximum likelihood on positive chains,
and on every token of a negative chain the unlikelihood term -log(1 - p(token)), which pushes that
token's probability down without the unbounded push of plain negative log-likelihood.

Exactly what is computed (per batch of chain items, see `ul_loss`):
- a positive row contributes its mean token NLL (as finetune / single_task);
- a negative row contributes alpha * its mean token unlikelihood, the "negative candidates" of
  Welleck et al.'s token-level loss being the negative chain's own token at each position
  (teacher-forced on the negative chain's prefix);
- rows are averaged over the batch (per-sequence means, as common.nll_loss, so gradient
  accumulation stays exact; Welleck et al. sum over tokens); train.loss_reduction: token
  gives one mean over all target tokens.
Numerical safety: 1 - p is computed as -expm1(log p) and clamped below at `eps` (1e-6), so a
token the model is sure of costs at most -log(eps) ~ 13.8 and never gives inf or NaN; the clamp
also stops its gradient there.
Source note: this follows TDG's one-line description of the baseline ("unlikelihood on negative
tokens") and Welleck et al.'s token-level form. alpha 1.0 is Welleck et al.'s token-level setting.
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
    "Li et al. 2024, Turning Dust into Gold (TDG), AAAI, arXiv 2312.12832 (UL baseline); "
    "Welleck et al. 2020, Neural Text Generation with Unlikelihood Training, ICLR, arXiv 1908.04319"
)


@dataclass(frozen=True)
class ULConfig:
    alpha: float = 1.0  # weight of the unlikelihood term (Welleck et al., token-level)
    eps: float = 1e-6  # lower clamp of 1 - p(token)
    max_chains: int | None = None  # chains of each kind (positive, negative) per example; None: all

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


def unlikelihood(token_nll: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """-log(1 - p) per token, with p = exp(-token_nll) and 1 - p clamped below at eps.

    token_nll [B, T] -> [B, T] (padding positions, where token_nll is 0, give -log(eps): mask them).
    """
    one_minus_p = (-torch.expm1(-token_nll)).clamp(min=eps)
    return -torch.log(one_minus_p)


def ul_loss(
    token_nll: torch.Tensor,
    mask: torch.Tensor,
    negative: torch.Tensor,
    alpha: float = 1.0,
    eps: float = 1e-6,
    reduction: Reduction = "sequence",
) -> torch.Tensor:
    """L = 1/B [ sum_{b pos} 1/|y_b| sum_t -log p(y_b,t | y_b,<t, x_b)
               + alpha * sum_{b neg} 1/|y_b| sum_t -log(1 - p(y_b,t | y_b,<t, x_b)) ]

    token_nll, mask: [B, T] (token_nll 0 where mask is False); negative: [B] bool -> scalar.
    That is reduction "sequence"; "token" divides the same per-token terms by the batch's target
    token count instead (methods.common.reduce_tokens). With no negative row this is
    common.nll_loss exactly.
    """
    per_token = torch.where(negative.unsqueeze(1), alpha * unlikelihood(token_nll, eps) * mask, token_nll)
    return reduce_tokens(per_token, mask, reduction)


def loss_fn(cfg: ULConfig, reduction: Reduction = "sequence"):
    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        token_nll, mask, negative = score_flagged(student, batch)
        return ul_loss(token_nll, mask, negative, cfg.alpha, cfg.eps, reduction), {"neg_share": negative.float().mean().item()}

    return loss


def train(ctx: TrainContext, cfg: ULConfig) -> TrainResult:
    return ctx.fit(chain_items(ctx, negatives=True, max_chains=cfg.max_chains), loss_fn(cfg, ctx.config.loss_reduction))


METHOD = MethodDef(
    "ul", ULConfig, train, test_input, CITATION,
    "teacher positives (NLL) + negatives (unlikelihood)",
    inputs=frozenset({"positives", "negatives"}),
)
