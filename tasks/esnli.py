"""e-SNLI (Camburu et al., 2018): SNLI pairs with human explanations, from three sources.

- source="dss" (data_dir): the Distilling-step-by-step export esnli_{train,valid,test}.json,
  JSON Lines {"premise", "hypothesis", "label": 0|1|2, "explanation_1", "explanation_2",
  "explanation_3"} (e.g. shared/data/dss/datasets/esnli). Untokenized, original casing.
- source="text" (data_dir): the e-SNLI repo's line-aligned files
  {s1,s2,labels,preproc1_expl_1,preproc1_expl_2,preproc1_expl_3}.{train,dev,test} (e.g.
  shared/data/esnli/eSNLI): tokenized text ("a church ."), lower-cased explanations, label
  words. Line n of every file of a split is example n; files with different line counts
  are a UserError naming each file and its count.
- source="auto" (default): whichever files data_dir holds. data_dir may also be a data root:
  dss/datasets/esnli is tried first, then esnli/eSNLI (or eSNLI under data_dir).
- hf_dataset="esnli" (or a local folder in its layout): splits train / validation / test;
  the DSS export is this dataset written with to_json, so both give the same Examples.

Splits: valid = e-SNLI dev (9,842), test = e-SNLI test (9,824). train (549,367) only from the
hub or when its files are in data_dir; neither shared source has it, and then load("train")
is a UserError rather than a silently empty split. Rows have no id, so ids are
"esnli-<split>-<0-based row index>" (esnli-test-0) in every source. Gold answers are the label
words entailment / neutral / contradiction (0 / 1 / 2); any other label is a row error.
Rationale: explanation_1 when non-empty; all three are in meta["explanations"].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError
from harness.types import Example
from tasks import files, nli
from tasks.base import SPLITS

# source="text": our split -> file suffix, and file stem -> DSS field name.
TEXT_SPLITS = {"train": "train", "valid": "dev", "test": "test"}
TEXT_FILES = {
    "s1": "premise",
    "s2": "hypothesis",
    "labels": "label",
    "preproc1_expl_1": "explanation_1",
    "preproc1_expl_2": "explanation_2",
    "preproc1_expl_3": "explanation_3",
}


def _example(row: dict[str, Any], loc: str, split: str, index: int) -> Example:
    premise = files.require(row, "premise", loc, str)
    hypothesis = files.require(row, "hypothesis", loc, str)
    label = nli.label_word(files.require(row, "label", loc), loc)
    expl = [row.get(f"explanation_{i}") for i in (1, 2, 3)]
    expl = [e.strip() if isinstance(e, str) and e.strip() else None for e in expl]
    return Example(
        id=f"esnli-{split}-{index}",
        question=nli.question(premise, hypothesis),
        answer=label,
        rationale=expl[0],
        meta={"explanations": expl},
    )


def _lines(path: Path) -> list[str]:
    """The records of a line-aligned text file: one per line; a final newline is optional
    (the preproc1_expl_* files have none). Splits on "\\n" only, never on other line breaks."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _read_text(task: Any, folder: Path, skipped: list[str]) -> dict[str, list[nli.Raw] | None]:
    out: dict[str, list[nli.Raw] | None] = {}
    for split in SPLITS:
        suffix = TEXT_SPLITS[split]
        if split == "train" and not (folder / f"s1.{suffix}").is_file():
            out[split] = None
            continue
        paths = {stem: files.require_file(folder, f"{stem}.{suffix}", task.name) for stem in TEXT_FILES}
        columns = {stem: _lines(path) for stem, path in paths.items()}
        counts = {len(c) for c in columns.values()}
        if len(counts) != 1:
            sizes = ", ".join(f"{paths[s].name} {len(c):,}" for s, c in columns.items())
            raise UserError(
                f"task {task.name!r}: the e-SNLI {suffix} files in {str(folder)!r} are not "
                f"line-aligned (lines: {sizes})"
            )
        labels = paths["labels"]
        out[split] = [
            (
                {TEXT_FILES[stem]: columns[stem][i] for stem in TEXT_FILES},
                files.where(labels, i + 1),  # only the label can be bad in a text row
                i,
            )
            for i in range(counts.pop())
        ]
    return out


TEXT = nli.FileSource(
    name="text",
    subdirs=("", "eSNLI", "esnli/eSNLI"),
    marker="s1.dev",
    expected="s1/s2/labels/preproc1_expl_{1,2,3}.{dev,test} (e-SNLI repo files)",
    train_files="s1/s2/labels/preproc1_expl_{1,2,3}.train are",
    read=_read_text,
)

DATA = nli.NLIData(
    sources=(nli.dss_source("esnli", ("dss/datasets/esnli",)), TEXT),
    hub_splits=(("train", "train"), ("valid", "validation"), ("test", "test")),
    convert=_example,
)


@dataclass(frozen=True)
class ESNLITask(nli.NLITask):
    """SNLI premise/hypothesis pairs with human-written explanations."""

    data_dir: str | None = None
    skip_bad: bool = False
    hf_dataset: str | None = None
    source: str = "auto"

    name: ClassVar[str] = "esnli"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"
    data: ClassVar[nli.NLIData] = DATA
