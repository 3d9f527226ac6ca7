"""finetune — standard fine-tuning on gold labels, no rationale.

The baseline of every distillation paper here (e.g. Hsieh et al. 2023, "Distilling Step-by-Step!",
arXiv 2305.02301, "Standard finetuning"). Input: the task's student input; target: the gold answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.training import TrainContext, TrainResult
from harness.types import Example
from methods.base import MethodDef
from methods.common import item_nll, nll_loss

__all__ = ["METHOD", "FinetuneConfig", "nll_loss", "test_input", "train"]

CITATION = "Hsieh et al. 2023, arXiv 2305.02301 (standard finetuning baseline)"


@dataclass(frozen=True)
class FinetuneConfig:
    """No hyper-parameters of its own: the budget (steps, lr, batch) is the run spec's `train`."""


# The loss is methods.common.nll_loss on gold labels as targets:
#   L = 1/B sum_b 1/|y_b| sum_t -log p(y_b,t | y_b,<t, x_b)      (train.loss_reduction: sequence)


def test_input(task: Any, example: Example, cfg: FinetuneConfig) -> str:
    return task.student_input(example)


def train(ctx: TrainContext, cfg: FinetuneConfig) -> TrainResult:
    items = [{"input": test_input(ctx.task, ex, cfg), "target": ex.answer} for ex in ctx.train]
    return ctx.fit(items, item_nll(ctx.config.loss_reduction))


METHOD = MethodDef("finetune", FinetuneConfig, train, test_input, CITATION, "gold labels", inputs=frozenset({"gold"}))
