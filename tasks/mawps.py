"""MAWPS-format word-problem sets (MultiArith, AddSub, SingleEq): one JSON list each, rows
{iIndex, sQuestion, lEquations, lSolutions}.

These are evaluation sets with no train split, so every problem is in the test split and
train/valid are empty (transfer test sets). Ids are "<task>-<iIndex>"; the gold answer is
lSolutions[0] in canonical form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.errors import unknown
from harness.types import Example
from tasks import checking, files
from tasks.base import SPLITS

@dataclass(frozen=True)
class MawpsTask(checking.NumericAnswers):
    """A MAWPS-format evaluation set; subclasses set `name` and `file` only."""

    data_dir: str | None = None
    skip_bad: bool = False

    name: ClassVar[str]
    file: ClassVar[str]
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)

    def load(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        examples, skipped = _load(self)
        files.report_skipped(self.name, list(skipped))
        return list(examples) if split == "test" else []

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise)."""
        return list(_load(self)[1])

    def prompt(self, example: Example) -> str:
        return files.few_shot_prompt(example.question)


def _example(name: str, row: dict[str, Any], loc: str) -> Example:
    index = files.require(row, "iIndex", loc, int)
    question = files.require(row, "sQuestion", loc, str)
    solutions = files.require(row, "lSolutions", loc, list)
    if not solutions:
        raise files.RowError(f"{loc}: field 'lSolutions' is empty")
    return Example(
        id=f"{name}-{index}",
        question=question.strip(),
        answer=files.number_answer(solutions[0], loc),
        meta={"equations": files.require(row, "lEquations", loc, list), "iIndex": index},
    )


@functools.lru_cache(maxsize=4)
def _load(task: MawpsTask) -> tuple[tuple[Example, ...], tuple[str, ...]]:
    folder = files.resolve_data_dir(task.data_dir, task.name, task.file)
    path = files.require_file(folder, task.file, task.name)
    examples, skipped = files.json_list_examples(path, task.name, task.skip_bad, functools.partial(_example, task.name))
    return tuple(examples), tuple(skipped)
