"""GSM8K (Cobbe et al., 2021): grade-school math word problems with reference solutions.

Sources (give one):
- data_dir: the original train.jsonl / test.jsonl (openai/grade-school-math). data_dir may be
  the folder holding them or a data root holding a gsm8k/ folder (e.g. shared/data).
- hf_dataset: a Hugging Face dataset id, normally "openai/gsm8k", or a local folder in the
  hub's layout; config "main", splits "train" and "test", fields question, answer. The hub
  rows are the jsonl lines in the same order, so both sources give the same Examples (ids,
  questions, answers, rationales, meta) and share one row converter.

Splits: test = test.jsonl / hub test (1,319); train.jsonl / hub train (7,473) is split into
train and valid by files.hash_split on the example id, valid getting ~10% (754; train 6,719),
since GSM8K ships no valid split. Ids are "gsm8k-<train|test>-<0-based row index>", e.g.
gsm8k-train-0 (a skipped bad row never shifts later ids). meta = {"file", "line"}: the row's
position in the original jsonl (1-based line = row index + 1).
Gold answer: the canonical number after "####" (commas removed: "1,000" -> "1000").
Rationale: the reference solution before "####", with calculator annotations "<<48/2=24>>"
removed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.types import Example
from tasks import checking, files, hub

VALID_SHARE = 0.10  # share of train.jsonl carved out as valid
HF_CONFIG = "main"  # the openai/gsm8k config holding the original problems
_CALC = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class GSM8KTask(files.WordProblemFiles, checking.NumericAnswers):
    """GSM8K grade-school math word problems with their reference solutions as rationales."""

    data_dir: str | None = None
    skip_bad: bool = False
    last_number_fallback: bool = True  # read the last number when no answer is stated
    hf_dataset: str | None = None  # e.g. "openai/gsm8k" (config "main"), instead of data_dir

    name: ClassVar[str] = "gsm8k"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)
        hub.check_source(self.name, self.data_dir, self.hf_dataset)

    def _loaded(self) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
        return _load(self)


def parse_solution(solution: str, loc: str) -> tuple[str, str]:
    """(canonical gold answer, rationale) from a GSM8K reference solution."""
    if "####" not in solution:
        raise files.RowError(f"{loc}: answer has no '#### <number>' line")
    body, _, final = solution.rpartition("####")
    gold = files.number_answer(final.strip().replace(",", ""), loc)
    rationale = _CALC.sub("", body).strip()
    return gold, rationale


def _example(row: dict[str, Any], split_file: str, index: int, loc: str) -> Example:
    """The Example of one row (a jsonl line or a hub row): both sources use this converter."""
    question = files.require(row, "question", loc, str)
    gold, rationale = parse_solution(files.require(row, "answer", loc, str), loc)
    return Example(
        id=f"gsm8k-{split_file}-{index}",
        question=question.strip(),
        answer=gold,
        rationale=rationale,
        meta={"file": f"{split_file}.jsonl", "line": index + 1},
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


def _read_hub(split: str, task: GSM8KTask, skipped: list[str]) -> list[Example]:
    dataset = str(task.hf_dataset)
    rows = hub.load_rows(dataset, split, task=task.name, config=HF_CONFIG)
    # "_line" is the 0-based row index, i.e. the jsonl line index: the same ids as the files.
    return files.convert_rows(
        rows,
        lambda r: _example(r, split, r["_line"], hub.where(dataset, HF_CONFIG, split, r["_line"])),
        task.skip_bad,
        skipped,
    )


@functools.lru_cache(maxsize=4)
def _load(task: GSM8KTask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    skipped: list[str] = []
    if task.hf_dataset is not None:
        train_all = _read_hub("train", task, skipped)
        test = _read_hub("test", task, skipped)
    else:
        folder = files.resolve_data_dir(
            task.data_dir, "gsm8k", "train.jsonl and test.jsonl", subdir="gsm8k", marker="train.jsonl"
        )
        train_all = _read(folder, "train", task, skipped)
        test = _read(folder, "test", task, skipped)
    valid_ids = files.hash_split((e.id for e in train_all), VALID_SHARE, salt="gsm8k-valid")
    splits = {
        "train": tuple(e for e in train_all if e.id not in valid_ids),
        "valid": tuple(e for e in train_all if e.id in valid_ids),
        "test": tuple(test),
    }
    return splits, tuple(skipped)
