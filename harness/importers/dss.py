"""Import Distilling-step-by-step's PaLM-540B chains (Hsieh et al., 2023) as Chain records.

The DSS release (see shared/data/dss/SOURCE.md) has, per dataset, the inputs
`<dss_task>/<dss_task>_{split}.json` (JSON Lines) and the raw PaLM completions
`<dss_task>/llm/{split}_CoT_{i}.json` (JSON arrays of strings), aligned by position: chunk i
holds rows i*B .. (i+1)*B-1 (B = 500 svamp, 1000 cqa, 5000 anli1, 5500 esnli).

Completions run on into the next few-shot exemplar; each is cut with DSS's own rule:
- svamp: the text before "Q:", split on "The answer is"; the label is the parenthesised
  expression after it, e.g. "(10 * 45)". We evaluate it exactly (Fractions, + - * / and
  parentheses only; never eval) and compare the value with the gold number.
- cqa: the text before "Q:", split on "So the answer is"; the label is the text after the
  "(x)" marker (one trailing "." dropped), compared with the gold choice TEXT.
- anli1: the text before "Premise:", split on "So the answer is"; the label is what follows,
  its last character (the ".") dropped.
- esnli: the rationale is the text before "Answer:"; the label is the text after "Answer: "
  up to "Premise".
A split into other than exactly two parts, or no label, means unparsable: the chain is kept
with answer=None and correct=False (counted in n_rows, never positive).

Chains: `rationale` = DSS's rationale (the text before its answer split), `statement` = an
answer statement in the task's own form ("The answer is 450." for svamp, "The answer is (10 *
45)." for svamp with label: equation, "So the answer is (c) wooded area." for csqa, "So the
answer is neutral." for the NLI tasks), text = the two joined, so a student trained on the text
says the answer the task extracts, and DSS's explain task trains on the rationale alone, as the
DSS code does. An unparsable completion keeps its cut text as the rationale and no statement.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError, unknown
from harness.types import Chain, Example
from tasks import checking, csqa, files, nli
from tasks.base import SPLITS
from tasks.checking import evaluate_expression

DSS_SOURCE = "teacher:palm-540b (dss)"


@dataclass(frozen=True)
class _Spec:
    dss_task: str  # folder name in the DSS release
    batch: int  # completions per llm chunk
    splits: tuple[str, ...]  # DSS splits with completions


DSS_TASKS: dict[str, _Spec] = {
    "svamp": _Spec("svamp", 500, ("train", "test")),
    "csqa": _Spec("cqa", 1000, ("train", "test")),
    "anli": _Spec("anli1", 5000, ("train", "valid", "test")),
    "esnli": _Spec("esnli", 5500, ("train", "valid", "test")),
}


@dataclass
class ImportResult:
    """The chains of one DSS split and how PaLM's labels agree with the gold answers."""

    task: str
    split: str
    chains: list[Chain]
    n_rows: int  # rows of the split (= completions)
    n_parsed: int  # completions from which the DSS rule reads a label
    n_answered: int  # chains with an answer in the task's form (answer is not None)
    n_agree: int  # chains whose answer matches the gold (correct=True)
    n_task_agree: int = 0  # chains the task's own equivalence calls right (csqa: case-blind)
    n_unmatched: int = 0  # rows whose example is not among the task's examples (no chain)
    notes: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.n_agree / self.n_rows if self.n_rows else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "split": self.split,
            "source": DSS_SOURCE,
            "chains": len(self.chains),
            "rows": self.n_rows,
            "parsed": self.n_parsed,
            "answered": self.n_answered,
            "agree": self.n_agree,
            "agreement": round(self.agreement, 4),
            "task_agree": self.n_task_agree,
            "unmatched": self.n_unmatched,
            "notes": list(self.notes),
        }


# --- DSS's cutting rules -----------------------------------------------------------------------


def _two(text: str, sep: str) -> tuple[str, str] | None:
    parts = text.split(sep)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def parse_svamp(output: str) -> tuple[str, str | None]:
    cut = output.split("Q:")[0].rstrip()
    pair = _two(cut, "The answer is")
    if pair is None:
        return cut.strip(), None
    m = re.search(r"\(.*\)", pair[1])
    return pair[0].strip(), (m.group(0) if m else None)


def parse_cqa(output: str) -> tuple[str, str | None]:
    cut = output.split("Q:")[0].rstrip()
    pair = _two(cut, "So the answer is")
    if pair is None:
        return cut.strip(), None
    pieces = re.split(r"\(.\)", pair[1])
    if len(pieces) < 2 or not pieces[1].strip():
        return pair[0].strip(), None
    label = pieces[1].strip()
    return pair[0].strip(), label.removesuffix(".")


def parse_anli(output: str) -> tuple[str, str | None]:
    cut = output.split("Premise:")[0].rstrip()
    pair = _two(cut, "So the answer is")
    if pair is None:
        return cut.strip(), None
    label = pair[1].lstrip()[:-1]  # DSS drops the last character (the ".")
    return pair[0].strip(), (label or None)


def parse_esnli(output: str) -> tuple[str, str | None]:
    rationale = output.split("Answer:")[0].rstrip()
    parts = output.split("Answer: ")
    if len(parts) < 2:
        return rationale.strip(), None
    label = parts[1].split("Premise")[0].rstrip()
    return rationale.strip(), (label or None)


PARSERS = {"svamp": parse_svamp, "csqa": parse_cqa, "anli": parse_anli, "esnli": parse_esnli}


# --- labels as answers in the task's form --------------------------------------------------


def _answer(task_name: str, label: str, ex: Example, task: Any) -> str | None:
    """The task-form answer of a DSS label, or None when it cannot be read as one."""
    if task_name == "svamp":
        value = evaluate_expression(label)
        if value is None:
            return None
        # an equation-labelled svamp (label: equation, the DSS/QCRD form) states the expression
        return label.strip() if task.options().get("label") == "equation" else checking.format_number(value)
    if task_name == "csqa":
        choices = [c.strip() for c in ex.choices or ()]
        hits = [i for i, c in enumerate(choices) if c == label.strip()]
        if len(hits) == 1:
            return csqa.gold(csqa.LETTERS[hits[0]], choices[hits[0]])
        return label.strip()  # no choice (or two sharing it): the text, compared as text
    word = label.strip().lower()
    return word if word in nli.LABELS else None


def _dss_correct(task_name: str, label: str | None, ex: Example) -> bool:
    """csqa by the DSS rule: the label must be exactly the gold choice's text ("Michigan" is
    not "michigan"); the task's own equivalence is case-blind (ImportResult.n_task_agree)."""
    m = re.match(r"^\s*\(([a-e])\)\s*(.*?)\s*$", ex.answer, re.IGNORECASE | re.DOTALL)
    return label is not None and m is not None and label.strip() == m.group(2)


def _statement(task_name: str, answer: str) -> str:
    return f"The answer is {answer}." if task_name == "svamp" else f"So the answer is {answer}."


# --- reading the release ---------------------------------------------------------------------


def _read_json_array(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise UserError(f"{path}: expected a JSON array of completion strings")
    return data


def read_completions(llm_dir: Path, split: str, batch: int) -> list[tuple[str, int, int]]:
    """(completion, chunk, index in chunk) of {split}_CoT_0.json, _1, ... in order; every chunk
    but the last must hold exactly `batch` completions (they are aligned by position)."""
    out: list[tuple[str, int, int]] = []
    i = 0
    while (llm_dir / f"{split}_CoT_{i}.json").is_file():
        chunk = _read_json_array(llm_dir / f"{split}_CoT_{i}.json")
        if out and len(out) != i * batch:
            raise UserError(
                f"{llm_dir}: {split}_CoT_{i - 1}.json holds {len(out) - (i - 1) * batch} "
                f"completions, expected {batch} (chunks are aligned by position)"
            )
        out += [(s, i, j) for j, s in enumerate(chunk)]
        i += 1
    return out


def _all_examples(task: Any) -> dict[str, Example]:
    by_id: dict[str, Example] = {}
    for split in SPLITS:
        try:
            by_id.update((e.id, e) for e in task.load(split))
        except UserError:
            continue  # a split the task's source lacks (e.g. anli train)
    return by_id


def _example_id(
    task_name: str, row: dict[str, Any], split: str, index: int, by_input: dict[str, Example]
) -> str | None:
    if task_name == "svamp":
        ex = by_input.get(row.get("input"))  # type: ignore[arg-type]
        return None if ex is None else ex.id
    if task_name == "csqa":
        return f"csqa-{row['id']}" if isinstance(row.get("id"), str) else None
    if task_name == "anli":
        return f"anli1-{row['uid']}" if isinstance(row.get("uid"), str) else None
    return f"esnli-{split}-{index}"


def import_dss(task_name: str, dss_root: Path, split: str, task: Any = None) -> ImportResult:
    """The PaLM chains of one DSS split, one per row, mapped onto `task`'s examples.

    task_name: svamp, csqa, anli or esnli; dss_root: the folder holding `datasets/` (e.g.
    shared/data/dss); split: a DSS split (svamp/csqa: train, test; anli/esnli: train, valid,
    test). DSS's svamp and csqa train split covers our train and valid splits. task: the task
    whose examples the chains point at (default: get_task(task_name, data_dir=dss_root.parent)).
    """
    if task_name not in DSS_TASKS:
        raise unknown("DSS task", task_name, DSS_TASKS)
    spec = DSS_TASKS[task_name]
    if split not in spec.splits:
        raise UserError(f"DSS has no {split!r} split for {task_name} (it has {', '.join(spec.splits)})")
    folder = Path(dss_root).expanduser() / "datasets" / spec.dss_task
    if not folder.is_dir():
        raise UserError(f"DSS import: no folder {folder} (dss_root must hold datasets/{spec.dss_task}/)")
    llm = folder / "llm"
    completions = read_completions(llm, split, spec.batch)
    inputs = folder / f"{spec.dss_task}_{split}.json"
    if not inputs.is_file():
        have = (
            f"{len(completions):,} PaLM completions in {llm}/{split}_CoT_*.json"
            if completions
            else "no completions either"
        )
        raise UserError(
            f"DSS import: {inputs} is missing, so the {split} chains of {task_name} cannot be paired "
            f"with their inputs ({have}; the file is absent from every known copy of the release)"
        )
    if not completions:
        raise UserError(f"DSS import: no {split}_CoT_*.json completions in {llm}")
    rows, _ = files.read_jsonl(inputs)
    if len(rows) != len(completions):
        raise UserError(
            f"DSS import: {inputs.name} has {len(rows):,} rows but {llm} has {len(completions):,} "
            f"{split} completions; they must align by position"
        )
    if task is None:
        from tasks import get_task

        task = get_task(task_name, data_dir=str(Path(dss_root).expanduser().parent))
    examples = _all_examples(task)
    by_input = {e.meta["dss_input"]: e for e in examples.values() if "dss_input" in e.meta}
    parse = PARSERS[task_name]
    chains: list[Chain] = []
    n_parsed = n_answered = n_agree = n_task_agree = 0
    unmatched: list[str] = []
    for index, (row, (raw, chunk, j)) in enumerate(zip(rows, completions, strict=True)):
        ex_id = _example_id(task_name, row, split, index, by_input)
        ex = examples.get(ex_id) if ex_id is not None else None
        if ex is None:
            unmatched.append(f"{files.where(inputs, row['_line'])}: no example {ex_id or '(input not found)'}")
            continue
        rationale, label = parse(raw)
        answer = None
        if label is not None:
            n_parsed += 1
            answer = _answer(task_name, label, ex, task)
        statement = ""
        if answer is None:
            correct = False
        else:
            n_answered += 1
            statement = _statement(task_name, answer)
            task_correct = bool(task.equivalent(answer, ex.answer))
            correct = _dss_correct(task_name, label, ex) if task_name == "csqa" else task_correct
            n_task_agree += task_correct
        n_agree += correct
        chains.append(
            Chain(
                example_id=ex.id,
                source=DSS_SOURCE,
                text=f"{rationale} {statement}".strip(),
                answer=answer,
                correct=correct,
                n_tokens=len(f"{rationale} {statement}".split()),
                rationale=rationale,
                statement=statement,
                meta={"raw": raw, "chunk": chunk, "index": j, "label": label, "dss_split": split, "sample": 0},
            )
        )
    notes = []
    if unmatched:
        notes.append(f"{len(unmatched)} rows match no {task_name} example (no chain), e.g. {unmatched[0]}")
    if n_parsed < len(rows):
        notes.append(f"{len(rows) - n_parsed} completions have no label by the DSS rule (answer None)")
    if n_answered < n_parsed:
        notes.append(f"{n_parsed - n_answered} labels are not a {task_name} answer (answer None)")
    return ImportResult(
        task=task_name,
        split=split,
        chains=chains,
        n_rows=len(rows),
        n_parsed=n_parsed,
        n_answered=n_answered,
        n_agree=n_agree,
        n_task_agree=n_task_agree,
        n_unmatched=len(unmatched),
        notes=notes,
    )
