"""What the NLI tasks (anli, esnli) share: label words, answer checking, prompts and loading.

Gold answers are the label words "entailment", "neutral", "contradiction". The DSS exports
and the Hugging Face datasets store labels as ints, 0 = entailment, 1 = neutral,
2 = contradiction; -1 (an unlabeled hub row) and anything else is a row error.

A task is a frozen dataclass with the options data_dir / skip_bad / hf_dataset (e-SNLI also
`source`) that mixes in NLITask and names its dataset in a `data: ClassVar[NLIData]`. Every
source (DSS JSON Lines, e-SNLI's text files, a Hugging Face dataset) yields raw rows with the
DSS field names, and one converter per dataset (NLIData.convert) turns each into an Example,
so all sources give the same Examples for the same rows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import files, hub
from tasks.base import SPLITS, TaskDefaults

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
    if value == -1 and not isinstance(value, bool):
        raise files.RowError(f"{loc}: unlabeled row (label -1)")
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


# --- loading ------------------------------------------------------------------------------

# One raw row of a split: (row with DSS field names, its location for messages, 0-based index).
Raw = tuple[dict[str, Any], str, int]
# A file source's reader: (task, folder, skipped) -> {split: raw rows, or None when absent}.
Reader = Callable[[Any, Path, list[str]], dict[str, list[Raw] | None]]


@dataclass(frozen=True)
class FileSource:
    """One layout of a dataset's files: found in data_dir/<subdir> for a subdir holding `marker`."""

    name: str
    subdirs: tuple[str, ...]
    marker: str
    expected: str  # what the folder holds, for messages
    train_files: str  # the train files, named when they are absent
    read: Reader


@dataclass(frozen=True)
class NLIData:
    """Where an NLI dataset's rows come from, and the one converter they all go through."""

    sources: tuple[FileSource, ...]  # file sources, the first is the default
    hub_splits: tuple[tuple[str, str], ...]  # (our split, Hugging Face split)
    convert: Callable[[dict[str, Any], str, str, int], Example]  # (row, loc, split, index)


class NLITask(TaskDefaults):
    """Mixed into the NLI task dataclasses: options check, loading, prompts and answer checking."""

    data: ClassVar[NLIData]
    name: ClassVar[str]

    def __post_init__(self) -> None:
        check_options(self)

    def load(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        splits, skipped, missing = load_all(self)
        files.report_skipped(self.name, list(skipped))
        if splits[split] is None:
            raise UserError(f"task {self.name!r}: no {split} split: {missing}")
        return list(splits[split])

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise)."""
        return list(load_all(self)[1])

    def student_input(self, example: Example) -> str:
        return example.question

    def prompt(self, example: Example) -> str:
        return few_shot_prompt(example)

    def extract(self, text: str) -> str | None:
        return extract(text)

    def canonical(self, answer: str) -> str:
        return canonical(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        return equivalent(pred, gold)


def check_options(task: Any) -> None:
    files.check_options(task.name, task.data_dir, task.skip_bad)
    hub.check_source(task.name, task.data_dir, task.hf_dataset)
    names = ("auto",) + tuple(s.name for s in task.data.sources)
    source = getattr(task, "source", "auto")
    if source not in names:
        raise unknown(f"source for task {task.name!r}", str(source), names)
    if task.hf_dataset is not None and source != "auto":
        raise UserError(f"task {task.name!r}: source applies to data_dir files, not to hf_dataset")


@functools.lru_cache(maxsize=8)
def load_all(task: Any) -> tuple[dict[str, tuple[Example, ...] | None], tuple[str, ...], str]:
    """(splits, skipped messages, why train is absent) of a task; a split is None when absent."""
    skipped: list[str] = []
    if task.hf_dataset is not None:
        raw: dict[str, list[Raw] | None] = {s: None for s in SPLITS}
        for split, hub_split in task.data.hub_splits:
            rows = hub.load_rows(task.hf_dataset, hub_split, task=task.name)
            raw[split] = [(r, hub.where(task.hf_dataset, None, hub_split, r["_line"]), r["_line"]) for r in rows]
        missing = f"Hugging Face dataset {task.hf_dataset!r} has no split for it"
    else:
        layouts = [(s.name, sub, s.marker) for s in task.data.sources for sub in s.subdirs]
        layouts.sort(key=lambda lay: bool(lay[1]))  # data_dir itself before a root's subfolders
        expected = " or ".join(s.expected for s in task.data.sources)
        name, folder = files.find_source(task.data_dir, task.name, expected, layouts, getattr(task, "source", "auto"))
        src = next(s for s in task.data.sources if s.name == name)
        raw = src.read(task, folder, skipped)
        missing = (
            f"{src.train_files} not in {str(folder)!r} ({src.name} source; the shared copy has "
            "only valid and test)"
        )
    seen: set[str] = set()
    out: dict[str, tuple[Example, ...] | None] = {}
    for split in SPLITS:
        if raw.get(split) is None:
            out[split] = None
            continue

        def one(r: Raw, split: str = split) -> Example:
            row, loc, index = r
            ex = task.data.convert(row, loc, split, index)
            if ex.id in seen:  # ids must be stable and unique: a repeated raw id is a bad row
                raise files.RowError(f"{loc}: duplicate id {ex.id!r}")
            seen.add(ex.id)
            return ex

        out[split] = tuple(files.convert_rows(raw[split], one, task.skip_bad, skipped))
    return out, tuple(skipped), missing


def dss_reader(prefix: str) -> Reader:
    """Reader of a DSS export: <prefix>_{train,valid,test}.json, JSON Lines with HF field names.

    valid and test must exist; train is absent (None) when <prefix>_train.json is.
    """

    def read(task: Any, folder: Path, skipped: list[str]) -> dict[str, list[Raw] | None]:
        out: dict[str, list[Raw] | None] = {}
        for split in SPLITS:
            name = f"{prefix}_{split}.json"
            if split == "train" and not (folder / name).is_file():
                out[split] = None
                continue
            path = files.require_file(folder, name, task.name)
            rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)  # JSON Lines despite .json
            skipped.extend(bad)
            out[split] = [(r, files.where(path, r["_line"]), r["_line"] - 1) for r in rows]
        return out

    return read


def dss_source(prefix: str, subdirs: tuple[str, ...]) -> FileSource:
    return FileSource(
        name="dss",
        subdirs=("",) + subdirs,
        marker=f"{prefix}_valid.json",
        expected=f"{prefix}_valid.json and {prefix}_test.json (DSS export)",
        train_files=f"{prefix}_train.json is",
        read=dss_reader(prefix),
    )
