"""mix — negatives treated as positives (TDG's "MIX" baseline).

Li et al. 2024, "Turning Dust into Gold" (TDG, AAAI, arXiv 2312.12832): the baseline that trains
the student directly on the mixture of positive and negative teacher chains, as if all were
correct ("naive mixing of positive/negative data"). It is single_task (CoT-KD) with the negatives
added as ordinary targets: same input, same target format (the chain's text as stored, ending with
the teacher's own — for a negative, wrong — answer statement), same loss.

Source note: this follows TDG's one-line description of the baseline ("train on positives and
negatives as if all were positive"); the paper's full baseline paragraph was not consulted.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.training import TrainContext, TrainResult
from methods.base import MethodDef
from methods.common import chain_items, item_nll
from methods.finetune import test_input  # the task's own input

CITATION = "Li et al. 2024, Turning Dust into Gold (TDG), AAAI, arXiv 2312.12832 (MIX baseline)"


@dataclass(frozen=True)
class MixConfig:
    """No loss hyper-parameters: L = common.nll_loss over positive and negative chains alike."""

    max_chains: int | None = None  # chains of each kind (positive, negative) per example; None: all

    def __post_init__(self) -> None:
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


# The loss is common.nll_loss unchanged, over every chain c_b whatever its label:
#   L = 1/B sum_b 1/|c_b| sum_t -log p(c_b,t | c_b,<t, x_b)     c_b: a positive OR negative chain


def train(ctx: TrainContext, cfg: MixConfig) -> TrainResult:
    # the "negative" flag is carried but ignored: common.item_nll reads only input and target
    return ctx.fit(chain_items(ctx, negatives=True, max_chains=cfg.max_chains), item_nll(ctx.config.loss_reduction))


METHOD = MethodDef(
    "mix", MixConfig, train, test_input, CITATION,
    "teacher positives + negatives, both as targets (labels ignored)",
    inputs=frozenset({"positives", "negatives"}),
)
