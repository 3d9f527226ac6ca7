"""mix — negatives treated as positives (TDG's "MIX" baseline).

Li et al. 2024, "Turning Dust into Gold" (TDG, AAAI, arXiv 2312.12832): the baseline that trains
the student directly on the mixture of positive and negative teacher chains, as if all were
correct ("naive mixing of positive/negative data"). It is single_task (CoT-KD) with the negatives
added as ordinary targets: same input, same target format (the chain's text as stored, ending with
the teacher's own — for a negative, wrong — answer statement), same loss.

Source note: the TDG paper's own baseline paragraph is not among the project's seeds
(/work/shared/seeds holds its abstract and a summary); this follows /work/shared/METHODS.md
("train on positives and negatives as if all were positive").
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.training import TrainContext, TrainResult
from methods.base import MethodDef
from methods.finetune import loss as nll_item_loss
from methods.single_task import chain_items, test_input

CITATION = "Li et al. 2024, Turning Dust into Gold (TDG), AAAI, arXiv 2312.12832 (MIX baseline)"


@dataclass(frozen=True)
class MixConfig:
    """No loss hyper-parameters: L = finetune.nll_loss over positive and negative chains alike."""

    max_chains: int | None = None  # chains of each kind (positive, negative) per example; None: all

    def __post_init__(self) -> None:
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


# The loss is finetune.nll_loss unchanged, over every chain c_b whatever its label:
#   L = 1/B sum_b 1/|c_b| sum_t -log p(c_b,t | c_b,<t, x_b)     c_b: a positive OR negative chain


def train(ctx: TrainContext, cfg: MixConfig) -> TrainResult:
    # the "negative" flag is carried but ignored: finetune.loss reads only input and target
    return ctx.fit(chain_items(ctx, negatives=True, max_chains=cfg.max_chains), nll_item_loss)


METHOD = MethodDef(
    "mix", MixConfig, train, test_input, CITATION, "teacher positives + negatives, both as targets (labels ignored)"
)
