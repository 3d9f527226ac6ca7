"""SVAMP (Patel et al., 2021) from SVAMP.json in `data_dir` (1,000 problems).

split_source="full" (default): all 1,000 problems are the test split, train/valid are empty
(SVAMP has no official split; it is an evaluation set).
split_source="dss": the Distilling-step-by-step 800/200 split, read from svamp_train.json /
svamp_test.json in `dss_dir` (e.g. shared/data/dss/datasets/svamp). test = the 200; the 800
are split into train/valid by files.hash_split on the id, valid getting ~10% (98; train 702;
DSS itself has no valid split). DSS rows ("input" = Body + "\\n" + Question) are matched back to SVAMP.json,
so ids, questions and answers are the same in both sources.

Ids are "svamp-<ID>" (e.g. svamp-chal-1); question = Body + " " + Question; the gold answer
is the canonical form of Answer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import checking, files

FILE = "SVAMP.json"
SPLIT_SOURCES = ("full", "dss")
VALID_SHARE = 0.10  # share of the DSS train 800 carved out as valid


@dataclass(frozen=True)
class SVAMPTask(checking.NumericAnswers):
    """Varied one-unknown arithmetic word problems (a robustness test set)."""

    data_dir: str | None = None
    skip_bad: bool = False
    split_source: str = "full"
    dss_dir: str | None = None

    name: ClassVar[str] = "svamp"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)
        if self.split_source not in SPLIT_SOURCES:
            raise unknown("split_source for task 'svamp'", str(self.split_source), SPLIT_SOURCES)
        if self.dss_dir is not None and not isinstance(self.dss_dir, str):
            raise UserError(f"task 'svamp': dss_dir must be a path string, got {self.dss_dir!r}")

    def load(self, split: str) -> list[Example]:
        return files.pick_split(self, split, _load(self))

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise)."""
        return list(_load(self)[1])

    def prompt(self, example: Example) -> str:
        return files.few_shot_prompt(example.question)


def _example(row: dict[str, Any], loc: str) -> Example:
    raw_id = files.require(row, "ID", loc, str)
    body = files.require(row, "Body", loc, str)
    question = files.require(row, "Question", loc, str)
    return Example(
        id=f"svamp-{raw_id}",
        question=f"{body.strip()} {question.strip()}",
        answer=files.number_answer(files.require(row, "Answer", loc, (int, float)), loc),
        meta={
            "equation": row.get("Equation"),
            "type": row.get("Type"),
            # The DSS files write the input as Body + "\n" + Question; kept to match them.
            "dss_input": f"{body}\n{question}",
        },
    )


def _dss(task: SVAMPTask, full: list[Example], skipped: list[str]) -> dict[str, tuple[Example, ...]]:
    folder = files.resolve_data_dir(
        task.dss_dir, "svamp", "svamp_train.json and svamp_test.json (split_source='dss' needs dss_dir)"
    )
    by_input = {e.meta["dss_input"]: e for e in full}
    out: dict[str, list[Example]] = {}
    for part in ("train", "test"):
        path = files.require_file(folder, f"svamp_{part}.json", "svamp")
        rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)  # JSON Lines despite .json
        skipped.extend(bad)

        def match(row: dict[str, Any], path: Path = path) -> Example:
            loc = files.where(path, row["_line"])
            text = files.require(row, "input", loc, str)
            if text not in by_input:
                raise files.RowError(f"{loc}: input not found in {FILE}")
            return by_input[text]

        out[part] = files.convert_rows(rows, match, task.skip_bad, skipped)
    overlap = {e.id for e in out["train"]} & {e.id for e in out["test"]}
    if overlap:
        raise UserError(f"task 'svamp': DSS train and test share {len(overlap)} problems, e.g. {min(overlap)}")
    valid_ids = files.hash_split((e.id for e in out["train"]), VALID_SHARE, salt="svamp-dss-valid")
    return {
        "train": tuple(e for e in out["train"] if e.id not in valid_ids),
        "valid": tuple(e for e in out["train"] if e.id in valid_ids),
        "test": tuple(out["test"]),
    }


@functools.lru_cache(maxsize=4)
def _load(task: SVAMPTask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    folder = files.resolve_data_dir(task.data_dir, task.name, FILE)
    path = files.require_file(folder, FILE, task.name)
    full, skipped = files.json_list_examples(path, task.name, task.skip_bad, _example)
    if task.split_source == "full":
        splits = {"train": (), "valid": (), "test": tuple(full)}
    else:
        splits = _dss(task, full, skipped)
    return splits, tuple(skipped)
