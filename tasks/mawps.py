"""MAWPS-format word-problem sets (MultiArith, AddSub, SingleEq).

Sources (give one):
- data_dir: the set's JSON list file (MultiArith.json, AddSub.json, questions.json), rows
  {iIndex, sQuestion, lEquations, lSolutions}; data_dir may be the folder holding it or a
  data root holding a multiarith/, addsub/ or singleeq/ folder (e.g. shared/data).
  These are evaluation sets with no train split, so every problem is in the test split and
  train/valid are empty (transfer test sets). Ids are "<task>-<iIndex>".
- hf_dataset: a Hugging Face dataset id or a local folder in the hub's layout.
  * multiarith: normally "ChilleD/MultiArith", splits "train" (420) and "test" (180), fields
    question, final_ans (a string or a number). Hub test is the test split; hub train is
    split into train/valid by files.hash_split on the id (~10% valid). The hub rows carry no
    iIndex, so ids are content hashes: "multiarith-h<sha256(normalised question)[:10]>"
    (whitespace collapsed, lowercased); they do not match the file source's iIndex ids.
    MultiArith repeats 20 questions (same answers): a repeat within a split is kept once,
    and a question in both hub train and test is kept in test only (no train/test leak);
    each drop is logged. A repeated question with a different answer is a bad row.
  * addsub, singleeq: there is no standard hub copy; a hub-layout folder (or id) with the
    MAWPS fields above and a "test" split loads exactly like the file (same converter, same
    "<task>-<iIndex>" ids, all test).
The gold answer is lSolutions[0] (or final_ans) in canonical form (e.g. 39.0 -> "39").
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.types import Example
from tasks import checking, files, hub

log = logging.getLogger("distillbench.tasks")
VALID_SHARE = 0.10  # share of a hub train split carved out as valid


@dataclass(frozen=True)
class MawpsTask(files.WordProblemFiles, checking.NumericAnswers):
    """A MAWPS-format evaluation set; subclasses set `name`, `file` and `hub_format` only."""

    data_dir: str | None = None
    skip_bad: bool = False
    last_number_fallback: bool = True  # read the last number when no answer is stated
    hf_dataset: str | None = None  # a hub id or hub-layout folder, instead of data_dir

    name: ClassVar[str]
    file: ClassVar[str]
    # "mawps": hub rows have the file's fields and a "test" split (ids from iIndex);
    # "chilled": ChilleD/MultiArith's question/final_ans with train/test (content-hash ids).
    hub_format: ClassVar[str] = "mawps"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)
        hub.check_source(self.name, self.data_dir, self.hf_dataset)

    def _loaded(self) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
        return _load(self)


def _example(name: str, row: dict[str, Any], loc: str) -> Example:
    """The Example of one MAWPS-format row (from the JSON file or a hub folder)."""
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


def content_id(name: str, question: str) -> str:
    """"<name>-h<sha256[:10]>" of the question with whitespace collapsed and lowercased."""
    norm = " ".join(question.split()).lower()
    return f"{name}-h{hashlib.sha256(norm.encode('utf-8')).hexdigest()[:10]}"


def _chilled_example(name: str, row: dict[str, Any], loc: str) -> Example:
    """The Example of one ChilleD/MultiArith row {question, final_ans}: a content-hash id."""
    question = files.require(row, "question", loc, str)
    answer = files.require(row, "final_ans", loc, (str, int, float))
    return Example(
        id=content_id(name, question),
        question=question.strip(),
        answer=files.number_answer(answer, loc),
    )


def _load_hub(task: MawpsTask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    dataset = str(task.hf_dataset)
    skipped: list[str] = []
    if task.hub_format == "mawps":
        rows = hub.load_rows(dataset, "test", task=task.name)
        seen: set[str] = set()

        def one(row: dict[str, Any]) -> Example:
            loc = hub.where(dataset, None, "test", row["_line"])
            ex = _example(task.name, row, loc)
            if ex.id in seen:  # ids must be unique: a repeated iIndex is a bad row
                raise files.RowError(f"{loc}: duplicate id {ex.id!r}")
            seen.add(ex.id)
            return ex

        test = files.convert_rows(rows, one, task.skip_bad, skipped)
        return {"train": (), "valid": (), "test": tuple(test)}, tuple(skipped)

    # Test first, so a question in both hub splits is kept in test (no train/test leak).
    kept: dict[str, tuple[Example, str, str]] = {}  # id -> (example, split, loc)
    notes: list[str] = []
    for split in ("test", "train"):
        rows = hub.load_rows(dataset, split, task=task.name)

        def one(row: dict[str, Any], split: str = split) -> None:
            loc = hub.where(dataset, None, split, row["_line"])
            ex = _chilled_example(task.name, row, loc)
            if ex.id not in kept:
                kept[ex.id] = (ex, split, loc)
                return
            first, first_split, first_loc = kept[ex.id]
            if ex.answer != first.answer:
                raise files.RowError(
                    f"{loc}: repeats the question of {first_loc} with answer {ex.answer}, not {first.answer}"
                )
            notes.append(f"{loc}: repeats the question of {first_loc}; kept once, in {first_split}")

        files.convert_rows(rows, one, task.skip_bad, skipped)
    for note in notes:
        log.info("task %r: %s", task.name, note)
    if notes:
        log.warning(
            "task %r: %s: %d repeated questions dropped, each kept once (in test when it is in test)",
            task.name, dataset, len(notes),
        )
    train = [e for e, s, _ in kept.values() if s == "train"]
    test = [e for e, s, _ in kept.values() if s == "test"]
    valid_ids = files.hash_split((e.id for e in train), VALID_SHARE, salt=f"{task.name}-hub-valid")
    splits = {
        "train": tuple(e for e in train if e.id not in valid_ids),
        "valid": tuple(e for e in train if e.id in valid_ids),
        "test": tuple(test),
    }
    return splits, tuple(skipped)


@functools.lru_cache(maxsize=4)
def _load(task: MawpsTask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    if task.hf_dataset is not None:
        return _load_hub(task)
    folder = files.resolve_data_dir(task.data_dir, task.name, task.file, subdir=task.name, marker=task.file)
    path = files.require_file(folder, task.file, task.name)
    examples, skipped = files.json_list_examples(path, task.name, task.skip_bad, functools.partial(_example, task.name))
    return {"train": (), "valid": (), "test": tuple(examples)}, tuple(skipped)
