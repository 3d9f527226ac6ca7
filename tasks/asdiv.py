"""ASDiv (Miao et al., 2020) and its arithmetic subset ASDiv-A, from the original ASDiv.xml.

Tasks:
  "asdiv"    all 2,305 <Problem> elements of ASDiv.xml;
  "asdiv_a"  the 1,218 ASDiv-A problems: the IDs listed in nfolds/asdiv-a/fold0-4.txt.
Both are evaluation sets: every problem is in test, train/valid are empty (like MAWPS). With
`fold` = k (0-4), test is fold k of the 5-fold split (nfolds/asdiv-w for "asdiv",
nfolds/asdiv-a for "asdiv_a") and train the other four folds, valid being ~10% of those by
files.hash_split (salt "<task>-valid").

Question = Body + " " + Question. Ids are "asdiv-<problem ID>", e.g. "asdiv-nluds-0001".

Gold answers (<Answer>, e.g. "9 (apples)"): units in parentheses are dropped, then
  - a number ("9", "3.5", "5/2", "-(1/3)", "6th") -> its canonical number ("9", "2.5", "-1/3", "6");
  - several values ("5 (years old); 15 (years old)") -> canonical values joined by "; ",
    compared in order, each as a number;
  - anything else (names, "Yes", ratios "3:2", clock times "3:30 p.m.") -> normalised text
    (lowercase, spaces collapsed, no final period, "p.m." -> "pm", "3 : 2" -> "3:2").
`canonical`/`equivalent` apply the same rules to predictions, so every gold checks equal to
its raw <Answer> text.

Hugging Face: EleutherAI/asdiv (config "asdiv", split "validation"; fields body, question,
solution_type, answer, formula). Its rows carry no problem ID, so hub ids are content hashes,
"asdiv-h<first 12 hex of sha256(whitespace-normalised question)>" (a repeated identical
problem gets "-2", "-3", ...), and asdiv_a / fold, which need the IDs, are UserErrors there.
"""

from __future__ import annotations

import functools
import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError
from harness.types import Example
from tasks import checking, files, hub

XML_FILE = "ASDiv.xml"
N_FOLDS = 5
VALID_SHARE = 0.10
HF_CONFIG = "asdiv"
HF_SPLIT = "validation"
FIELDS = ("Body", "Question", "Solution-Type", "Answer", "Formula")
HUB_FIELDS = {"Body": "body", "Question": "question", "Solution-Type": "solution_type", "Answer": "answer", "Formula": "formula"}

# --- answers ----------------------------------------------------------------------------------

_UNIT = re.compile(r"\s*\([^()]*[A-Za-z][^()]*\)")  # "(apples)", "(sq. ft)", "(km/hour)"
_PAREN_NUMBER = re.compile(r"([-+\u2212]?)\s*\(([^()]*)\)")  # "-(1/3)"
_CLOCK = re.compile(r"(\d)\s*([ap])\.?\s*m\b\.?")  # "3:30 p.m." / "3:30pm" -> "3:30 pm"
_COLON = re.compile(r"(\d)\s*:\s*(?=\d)")  # "3 : 2" -> "3:2"
_LIST_SEP = re.compile(r",\s+|\s+and\s+")
_MAX_ANSWER = 300


def _number(value: str) -> str | None:
    """The canonical number of one value ("9 (apples)", "-(1/3)", "2.5 dollars"), or None."""
    s = _UNIT.sub("", value).strip()
    if (m := _PAREN_NUMBER.fullmatch(s)) is not None:
        s = m[1] + m[2]
    return checking.normalize_number(s)


def _one(value: str) -> str:
    num = _number(value)
    if num is not None:
        return num
    text = checking.canonical(_UNIT.sub("", value).strip())
    text = _COLON.sub(r"\1:", _CLOCK.sub(r"\1 \2m", text))
    return text.rstrip(".").strip()


def _values(answer: str) -> list[str]:
    """The values an answer states: split on ";" (ASDiv's separator), or on ", " / " and "
    when every part is a number ("5, 15 and 20")."""
    parts = answer.split(";")
    if len(parts) == 1:
        alt = _LIST_SEP.split(answer)
        if len(alt) > 1 and all(_number(p) is not None for p in alt):
            parts = alt
    return [p.strip() for p in parts]


def asdiv_canonical(answer: str) -> str:
    """The canonical form of an ASDiv answer (see the module docstring)."""
    if len(answer) > _MAX_ANSWER:
        return " ".join(answer.split())
    return "; ".join(_one(v) for v in _values(answer))


def asdiv_equivalent(pred: str | None, gold: str) -> bool:
    """Canonical forms equal, or the same count of values, each checking.equivalent in order."""
    if pred is None:
        return False
    cp, cg = asdiv_canonical(pred), asdiv_canonical(gold)
    if cp == cg:
        return True
    vp, vg = cp.split("; "), cg.split("; ")
    return len(vp) == len(vg) and all(checking.equivalent(a, b) for a, b in zip(vp, vg))


def content_id(question: str) -> str:
    """The content hash used for hub rows (and kept in meta on both paths)."""
    return hashlib.sha256(" ".join(question.split()).encode("utf-8")).hexdigest()[:12]


# --- the tasks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ASDivTask(files.WordProblemFiles):
    """ASDiv: 2,305 diverse English math word problems (an evaluation set)."""

    data_dir: str | None = None
    hf_dataset: str | None = None
    skip_bad: bool = False
    last_number_fallback: bool = True  # read the last number when no answer is stated
    fold: int | None = None

    name: ClassVar[str] = "asdiv"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"
    problem_family: ClassVar[str | None] = "word"  # FDD's problem-writing prompts (tasks/generation.py)
    folds_dir: ClassVar[str] = "asdiv-w"
    subset: ClassVar[bool] = False  # whether the task is the problems listed in its fold files

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)
        hub.check_source(self.name, self.data_dir, self.hf_dataset)
        if self.fold is not None and (
            isinstance(self.fold, bool) or not isinstance(self.fold, int) or not 0 <= self.fold < N_FOLDS
        ):
            raise UserError(f"task {self.name!r}: fold must be 0-{N_FOLDS - 1} or null, got {self.fold!r}")
        if self.hf_dataset is not None and (self.subset or self.fold is not None):
            what = "the ASDiv-A subset" if self.subset else "fold"
            raise UserError(
                f"task {self.name!r}: {what} needs problem IDs, which the Hugging Face copy lacks; "
                "give data_dir (the folder with ASDiv.xml and nfolds/) instead of hf_dataset"
            )

    def _loaded(self) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
        return _load(self)

    def student_input(self, example: Example) -> str:
        return example.question

    def extract(self, text: str) -> str | None:
        return checking.extract_answer(text, last_number_fallback=self.last_number_fallback)

    def canonical(self, answer: str) -> str:
        return asdiv_canonical(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        return asdiv_equivalent(pred, gold)


@dataclass(frozen=True)
class ASDivATask(ASDivTask):
    """ASDiv-A: the 1,218 arithmetic problems of ASDiv (IDs from nfolds/asdiv-a)."""

    name: ClassVar[str] = "asdiv_a"
    folds_dir: ClassVar[str] = "asdiv-a"
    subset: ClassVar[bool] = True


# --- loading ------------------------------------------------------------------------------------


def _example(fields: dict[str, str | None], ex_id: str, loc: str, meta: dict[str, Any]) -> Example:
    for tag in ("Question", "Answer"):
        if not (fields.get(tag) or "").strip():
            raise files.RowError(f"{loc}: missing <{tag}>")
    for tag in ("Body", "Solution-Type", "Formula"):
        if fields.get(tag) is None:
            raise files.RowError(f"{loc}: missing <{tag}>")
    body, question, raw = (fields["Body"] or "").strip(), (fields["Question"] or "").strip(), (fields["Answer"] or "").strip()
    text = f"{body} {question}".strip()
    gold = asdiv_canonical(raw)
    if not gold:
        raise files.RowError(f"{loc}: answer {raw!r} has no value")
    return Example(
        id=ex_id,
        question=text,
        answer=gold,
        meta={
            **meta,
            "raw_answer": raw,
            "solution_type": (fields["Solution-Type"] or "").strip(),
            "formula": (fields["Formula"] or "").strip(),
            "content_id": content_id(text),
        },
    )


def _xml_examples(path: Path, task: ASDivTask, skipped: list[str]) -> list[Example]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else 0
        raise UserError(f"{files.where(path, line)}: malformed XML: {e}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    seen: set[str] = set()

    def one(item: tuple[int, ET.Element]) -> Example:
        index, el = item
        pid = (el.get("ID") or "").strip()
        loc = f"{path}: Problem {pid or '(no ID)'} (#{index + 1})"
        if not pid:
            raise files.RowError(f"{loc}: missing attribute 'ID'")
        if pid in seen:
            raise files.RowError(f"{loc}: duplicate ID {pid!r}")
        seen.add(pid)
        fields = {tag: el.findtext(tag) for tag in FIELDS}
        grade = el.get("Grade")
        meta: dict[str, Any] = {
            "problem_id": pid,
            "index": index,
            "grade": int(grade) if grade and grade.strip().isdigit() else grade,
            "source": el.get("Source"),
        }
        if el.get("Class") is not None:
            meta["class"] = el.get("Class")
        return _example(fields, f"asdiv-{pid}", loc, meta)

    return files.convert_rows(enumerate(root.iter("Problem")), one, task.skip_bad, skipped)


def _hub_examples(task: ASDivTask, skipped: list[str]) -> list[Example]:
    dataset = task.hf_dataset
    assert dataset is not None
    rows = hub.load_rows(dataset, HF_SPLIT, task=task.name, config=HF_CONFIG)
    counts: dict[str, int] = {}

    def one(row: dict[str, Any]) -> Example:
        loc = hub.where(dataset, HF_CONFIG, HF_SPLIT, row["_line"])
        fields = {}
        for tag, key in HUB_FIELDS.items():
            value = row.get(key)
            if value is not None and not isinstance(value, str):
                raise files.RowError(f"{loc}: field {key!r} has type {type(value).__name__}")
            fields[tag] = value
        for tag in ("Body", "Question", "Answer"):
            if fields[tag] is None:
                raise files.RowError(f"{loc}: missing field {HUB_FIELDS[tag]!r}")
        text = f"{(fields['Body'] or '').strip()} {(fields['Question'] or '').strip()}".strip()
        cid = content_id(text)
        counts[cid] = counts.get(cid, 0) + 1
        ex_id = f"asdiv-h{cid}" + (f"-{counts[cid]}" if counts[cid] > 1 else "")
        return _example(fields, ex_id, loc, {"hf_dataset": dataset, "row": row["_line"]})

    return files.convert_rows(rows, one, task.skip_bad, skipped)


def _fold_ids(folder: Path, task: ASDivTask) -> list[list[str]]:
    """The problem IDs of each fold file of the task (one ID per line)."""
    out = []
    for k in range(N_FOLDS):
        rel = f"nfolds/{task.folds_dir}/fold{k}.txt"
        path = files.require_file(folder, rel, task.name)
        try:
            out.append([line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: cannot read: {e}") from None
    return out


@functools.lru_cache(maxsize=8)
def _load(task: ASDivTask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    skipped: list[str] = []
    if task.hf_dataset is not None:  # __post_init__ ruled out subset and fold here
        return {"train": (), "valid": (), "test": tuple(_hub_examples(task, skipped))}, tuple(skipped)
    folder = files.resolve_data_dir(
        task.data_dir, task.name, f"{XML_FILE} and nfolds/", subdir="asdiv", marker=XML_FILE
    )
    examples = _xml_examples(files.require_file(folder, XML_FILE, task.name), task, skipped)
    if not task.subset and task.fold is None:
        return {"train": (), "valid": (), "test": tuple(examples)}, tuple(skipped)
    folds = _fold_ids(folder, task)
    fold_of: dict[str, int] = {}
    for k, ids in enumerate(folds):
        for pid in ids:
            if pid in fold_of:
                raise UserError(f"task {task.name!r}: problem {pid!r} is listed in fold{fold_of[pid]} and fold{k}")
            fold_of[pid] = k
    known = {e.meta["problem_id"] for e in examples}
    missing = [pid for pid in fold_of if pid not in known]
    if missing and not skipped:  # with skip_bad, a skipped problem may be one of them
        raise UserError(
            f"task {task.name!r}: nfolds/{task.folds_dir} lists {len(missing)} IDs not in {XML_FILE} "
            f"(first: {missing[0]!r})"
        )
    unlisted = [pid for pid in known if pid not in fold_of]
    if unlisted and not task.subset:  # the whole-set folds must place every problem
        raise UserError(
            f"task {task.name!r}: {len(unlisted)} problems of {XML_FILE} are in no nfolds/{task.folds_dir} "
            f"file (first: {unlisted[0]!r})"
        )
    listed = [e for e in examples if e.meta["problem_id"] in fold_of]
    if task.fold is None:
        return {"train": (), "valid": (), "test": tuple(listed)}, tuple(skipped)
    test = tuple(e for e in listed if fold_of[e.meta["problem_id"]] == task.fold)
    rest = [e for e in listed if fold_of[e.meta["problem_id"]] != task.fold]
    valid_ids = files.hash_split((e.id for e in rest), VALID_SHARE, salt=f"{task.name}-valid")
    splits = {
        "train": tuple(e for e in rest if e.id not in valid_ids),
        "valid": tuple(e for e in rest if e.id in valid_ids),
        "test": test,
    }
    return splits, tuple(skipped)

