"""ANLI round 1 (Nie et al., 2020) from the Distilling-step-by-step export in `data_dir`
(e.g. shared/data/dss/datasets/anli1 or shared/data/anli_r1): anli1_{train,valid,test}.json,
JSON Lines {"uid", "premise", "hypothesis", "label": 0|1|2, "reason"}.

Splits: valid = ANLI R1 dev (1,000), test = ANLI R1 test (1,000). train = anli1_train.json
(16,946) when present; the shared DSS copy lacks it, and then load("train") is a UserError
rather than a silently empty split. Ids are "anli1-<uid>". Gold answers are the label words
entailment / neutral / contradiction (0 / 1 / 2); any other label is a row error.
Rationale: the annotator's "reason" when non-empty (it explains why the model was fooled,
so it is not a chain of thought; kept in meta too).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.types import Example
from tasks import files, nli

PREFIX = "anli1"


@dataclass(frozen=True)
class ANLITask(nli.NLIAnswers):
    """Adversarial NLI, round 1: premise/hypothesis pairs, three labels."""

    data_dir: str | None = None
    skip_bad: bool = False

    name: ClassVar[str] = "anli"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)

    def load(self, split: str) -> list[Example]:
        return nli.pick(self, split, lambda: _load(self), PREFIX)

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise)."""
        return list(_load(self)[1])


def _example(row: dict[str, Any], loc: str, split: str, index: int) -> Example:
    uid = files.require(row, "uid", loc, str)
    premise = files.require(row, "premise", loc, str)
    hypothesis = files.require(row, "hypothesis", loc, str)
    label = nli.label_word(files.require(row, "label", loc), loc)
    reason = row.get("reason") if isinstance(row.get("reason"), str) else None
    return Example(
        id=f"anli1-{uid}",
        question=nli.question(premise, hypothesis),
        answer=label,
        rationale=(reason.strip() or None) if reason else None,
        meta={"file": f"{PREFIX}_{split}.json", "line": row["_line"], "premise": premise, "hypothesis": hypothesis},
    )


@functools.lru_cache(maxsize=4)
def _load(task: ANLITask) -> tuple[dict[str, tuple[Example, ...] | None], tuple[str, ...]]:
    return nli.load_dss_splits(task, PREFIX, _example)
