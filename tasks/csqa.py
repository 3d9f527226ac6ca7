"""CommonsenseQA v1.11 (Talmor et al., 2019), from the original files, the DSS CoS-E export or
Hugging Face. Every source gives the same Examples (ids, questions, choices, answers, splits);
only the DSS / CoS-E sources carry a gold rationale.

- source="csqa" (data_dir): the original train_rand_split.jsonl (9,741) and
  dev_rand_split.jsonl (1,221), e.g. shared/data/csqa. No rationale.
  test_rand_split_no_answers.jsonl is not read.
- source="dss" (data_dir): the Distilling-step-by-step export cqa_train.json (= CSQA train) and
  cqa_test.json (= CSQA dev), JSON Lines {"id", "question", "choices": [5 texts], "answer":
  choice text, "abstractive_explanation", "extractive_explanation"}, e.g.
  shared/data/dss/datasets/cqa. Rationale: the CoS-E abstractive explanation.
- source="auto" (default): whichever files data_dir holds. data_dir may be a data root:
  csqa/ is tried first, then dss/datasets/cqa.
- hf_dataset: "tau/commonsense_qa" (train / validation; its unlabeled test is not read), or
  CoS-E "cos_e" / "Salesforce/cos_e" (any id or folder named cos_e; config v1.11; the DSS
  export is this dataset written with to_json). A local folder in the hub layout works too.

Splits: test = the CSQA DEV set (1,221), because the official test set has no public labels;
DSS and the papers reusing its data evaluate on CSQA dev too. CSQA train (9,741) is split into
train and valid by files.hash_split on the id, valid getting ~10% (968; train 8,773). Each
split is sorted by id, since the sources list the questions in different orders.

Ids are "csqa-<id>". choices = the 5 choice texts in label order A..E. The gold answer is the
choice letter plus its text, "(c) wooded area", whose canonical form is the letter "c":
"c", "(c)", "(c) wooded area" and "The answer is (c)" all match. extract(text) returns a letter
only; extract_for(example, text) also maps a stated choice text to its letter (to the text
itself when two choices share it, which equivalent() compares with the gold's text).

The DSS / CoS-E answer is a choice text, not a letter: its letter is the first choice with that
text. In 48 questions (42 train, 6 dev) two choices have the same text, and in 19 of them
(17 train, 2 dev) the original answerKey is the later one, so only there does the gold letter
differ from source="csqa" (the text is the same; meta["answer_letters"] lists both letters).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import files, hub
from tasks.base import TaskDefaults

VALID_SHARE = 0.10  # share of CSQA train carved out as valid
LETTERS = "abcde"
TRAIN_FILE, DEV_FILE = "train_rand_split.jsonl", "dev_rand_split.jsonl"
DSS_TRAIN, DSS_TEST = "cqa_train.json", "cqa_test.json"
SOURCES = ("auto", "csqa", "dss")
COS_E_CONFIG = "v1.11"
# (source, subdir of data_dir, a file it holds), in order of preference.
LAYOUTS = (("csqa", "", TRAIN_FILE), ("dss", "", DSS_TRAIN), ("csqa", "csqa", TRAIN_FILE), ("dss", "dss/datasets/cqa", DSS_TRAIN))

# "answer is (c)", "answer is (c) text", "answer is c", "answer is c." -- not "answer is a bird".
_STATED = re.compile(r"answer\s+is\s*:?\s*(?:\(([a-e])\)|([a-e])\s*(?=$|[.,;:!?)\n]))", re.IGNORECASE)
_PAREN = re.compile(r"\(([a-e])\)", re.IGNORECASE)
_BARE = re.compile(r"^\s*\(?([a-e])\)?\s*[.]?\s*$", re.IGNORECASE)
_LETTERED = re.compile(r"^\s*\(([a-e])\)\s*(.*?)\s*$", re.IGNORECASE | re.DOTALL)  # "(c) bank"
_AFTER = re.compile(r"answer\s+is\s*:?\s*(.*)", re.IGNORECASE | re.DOTALL)


def extract_letter(text: str) -> str | None:
    """The lowercase choice letter stated in `text`, or None."""
    stated = _STATED.findall(text)
    if stated:
        a, b = stated[-1]
        return (a or b).lower()
    bare = _BARE.match(text)
    if bare:
        return bare.group(1).lower()
    parens = _PAREN.findall(text)
    return parens[-1].lower() if parens else None


def _norm(text: str) -> str:
    return " ".join(text.strip().strip(".!?,;:\"'").split()).lower()


def gold(letter: str, text: str) -> str:
    """The gold answer string: "(c) wooded area"."""
    return f"({letter}) {text}"


def canonical_letter(answer: str) -> str:
    """The letter of "c", "(c)", "c." or "(c) text"; any other answer as normalized text."""
    s = answer.strip().strip(".").strip()
    m = _BARE.match(s) or _LETTERED.match(s)
    return m.group(1).lower() if m else _norm(s)


def _gold_text(answer: str) -> str | None:
    m = _LETTERED.match(answer.strip())
    return _norm(m.group(2)) if m and m.group(2).strip() else None


# Three questions written for this project (not taken from CommonsenseQA).
EXEMPLARS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "Where would you most likely keep milk so that it stays cold?",
        ("cupboard", "refrigerator", "oven", "mailbox", "garden"),
        "Milk has to be kept cold. Of the above choices, only a refrigerator keeps things cold. "
        "So the answer is (b) refrigerator.",
    ),
    (
        "What do people usually do when they are very tired at night?",
        ("run a race", "cook dinner", "paint a fence", "go to sleep", "start a job"),
        "Being very tired at night means a person needs rest. Of the above choices, going to "
        "sleep is how people rest. So the answer is (d) go to sleep.",
    ),
    (
        "If you want to cut a sheet of paper neatly, what tool would you use?",
        ("scissors", "hammer", "spoon", "pillow", "bucket"),
        "Cutting paper neatly needs something with a sharp edge. Of the above choices, only "
        "scissors are made for cutting paper. So the answer is (a) scissors.",
    ),
)


def format_input(question: str, choices: tuple[str, ...]) -> str:
    opts = " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return f"{question}\nAnswer Choices: {opts}"


@dataclass(frozen=True)
class CSQATask(TaskDefaults):
    """Five-way multiple-choice commonsense questions."""

    data_dir: str | None = None
    skip_bad: bool = False
    hf_dataset: str | None = None
    source: str = "auto"

    name: ClassVar[str] = "csqa"
    version: ClassVar[str] = "2"  # 2: gold answer "(c) text" instead of "c"; DSS and hub sources
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)
        hub.check_source(self.name, self.data_dir, self.hf_dataset)
        if self.source not in SOURCES:
            raise unknown("source for task 'csqa'", str(self.source), SOURCES)
        if self.hf_dataset is not None and self.source != "auto":
            raise UserError("task 'csqa': source applies to data_dir files, not to hf_dataset")

    def load(self, split: str) -> list[Example]:
        return files.pick_split(self, split, _load(self))

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise)."""
        return list(_load(self)[1])

    def student_input(self, example: Example) -> str:
        return format_input(example.question, example.choices or ())

    def prompt(self, example: Example) -> str:
        shots = "".join(f"Q: {format_input(q, c)}\nA: {a}\n\n" for q, c, a in EXEMPLARS)
        return shots + f"Q: {self.student_input(example)}\nA:"

    def extract(self, text: str) -> str | None:
        return extract_letter(text)

    def extract_for(self, example: Example, text: str) -> str | None:
        """Like extract(), but a stated choice text ("The answer is wooded area") maps to its
        letter, or stays the text when two choices share it (equivalent() compares texts)."""
        letter = extract_letter(text)
        if letter is not None:
            return letter
        by_text: dict[str, list[str]] = {}
        for i, c in enumerate(example.choices or ()):
            by_text.setdefault(_norm(c), []).append(LETTERS[i])
        after = _AFTER.findall(text)
        for cand in ([after[-1]] if after else []) + [text]:
            letters = by_text.get(_norm(cand))
            if letters:
                return letters[0] if len(letters) == 1 else _norm(cand)
        return None

    def canonical(self, answer: str) -> str:
        return canonical_letter(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        """Letters compare as letters; a choice text (no letter) matches the gold's own text."""
        if pred is None:
            return False
        p = canonical_letter(pred)
        if len(p) == 1 and p in LETTERS:
            return p == canonical_letter(gold)
        return bool(p) and p == _gold_text(gold)


# --- loading: each source maps its row onto _build, which makes every Example ---------------


def _build(raw_id: Any, stem: Any, texts: list[Any], index: int, loc: str, rationale: Any = None, **meta: Any) -> Example:
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise files.RowError(f"{loc}: missing field 'id'")
    if not isinstance(stem, str) or not stem.strip():
        raise files.RowError(f"{loc}: missing question text")
    if len(texts) != len(LETTERS) or not all(isinstance(t, str) and t.strip() for t in texts):
        raise files.RowError(f"{loc}: expected 5 non-empty choice texts, got {texts!r}")
    choices = tuple(t.strip() for t in texts)
    return Example(
        id=f"csqa-{raw_id.strip()}",
        question=stem.strip(),
        answer=gold(LETTERS[index], choices[index]),
        choices=choices,
        rationale=(rationale.strip() or None) if isinstance(rationale, str) else None,
        meta=meta,
    )


def _key_index(key: Any, loc: str) -> int:
    if not isinstance(key, str) or not key.strip():
        raise files.RowError(f"{loc}: unlabeled row (answerKey {key!r})")
    if key.strip().lower() not in LETTERS:
        raise files.RowError(f"{loc}: unknown answerKey {key!r} (expected one of A..E)")
    return LETTERS.index(key.strip().lower())


def _check_labels(labels: list[Any], loc: str) -> None:
    if [lab.strip().lower() if isinstance(lab, str) else lab for lab in labels] != list(LETTERS):
        raise files.RowError(f"{loc}: choice labels {labels!r} are not A..E in order")


def _from_csqa(row: dict[str, Any], loc: str) -> Example:
    """An original CSQA row: {"id", "answerKey", "question": {"stem", "choices": [{"label", "text"}]}}."""
    q = files.require(row, "question", loc, dict)
    raw = files.require(q, "choices", loc, list)
    if not all(isinstance(c, dict) for c in raw):
        raise files.RowError(f"{loc}: bad choices {raw!r}")
    _check_labels([c.get("label") for c in raw], loc)
    index = _key_index(files.require(row, "answerKey", loc), loc)
    return _build(files.require(row, "id", loc, str), files.require(q, "stem", loc, str), [c.get("text") for c in raw], index, loc)


def _from_hub_csqa(row: dict[str, Any], loc: str) -> Example:
    """A tau/commonsense_qa row: {"id", "question", "choices": {"label": [...], "text": [...]}, "answerKey"}."""
    raw = files.require(row, "choices", loc, dict)
    labels, texts = raw.get("label"), raw.get("text")
    if not isinstance(labels, list) or not isinstance(texts, list):
        raise files.RowError(f"{loc}: bad choices {raw!r}")
    _check_labels(labels, loc)
    index = _key_index(row.get("answerKey"), loc)
    return _build(files.require(row, "id", loc, str), files.require(row, "question", loc, str), texts, index, loc)


def _from_cos_e(row: dict[str, Any], loc: str) -> Example:
    """A DSS / CoS-E row: {"id", "question", "choices": [texts], "answer": text, "abstractive_explanation", ...}."""
    texts = files.require(row, "choices", loc, list)
    answer = files.require(row, "answer", loc, str)
    norm = [t.strip() if isinstance(t, str) else t for t in texts]
    letters = [LETTERS[i] for i, t in enumerate(norm) if t == answer.strip() and i < len(LETTERS)]
    if not letters:
        raise files.RowError(f"{loc}: answer {answer!r} is not one of the choices")
    meta = {"extractive_explanation": row.get("extractive_explanation")}
    if len(letters) > 1:  # two choices share the answer text: the letter is ambiguous
        meta["answer_letters"] = "".join(letters)
    return _build(
        files.require(row, "id", loc, str),
        files.require(row, "question", loc, str),
        texts,
        LETTERS.index(letters[0]),
        loc,
        rationale=row.get("abstractive_explanation"),
        **meta,
    )


def _examples(rows: list[tuple[dict[str, Any], str]], convert: Any, task: CSQATask, seen: set[str], skipped: list[str]) -> list[Example]:
    """convert(row, loc) for each (row, loc); ids must be unique across the whole task."""

    def one(r: tuple[dict[str, Any], str]) -> Example:
        ex = convert(*r)
        if ex.id in seen:
            raise files.RowError(f"{r[1]}: duplicate id {ex.id!r}")
        seen.add(ex.id)
        return ex

    return files.convert_rows(rows, one, task.skip_bad, skipped)


def _file_rows(folder: Path, name: str, task: CSQATask, skipped: list[str]) -> list[tuple[dict[str, Any], str]]:
    path = files.require_file(folder, name, task.name)
    rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)  # the DSS .json files are JSON Lines
    skipped.extend(bad)
    return [(r, files.where(path, r["_line"])) for r in rows]


def _hub_rows(task: CSQATask, split: str, config: str | None) -> list[tuple[dict[str, Any], str]]:
    ds = str(task.hf_dataset)
    rows = hub.load_rows(ds, split, task=task.name, config=config)
    return [(r, hub.where(ds, config, split, r["_line"])) for r in rows]


def is_cos_e(hf_dataset: str) -> bool:
    """Whether a hub id / folder names CoS-E ("cos_e", "Salesforce/cos_e", ".../cos_e")."""
    return Path(hf_dataset.rstrip("/")).name.lower().replace("-", "_") == "cos_e"


@functools.lru_cache(maxsize=4)
def _load(task: CSQATask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    skipped: list[str] = []
    seen: set[str] = set()
    if task.hf_dataset is not None:
        cos_e = is_cos_e(task.hf_dataset)
        config = COS_E_CONFIG if cos_e else None
        convert = _from_cos_e if cos_e else _from_hub_csqa
        train_rows, test_rows = (_hub_rows(task, s, config) for s in ("train", "validation"))
    else:
        expected = f"{TRAIN_FILE} and {DEV_FILE}, or {DSS_TRAIN} and {DSS_TEST} (DSS export)"
        source, folder = files.find_source(task.data_dir, task.name, expected, LAYOUTS, task.source)
        names = (TRAIN_FILE, DEV_FILE) if source == "csqa" else (DSS_TRAIN, DSS_TEST)
        convert = _from_csqa if source == "csqa" else _from_cos_e
        train_rows, test_rows = (_file_rows(folder, n, task, skipped) for n in names)
    # Sorted by id: the sources list the same questions in different orders (CoS-E has its own).
    train_all = sorted(_examples(train_rows, convert, task, seen, skipped), key=lambda e: e.id)
    test = sorted(_examples(test_rows, convert, task, seen, skipped), key=lambda e: e.id)
    valid_ids = files.hash_split((e.id for e in train_all), VALID_SHARE, salt="csqa-valid")
    splits = {
        "train": tuple(e for e in train_all if e.id not in valid_ids),
        "valid": tuple(e for e in train_all if e.id in valid_ids),
        "test": tuple(test),
    }
    return splits, tuple(skipped)
