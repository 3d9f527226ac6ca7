"""Loss pieces every method shares: how per-token losses become one scalar.

Two reductions, chosen per run with `train.loss_reduction` (the same for every method, so cells
of a grid differ only in what the grid varies):

- "sequence" (our default): the mean over rows of each row's mean over its target tokens. Every
  example weighs the same whatever its length, and gradient accumulation is exact: two
  micro-batches of 4 give the loss (and gradient) of one batch of 8.
- "token": one mean over every target token of the micro-batch, what a Hugging Face model's
  `outputs.loss` is and what the reference code of DSS, MI and TDG trains with (long rationales
  weigh more). With grad_accum > 1 each micro-batch's token mean is divided by grad_accum, so
  micro-batches weigh the same whatever their token counts (as Hugging Face's Trainer did before
  v4.46): batch 8 and batch 4 x accum 2 then differ slightly. The paper grids use grad_accum 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from harness.student import Student
from harness.training import Item, TrainContext

Reduction = Literal["sequence", "token"]
REDUCTIONS: tuple[str, ...] = ("sequence", "token")
ItemLoss = Callable[[Student, Sequence[Item]], tuple[torch.Tensor, dict[str, float]]]


def reduce_tokens(values: torch.Tensor, mask: torch.Tensor, reduction: Reduction = "sequence") -> torch.Tensor:
    """[B, T] per-token losses (0 where mask is False), [B, T] mask -> scalar.

    sequence: 1/B sum_b 1/|y_b| sum_t v_b,t      (a row without target tokens contributes 0)
    token:    1/sum_b |y_b| sum_b sum_t v_b,t    (0 when the batch has no target token)
    """
    if reduction == "sequence":
        return (values.sum(1) / mask.sum(1).clamp(min=1)).mean()
    if reduction == "token":
        return values.sum() / mask.sum().clamp(min=1)
    raise ValueError(f"unknown loss reduction {reduction!r} (choose from: {', '.join(REDUCTIONS)})")


def nll_loss(token_nll: torch.Tensor, mask: torch.Tensor, reduction: Reduction = "sequence") -> torch.Tensor:
    """The target NLL of a batch: token_nll, mask [B, T] (token_nll already 0 where mask is
    False) -> scalar, reduced as `reduction` says (see the module docstring).

    sequence: L = 1/B sum_b 1/|y_b| sum_t -log p(y_b,t | y_b,<t, x_b)
    token:    L = 1/sum_b |y_b| sum_b sum_t -log p(y_b,t | y_b,<t, x_b)
    """
    return reduce_tokens(token_nll, mask, reduction)


def item_nll(reduction: Reduction = "sequence") -> ItemLoss:
    """The loss of items {"input", "target"}: nll_loss of the targets given the inputs."""

    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        scored = student.score([b["input"] for b in batch], [b["target"] for b in batch])
        return nll_loss(scored.token_nll(), scored.mask, reduction), {}

    return loss


# --- chain items: a teacher chain as the target (single_task, mix, ul, nt) ------------------------------


def chain_items(ctx: TrainContext, *, negatives: bool, max_chains: int | None = None) -> list[Item]:
    """Items {"input", "target", "negative"}: the chains of every train example as targets.

    Positives always; negatives too when `negatives` (flagged "negative": True). `max_chains`
    caps each kind per example. Chains with empty text are left out. Counts go to the log.
    Used by single_task, mix, ul and nt.
    """
    out: list[Item] = []
    n_pos = n_neg = no_chain = 0
    for ex in ctx.train:
        x = ctx.task.student_input(ex)
        pos = [c for c in ctx.positives.get(ex.id, []) if c.text.strip()][:max_chains]
        neg = [c for c in ctx.negatives.get(ex.id, []) if c.text.strip()][:max_chains] if negatives else []
        out += [{"input": x, "target": c.text, "negative": False} for c in pos]
        out += [{"input": x, "target": c.text, "negative": True} for c in neg]
        n_pos, n_neg = n_pos + len(pos), n_neg + len(neg)
        no_chain += not (pos or neg)
    ctx.log({"data/positives": n_pos, "data/negatives": n_neg, "data/no_chain": no_chain}, 0)
    return out


def score_flagged(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token_nll [B, T], mask [B, T], negative [B] bool) of a batch of chain items."""
    s = student.score([b["input"] for b in batch], [b["target"] for b in batch])
    negative = torch.tensor([bool(b["negative"]) for b in batch], device=s.mask.device)
    return s.token_nll(), s.mask, negative
