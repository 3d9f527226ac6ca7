"""e-SNLI (Camburu et al., 2018) from the Distilling-step-by-step export in `data_dir`
(e.g. shared/data/dss/datasets/esnli): esnli_{train,valid,test}.json, JSON Lines
{"premise", "hypothesis", "label": 0|1|2, "explanation_1", "explanation_2", "explanation_3"}.

Splits: valid = e-SNLI dev (9,842), test = e-SNLI test (9,824). train = esnli_train.json
(549,367) when present; the shared DSS copy lacks it (not obtainable), and then
load("train") is a UserError rather than a silently empty split. Rows have no id, so ids
are "esnli-<split>-<0-based line index>", e.g. esnli-test-0. Gold answers are the label words
entailment / neutral / contradiction (0 / 1 / 2); any other label is a row error.
Rationale: explanation_1 (the human explanation) when non-empty; all three are in meta.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.types import Example
from tasks import files, nli

PREFIX = "esnli"


@dataclass(frozen=True)
class ESNLITask(nli.NLIAnswers):
    """SNLI premise/hypothesis pairs with human-written explanations."""

    data_dir: str | None = None
    skip_bad: bool = False

    name: ClassVar[str] = "esnli"
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
    premise = files.require(row, "premise", loc, str)
    hypothesis = files.require(row, "hypothesis", loc, str)
    label = nli.label_word(files.require(row, "label", loc), loc)
    expl = [row.get(f"explanation_{i}") for i in (1, 2, 3)]
    expl = [e.strip() if isinstance(e, str) and e.strip() else None for e in expl]
    return Example(
        id=f"esnli-{split}-{index}",
        question=nli.question(premise, hypothesis),
        answer=label,
        rationale=expl[0],
        meta={"file": f"{PREFIX}_{split}.json", "line": row["_line"], "explanations": expl},
    )


@functools.lru_cache(maxsize=4)
def _load(task: ESNLITask) -> tuple[dict[str, tuple[Example, ...] | None], tuple[str, ...]]:
    return nli.load_dss_splits(task, PREFIX, _example)
