"""Shared pieces of the NLI tasks (anli, esnli): label words, answer extraction, DSS file loading.

Gold answers are the label words "entailment", "neutral", "contradiction". The DSS exports
store labels as ints in the HF convention 0 = entailment, 1 = neutral, 2 = contradiction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import files
from tasks.base import SPLITS

LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")  # index = HF int label

_WORD = r"(entailment|neutral|contradiction)"
_STATED = re.compile(r"answer(?:\s+is)?\s*:?\s*\(?" + _WORD + r"\b", re.IGNORECASE)
_ANY = re.compile(r"\b" + _WORD + r"\b", re.IGNORECASE)


def label_word(value: Any, loc: str) -> str:
    """The label word of a raw label (0/1/2 or a label word); RowError naming unknown labels."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(LABELS):
        return LABELS[value]
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return value.strip().lower()
    raise files.RowError(f"{loc}: unknown label {value!r} (expected 0/1/2 or one of {', '.join(LABELS)})")


def extract(text: str) -> str | None:
    """The label word after the last "The answer is" / "Answer:", else the last label word."""
    stated = _STATED.findall(text)
    if stated:
        return stated[-1].lower()
    words = _ANY.findall(text)
    return words[-1].lower() if words else None


def canonical(answer: str) -> str:
    return answer.strip().strip(".!,;:()\"'").strip().lower()


def equivalent(pred: str | None, gold: str) -> bool:
    return pred is not None and canonical(pred) in LABELS and canonical(pred) == canonical(gold)


def student_input(example: Example) -> str:
    return example.question


def question(premise: str, hypothesis: str) -> str:
    return f"Premise: {premise.strip()}\nHypothesis: {hypothesis.strip()}"


# Three short pairs written for this project (not from any benchmark).
EXEMPLARS: tuple[tuple[str, str, str], ...] = (
    (
        "A man in a red jacket is riding a bicycle down a busy street.",
        "A person is outdoors on a bike.",
        "A man riding a bicycle down a street is a person outdoors on a bike. So the answer is entailment.",
    ),
    (
        "Two children are building a sandcastle on the beach.",
        "The children are on summer vacation with their parents.",
        "Building a sandcastle on a beach does not tell us whether it is summer vacation or whether "
        "their parents are there. So the answer is neutral.",
    ),
    (
        "The bakery on Main Street closes at 6 pm every day.",
        "The bakery on Main Street is open all night on Fridays.",
        "A bakery that closes at 6 pm every day cannot be open all night on Fridays. So the answer is "
        "contradiction.",
    ),
)


def few_shot_prompt(example: Example) -> str:
    """3-shot chain-of-thought prompt: "Premise: ...\\nHypothesis: ...\\nA: ... So the answer is X."."""
    shots = "".join(f"{question(p, h)}\nA: {a}\n\n" for p, h, a in EXEMPLARS)
    return shots + f"{example.question}\nA:"


class NLIAnswers:
    """extract/canonical/equivalent/student_input/prompt shared by the NLI tasks."""

    def student_input(self, example: Example) -> str:
        return student_input(example)

    def prompt(self, example: Example) -> str:
        return few_shot_prompt(example)

    def extract(self, text: str) -> str | None:
        return extract(text)

    def canonical(self, answer: str) -> str:
        return canonical(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        return equivalent(pred, gold)


def load_dss_splits(
    task: Any,
    prefix: str,
    convert: Callable[[dict[str, Any], str, str, int], Example],
) -> tuple[dict[str, tuple[Example, ...] | None], tuple[str, ...]]:
    """Splits from <data_dir>/<prefix>_{train,valid,test}.json (JSON Lines).

    valid and test must exist; train is None when <prefix>_train.json is absent (the shared
    DSS copy lacks it). convert(row, loc, split, index) builds one Example; ids must be unique.
    """
    folder = files.resolve_data_dir(
        task.data_dir, task.name, f"{prefix}_valid.json and {prefix}_test.json (DSS export)"
    )
    skipped: list[str] = []
    seen: set[str] = set()
    out: dict[str, tuple[Example, ...] | None] = {}
    for split in SPLITS:
        path = folder / f"{prefix}_{split}.json"
        if split == "train" and not path.is_file():
            out[split] = None
            continue
        path = files.require_file(folder, path.name, task.name)
        rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)
        skipped.extend(bad)

        def one(row: dict[str, Any], path: Path = path, split: str = split) -> Example:
            loc = files.where(path, row["_line"])
            ex = convert(row, loc, split, row["_line"] - 1)
            if ex.id in seen:
                raise files.RowError(f"{loc}: duplicate id {ex.id!r}")
            seen.add(ex.id)
            return ex

        out[split] = tuple(files.convert_rows(rows, one, task.skip_bad, skipped))
    return out, tuple(skipped)


def pick(task: Any, split: str, loaded: Callable[[], Any], prefix: str) -> list[Example]:
    """One split of a DSS-backed NLI task; a missing train file is a one-line UserError."""
    if split not in SPLITS:
        raise unknown("split", split, SPLITS)
    splits, skipped = loaded()
    files.report_skipped(task.name, list(skipped))
    if splits[split] is None:
        raise UserError(
            f"task {task.name!r}: no train split: {prefix}_train.json is not in data_dir "
            f"{task.data_dir!r} (the shared DSS copy lacks it; only valid and test are available)"
        )
    return list(splits[split])
