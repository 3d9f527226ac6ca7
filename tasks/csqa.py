"""CommonsenseQA v1.11 (Talmor et al., 2019) from the original CSQA files in `data_dir`:
train_rand_split.jsonl (9,741) and dev_rand_split.jsonl (1,221).

Splits: test = the DEV set (1,221), because the official test file has no public labels;
DSS and the papers reusing its data evaluate on CSQA dev too. train_rand_split.jsonl is split
into train and valid by files.hash_split on the id, valid getting ~10%.
test_rand_split_no_answers.jsonl is not read.

Ids are "csqa-<id>". choices = the 5 choice texts in label order A..E. The gold answer is
the choice LETTER lowercased ("c"). extract(text) returns a letter only ("(c)", "The answer
is (c) text", "The answer is c"); extract_for(example, text) also maps a stated choice
text to its letter. No gold rationale (CSQA has none).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.types import Example
from tasks import files

VALID_SHARE = 0.10  # share of train_rand_split.jsonl carved out as valid
LETTERS = "abcde"
TRAIN_FILE, DEV_FILE = "train_rand_split.jsonl", "dev_rand_split.jsonl"

# "answer is (c)", "answer is (c) text", "answer is c", "answer is c." -- not "answer is a bird".
_STATED = re.compile(r"answer\s+is\s*:?\s*(?:\(([a-e])\)|([a-e])\s*(?=$|[.,;:!?)\n]))", re.IGNORECASE)
_PAREN = re.compile(r"\(([a-e])\)", re.IGNORECASE)
_BARE = re.compile(r"^\s*\(?([a-e])\)?\s*[.]?\s*$", re.IGNORECASE)
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


def canonical_letter(answer: str) -> str:
    s = answer.strip().strip(".").strip().lower()
    m = _BARE.match(s)
    return m.group(1).lower() if m else s


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
class CSQATask:
    """Five-way multiple-choice commonsense questions."""

    data_dir: str | None = None
    skip_bad: bool = False

    name: ClassVar[str] = "csqa"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)

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
        """Like extract(), but a stated choice text (e.g. "The answer is wooded area") maps to its letter."""
        letter = extract_letter(text)
        if letter is not None:
            return letter
        by_text = {_norm(c): LETTERS[i] for i, c in enumerate(example.choices or ())}
        after = _AFTER.findall(text)
        for cand in ([after[-1]] if after else []) + [text]:
            if _norm(cand) in by_text:
                return by_text[_norm(cand)]
        return None

    def canonical(self, answer: str) -> str:
        return canonical_letter(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        if pred is None:
            return False
        p = canonical_letter(pred)
        return len(p) == 1 and p in LETTERS and p == canonical_letter(gold)


def _example(row: dict[str, Any], loc: str, split_file: str) -> Example:
    raw_id = files.require(row, "id", loc, str)
    q = files.require(row, "question", loc, dict)
    stem = files.require(q, "stem", loc, str)
    raw_choices = files.require(q, "choices", loc, list)
    labels, texts = [], []
    for c in raw_choices:
        if not isinstance(c, dict) or not isinstance(c.get("label"), str) or not isinstance(c.get("text"), str):
            raise files.RowError(f"{loc}: bad choice {c!r}")
        labels.append(c["label"].strip().lower())
        texts.append(c["text"].strip())
    if labels != list(LETTERS):
        raise files.RowError(f"{loc}: choice labels {labels!r} are not A..E in order")
    key = files.require(row, "answerKey", loc, str)
    if key.strip().lower() not in LETTERS:
        raise files.RowError(f"{loc}: unknown answerKey {key!r} (expected one of A..E)")
    return Example(
        id=f"csqa-{raw_id}",
        question=stem.strip(),
        answer=key.strip().lower(),
        choices=tuple(texts),
        meta={"file": split_file, "line": row["_line"], "concept": q.get("question_concept")},
    )


def _read(folder: Any, name: str, task: CSQATask, skipped: list[str], seen: set[str]) -> list[Example]:
    path = files.require_file(folder, name, task.name)
    rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)
    skipped.extend(bad)

    def one(row: dict[str, Any]) -> Example:
        loc = files.where(path, row["_line"])
        ex = _example(row, loc, name)
        if ex.id in seen:
            raise files.RowError(f"{loc}: duplicate id {ex.id!r}")
        seen.add(ex.id)
        return ex

    return files.convert_rows(rows, one, task.skip_bad, skipped)


@functools.lru_cache(maxsize=4)
def _load(task: CSQATask) -> tuple[dict[str, tuple[Example, ...]], tuple[str, ...]]:
    folder = files.resolve_data_dir(task.data_dir, task.name, f"{TRAIN_FILE} and {DEV_FILE}")
    skipped: list[str] = []
    seen: set[str] = set()
    train_all = _read(folder, TRAIN_FILE, task, skipped, seen)
    test = _read(folder, DEV_FILE, task, skipped, seen)
    valid_ids = files.hash_split((e.id for e in train_all), VALID_SHARE, salt="csqa-valid")
    splits = {
        "train": tuple(e for e in train_all if e.id not in valid_ids),
        "valid": tuple(e for e in train_all if e.id in valid_ids),
        "test": tuple(test),
    }
    return splits, tuple(skipped)
