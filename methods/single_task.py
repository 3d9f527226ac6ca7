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

This module also holds the chain-item helpers that mix / ul / nt reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.student import Student
from harness.training import Item, TrainContext, TrainResult
from methods.base import MethodDef
from methods.finetune import loss as nll_item_loss
from methods.finetune import test_input  # the task's own input, as finetune

CITATION = (
    "Hsieh et al. 2023, arXiv 2305.02301 (single-task CoT baseline); "
    "Li et al. 2024 (TDG), AAAI, arXiv 2312.12832 (CoT KD baseline)"
)


@dataclass(frozen=True)
class SingleTaskConfig:
    """CoT-KD has no loss hyper-parameters: L = finetune.nll_loss on (input, chain) pairs."""

    max_chains: int | None = None  # positives per example; None: all of them

    def __post_init__(self) -> None:
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


# The loss is finetune.nll_loss unchanged, on chain targets:
#   L = 1/B sum_b 1/|c_b| sum_t -log p(c_b,t | c_b,<t, x_b)     c_b: a teacher positive chain
# (finetune.loss scores the items' "input" -> "target" and applies it.)


def chain_items(ctx: TrainContext, *, negatives: bool, max_chains: int | None = None) -> list[Item]:
    """Items {"input", "target", "negative"}: the chains of every train example as targets.

    Positives always; negatives too when `negatives` (flagged "negative": True). `max_chains`
    caps each kind per example. Chains with empty text are left out. Counts go to the log.
    Shared by single_task, mix, ul and nt.
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


def train(ctx: TrainContext, cfg: SingleTaskConfig) -> TrainResult:
    return ctx.fit(chain_items(ctx, negatives=False, max_chains=cfg.max_chains), nll_item_loss)


METHOD = MethodDef(
    "single_task", SingleTaskConfig, train, test_input, CITATION, "teacher positives (rationale + answer as one target)"
)
