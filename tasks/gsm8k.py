"""GSM8K (Cobbe et al., 2021) from the original train.jsonl / test.jsonl in `data_dir`.

Splits: test = test.jsonl (1,319); train.jsonl (7,473) is split into train and valid by
files.hash_split on the example id, valid getting ~10% (754; train 6,719), since GSM8K
ships no valid split. Ids are "gsm8k-<file>-<0-based line index>", e.g. gsm8k-train-0.
Gold answer: the canonical number after "#### " (commas removed). Rationale: the reference
solution before "####", with calculator annotations "<<48/2=24>>" removed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.types import Example
from tasks import checking, files

VALID_SHARE = 0.10  # share of train.jsonl carved out as valid
_CALC = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class GSM8KTask(checking.NumericAnswers):
    """GSM8K grade-school math word problems with their reference solutions as rationales."""

    data_dir: str | None = None
    skip_bad: bool = False

    name: ClassVar[str] = "gsm8k"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)

    def load(self, split: str) -> list[Example]:
        return files.pick_split(self, split, _load(self))

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise)."""
        return list(_load(self)[1])

    def prompt(self, example: Example) -> str:
        return files.few_shot_prompt(example.question)


def parse_solution(solution: str, loc: str) -> tuple[str, str]:
    """(canonical gold answer, rationale) from a GSM8K reference solution."""
    if "####" not in solution:
        raise files.RowError(f"{loc}: answer has no '#### <number>' line")
    body, _, final = solution.rpartition("####")
    gold = files.number_answer(final.strip().replace(",", ""), loc)
    rationale = _CALC.sub("", body).strip()
    return gold, rationale


def _example(row: dict[str, Any], split_file: str, index: int, loc: str) -> Example:
    question = files.require(row, "question", loc, str)
    gold, rationale = parse_solution(files.require(row, "answer", loc, str), loc)
    return Example(
        id=f"gsm8k-{split_file}-{index}",
        question=question.strip(),
        answer=gold,
        rationale=rationale,
        meta={"file": f"{split_file}.jsonl", "line": row["_line"]},
    )


def _read(folder: Any, split_file: str, task: GSM8KTask, skipped: list[str]) -> list[Example]:
    path = files.require_file(folder, f"{split_file}.jsonl", "gsm8k")
    rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)
    skipped.extend(bad)
    # The index is the 0-based line number, so ids never shift when skip_bad drops a row.
    return files.convert_rows(
        rows,
        lambda r: _example(r, split_file, r["_line"] - 1, files.where(path, r["_line"])),
        task.skip_bad,
        skipped,
    )


@functools.lru_cache(maxsize=4)
def _load(task: GSM8KTask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    folder = files.resolve_data_dir(task.data_dir, "gsm8k", "train.jsonl and test.jsonl")
    skipped: list[str] = []
    train_all = _read(folder, "train", task, skipped)
    test = _read(folder, "test", task, skipped)
    valid_ids = files.hash_split((e.id for e in train_all), VALID_SHARE, salt="gsm8k-valid")
    splits = {
        "train": tuple(e for e in train_all if e.id not in valid_ids),
        "valid": tuple(e for e in train_all if e.id in valid_ids),
        "test": tuple(test),
    }
    return splits, tuple(skipped)
