"""finetune — standard fine-tuning on gold labels, no rationale.

The baseline of every distillation paper here (e.g. Hsieh et al. 2023, "Distilling Step-by-Step!",
arXiv 2305.02301, "Standard finetuning"). Input: the task's student input; target: the gold answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.student import Student
from harness.training import Item, TrainContext, TrainResult
from harness.types import Example
from methods.base import MethodDef

CITATION = "Hsieh et al. 2023, arXiv 2305.02301 (standard finetuning baseline)"


@dataclass(frozen=True)
class FinetuneConfig:
    """No hyper-parameters of its own: the budget (steps, lr, batch) is the run spec's `train`."""


def nll_loss(token_nll: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of the mean target-token NLL.

    L = 1/B sum_b 1/|y_b| sum_t -log p(y_b,t | y_b,<t, x_b)
    token_nll, mask: [B, T] (token_nll already 0 where mask is False) -> scalar.
    Per-sequence means (not one mean over all tokens of the batch) make gradient accumulation
    exact: two micro-batches of 4 give the same loss as one batch of 8.
    """
    per_seq = token_nll.sum(1) / mask.sum(1).clamp(min=1)
    return per_seq.mean()


def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
    scored = student.score([b["input"] for b in batch], [b["target"] for b in batch])
    return nll_loss(scored.token_nll(), scored.mask), {}


def test_input(task: Any, example: Example, cfg: FinetuneConfig) -> str:
    return task.student_input(example)


def train(ctx: TrainContext, cfg: FinetuneConfig) -> TrainResult:
    items = [{"input": test_input(ctx.task, ex, cfg), "target": ex.answer} for ex in ctx.train]
    return ctx.fit(items, loss)


METHOD = MethodDef("finetune", FinetuneConfig, train, test_input, CITATION, "gold labels")
