"""single_task — CoT knowledge distillation (CoT-KD): input -> "rationale + answer" as one target.

The "single-task" / "CoT distillation" baseline of Hsieh et al. 2023 (arXiv 2305.02301, Sec. 4,
"rationale and label concatenated as one output") and the "CoT KD" baseline of TDG (Li et al.
2024, arXiv 2312.12832): the student reads the task's input and is trained to write a teacher
positive chain, reasoning first and answer last; at test time it generates a chain and the
task's extractor reads the answer from it.

How the answer is appended: it is not appended by this method. The target is the chain's text as
the bank stores it, which already ends with the teacher's own answer statement ("The answer is X."
for oracle, gold and DSS-import chains; the last \\boxed{} for TDG chains). A chain is a positive
only when the answer extracted from that statement equals the gold answer, so the target's answer
is the gold one by construction (not re-written in the gold's spelling: "0.5" stays "0.5" for
gold "1/2").

By default every positive chain of an example is an item (TDG's CoT KD trains on all the positive
samples of its 8 per problem); `max_chains` keeps only the first n per example.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.training import TrainContext, TrainResult
from methods.base import MethodDef
from methods.common import chain_items, item_nll
from methods.finetune import test_input  # the task's own input, as finetune

CITATION = (
    "Hsieh et al. 2023, arXiv 2305.02301 (single-task CoT baseline); "
    "Li et al. 2024 (TDG), AAAI, arXiv 2312.12832 (CoT KD baseline)"
)


@dataclass(frozen=True)
class SingleTaskConfig:
    """CoT-KD has no loss hyper-parameters: L = common.nll_loss on (input, chain) pairs."""

    max_chains: int | None = None  # positives per example; None: all of them

    def __post_init__(self) -> None:
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


# The loss is common.nll_loss unchanged, on chain targets:
#   L = 1/B sum_b 1/|c_b| sum_t -log p(c_b,t | c_b,<t, x_b)     c_b: a teacher positive chain
# (common.item_nll scores the items' "input" -> "target" and applies it.)


def train(ctx: TrainContext, cfg: SingleTaskConfig) -> TrainResult:
    return ctx.fit(chain_items(ctx, negatives=False, max_chains=cfg.max_chains), item_nll(ctx.config.loss_reduction))


METHOD = MethodDef(
    "single_task", SingleTaskConfig, train, test_input, CITATION,
    "teacher positives (rationale + answer as one target)",
    inputs=frozenset({"positives"}),
)
