"""SVAMP (Patel et al., 2021): 1,000 varied one-unknown arithmetic word problems.

Sources (give one):
- data_dir: the folder holding SVAMP.json (arkilpatel/SVAMP), or a data root holding a svamp/
  folder (e.g. shared/data).
- hf_dataset: a Hugging Face dataset id, normally "ChilleD/SVAMP", or a local folder in the
  hub's layout; splits "train" (700) and "test" (300), fields ID, Body, Question, Equation,
  Answer, Type (question_concat is ignored). Rows go through the same converter as
  SVAMP.json rows, so a problem is the same Example (id, question, answer, meta) from both.

Splits, by split_source (file source only):
- "full" (default): all 1,000 problems are the test split, train/valid are empty (SVAMP has
  no official split; it is an evaluation set).
- "dss": the Distilling-step-by-step 800/200 split, read from svamp_train.json /
  svamp_test.json in `dss_dir` (default: <data root>/dss/datasets/svamp when it exists, or
  the SVAMP folder itself when it holds those files). test = the 200; the 800 are split into
  train/valid by files.hash_split on the id, valid getting ~10% (98; train 702; DSS itself
  has no valid split). DSS rows ("input" = Body + "\\n" + Question) are matched back to
  SVAMP.json, so ids, questions and answers are the same in both sources.
With hf_dataset the hub's own split is used: test = hub test (300); hub train (700) is split
into train/valid by the same files.hash_split (same salt as "dss", so an id's side depends on
the id alone). split_source="dss" together with hf_dataset is an error.

Ids are "svamp-<ID>" (e.g. svamp-chal-1); question = Body + " " + Question.

Labels (`label`):
- "number" (default): the gold answer is the canonical form of Answer (e.g. 51.0 -> "51").
- "equation": the gold answer is the Equation as written (e.g. "( 84.0 / 2.0 )"), the label
  Distilling-step-by-step and QCRD train and score (their paper grids use it). Answers are
  compared by value: both sides are evaluated exactly by checking.evaluate_expression (numbers,
  + - * / and parentheses; never eval), so "(84 / 2)", "42" and "( 84.0 / 2.0 )" agree. An
  output is read as its stated answer ("The answer is (84 / 2).") or, when it states none, as a
  whole (the predict head writes the bare expression). One SVAMP row disagrees with itself:
  chal-680's Equation gives 5 while its Answer says 1; the equation label follows the Equation,
  as DSS does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import checking, files, hub

FILE = "SVAMP.json"
SPLIT_SOURCES = ("full", "dss")
LABELS = ("number", "equation")
VALID_SHARE = 0.10  # share of the DSS train 800 (or the hub train 700) carved out as valid
VALID_SALT = "svamp-dss-valid"


@dataclass(frozen=True)
class SVAMPTask(files.WordProblemFiles, checking.NumericAnswers):
    """Varied one-unknown arithmetic word problems (a robustness test set)."""

    data_dir: str | None = None
    skip_bad: bool = False
    last_number_fallback: bool = True  # read the last number when no answer is stated
    split_source: str = "full"
    dss_dir: str | None = None
    hf_dataset: str | None = None  # e.g. "ChilleD/SVAMP" (its train/test split), instead of data_dir
    label: str = "number"  # "equation": the Equation is the gold answer, compared by value (DSS/QCRD)

    name: ClassVar[str] = "svamp"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)
        hub.check_source(self.name, self.data_dir, self.hf_dataset)
        if self.split_source not in SPLIT_SOURCES:
            raise unknown("split_source for task 'svamp'", str(self.split_source), SPLIT_SOURCES)
        if self.label not in LABELS:
            raise unknown("label for task 'svamp'", str(self.label), LABELS)
        if self.dss_dir is not None and not isinstance(self.dss_dir, str):
            raise UserError(f"task 'svamp': dss_dir must be a path string, got {self.dss_dir!r}")
        if self.hf_dataset is not None and (self.split_source != "full" or self.dss_dir is not None):
            raise UserError(
                "task 'svamp': split_source='dss' and dss_dir apply to data_dir only; "
                "with hf_dataset the hub's own train/test split is used"
            )

    def _loaded(self) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
        return _load(self)

    # --- equation labels: answers are expressions, compared by their exact value ---------------

    def extract(self, text: str) -> str | None:
        if self.label == "number":
            return super().extract(text)
        stated = checking.answer_is(text)
        if stated is not None:
            return stated
        whole = text.strip().rstrip(".").strip()
        return whole if checking.evaluate_expression(whole) is not None else super().extract(text)

    def canonical(self, answer: str) -> str:
        value = checking.evaluate_expression(answer) if self.label == "equation" else None
        return checking.format_number(value) if value is not None else super().canonical(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        if self.label == "number" or pred is None:
            return super().equivalent(pred, gold)
        a, b = checking.evaluate_expression(pred), checking.evaluate_expression(gold)
        if a is None or b is None:
            return super().equivalent(pred, gold)
        return a == b


def _example(row: dict[str, Any], loc: str, label: str = "number") -> Example:
    """The Example of one SVAMP row (from SVAMP.json or the hub): both sources use this."""
    raw_id = files.require(row, "ID", loc, str)
    body = files.require(row, "Body", loc, str)
    question = files.require(row, "Question", loc, str)
    number = files.number_answer(files.require(row, "Answer", loc, (int, float)), loc)
    answer = number
    if label == "equation":
        answer = files.require(row, "Equation", loc, str).strip()
        if checking.evaluate_expression(answer) is None:
            raise files.RowError(f"{loc}: Equation {answer!r} is not an arithmetic expression")
    return Example(
        id=f"svamp-{raw_id}",
        question=f"{body.strip()} {question.strip()}",
        answer=answer,
        meta={
            **({"answer_number": number} if label == "equation" else {}),
            "equation": row.get("Equation"),
            "type": row.get("Type"),
            # The DSS files write the input as Body + "\n" + Question; kept to match them.
            "dss_input": f"{body}\n{question}",
        },
    )


def _train_valid_test(train: list[Example], test: list[Example], what: str) -> dict[str, tuple[Example, ...]]:
    overlap = {e.id for e in train} & {e.id for e in test}
    if overlap:
        raise UserError(f"task 'svamp': {what} train and test share {len(overlap)} problems, e.g. {min(overlap)}")
    valid_ids = files.hash_split((e.id for e in train), VALID_SHARE, salt=VALID_SALT)
    return {
        "train": tuple(e for e in train if e.id not in valid_ids),
        "valid": tuple(e for e in train if e.id in valid_ids),
        "test": tuple(test),
    }


def _default_dss_dir(folder: Path) -> str | None:
    """Where the DSS split files usually are: beside SVAMP.json, or <data root>/dss/datasets/svamp."""
    for cand in (folder, files.data_root(folder, "svamp") / "dss" / "datasets" / "svamp"):
        if (cand / "svamp_train.json").is_file():
            return str(cand)
    return None


def _dss(task: SVAMPTask, folder: Path, full: list[Example], skipped: list[str]) -> dict[str, tuple[Example, ...]]:
    dss = files.resolve_data_dir(
        task.dss_dir if task.dss_dir is not None else _default_dss_dir(folder),
        "svamp",
        "svamp_train.json and svamp_test.json (split_source='dss' needs dss_dir)",
    )
    by_input = {e.meta["dss_input"]: e for e in full}
    out: dict[str, list[Example]] = {}
    for part in ("train", "test"):
        path = files.require_file(dss, f"svamp_{part}.json", "svamp")
        rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)  # JSON Lines despite .json
        skipped.extend(bad)

        def match(row: dict[str, Any], path: Path = path) -> Example:
            loc = files.where(path, row["_line"])
            text = files.require(row, "input", loc, str)
            if text not in by_input:
                raise files.RowError(f"{loc}: input not found in {FILE}")
            return by_input[text]

        out[part] = files.convert_rows(rows, match, task.skip_bad, skipped)
    return _train_valid_test(out["train"], out["test"], "DSS")


def _hub(task: SVAMPTask, skipped: list[str]) -> dict[str, tuple[Example, ...]]:
    dataset = str(task.hf_dataset)
    out: dict[str, list[Example]] = {}
    for split in ("train", "test"):
        seen: set[str] = set()

        def one(row: dict[str, Any], split: str = split, seen: set[str] = seen) -> Example:
            loc = hub.where(dataset, None, split, row["_line"])
            ex = _example(row, loc, task.label)
            if ex.id in seen:
                raise files.RowError(f"{loc}: duplicate id {ex.id!r}")
            seen.add(ex.id)
            return ex

        rows = hub.load_rows(dataset, split, task="svamp")
        out[split] = files.convert_rows(rows, one, task.skip_bad, skipped)
    return _train_valid_test(out["train"], out["test"], f"hf_dataset {dataset!r}")


@functools.lru_cache(maxsize=4)
def _load(task: SVAMPTask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    if task.hf_dataset is not None:
        skipped: list[str] = []
        return _hub(task, skipped), tuple(skipped)
    folder = files.resolve_data_dir(task.data_dir, task.name, FILE, subdir="svamp", marker=FILE)
    path = files.require_file(folder, FILE, task.name)
    full, skipped = files.json_list_examples(path, task.name, task.skip_bad, functools.partial(_example, label=task.label))
    if task.split_source == "full":
        splits = {"train": (), "valid": (), "test": tuple(full)}
    else:
        splits = _dss(task, folder, full, skipped)
    return splits, tuple(skipped)
