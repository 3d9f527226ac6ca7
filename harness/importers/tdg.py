r"""Import TDG's GPT-3.5-turbo chains on the MATH train problems (Li et al., AAAI 2024).

TDG's `GPT3.5-turbo-MATH/train_gpt3.5_<subject>_8/<n>.jsonl` (see shared/data/tdg/SOURCE.md)
holds, per MATH train problem, the reference solution and 8 sampled teacher solutions
("generated_answer"). The problems are the `math` task's train/valid examples (the task reads
the same files, so each record is matched to its example by file and line); the 2 problems
the task drops as repeats (see tasks/math.py) are counted and get no chains.

A chain's answer is the last \boxed{} of the generation (tasks.math.boxed, which also reads
a bare "\boxed 2"), None when there is none (a negative, counted). Positive = our checker,
checking.math_equivalent(answer, gold). For comparison, TDG's split as SOURCE.md measured
it: exact string match of the whitespace-free contents of the last \boxed{} of the
generation and of the reference solution. `differing` lists the chains where the two rules
disagree; `write_differences(path)` writes them as JSON Lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.teacher import split
from harness.types import Chain, Example
from tasks import checking, files
from tasks import math as math_task

TDG_SOURCE = "teacher:gpt-3.5-turbo (tdg)"
SOLUTION_PREFIX = "Solution:\n"


@dataclass(frozen=True)
class Difference:
    """One chain our checker and TDG's string match judge differently."""

    example_id: str
    file: str
    line: int
    sample: int
    gold: str  # the task's gold answer
    answer: str | None  # our answer (last \boxed{} of the generation)
    their_answer: str | None  # stripped last \boxed{} contents, as TDG's rule compares them
    their_gold: str | None
    ours: bool
    theirs: bool
    text: str


@dataclass
class TDGResult:
    chains: list[Chain]
    n_records: int  # records read (problems, the dropped repeats included)
    n_problems: int  # problems with chains
    n_dropped_problems: int  # repeats the math task leaves out (no chains)
    n_dropped_chains: int
    n_positive: int  # by checking.math_equivalent
    n_no_answer: int  # chains with no \boxed{} answer (answer None)
    n_string_positive: int  # TDG's rule, over the same chains
    n_string_no_boxed: int
    n_string_positive_all: int  # TDG's rule over every record, the dropped ones included
    differing: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_chains(self) -> int:
        return len(self.chains)

    @property
    def n_ours_only(self) -> int:
        return sum(1 for d in self.differing if d.ours and not d.theirs)

    @property
    def n_theirs_only(self) -> int:
        return sum(1 for d in self.differing if d.theirs and not d.ours)

    def summary(self) -> dict[str, Any]:
        return {
            "source": TDG_SOURCE,
            "records": self.n_records,
            "problems": self.n_problems,
            "chains": self.n_chains,
            "dropped_problems": self.n_dropped_problems,
            "dropped_chains": self.n_dropped_chains,
            "positive": self.n_positive,
            "no_answer": self.n_no_answer,
            "string_match_positive": self.n_string_positive,
            "string_match_positive_all_records": self.n_string_positive_all,
            "string_no_boxed": self.n_string_no_boxed,
            "differing": len(self.differing),
            "ours_only": self.n_ours_only,
            "theirs_only": self.n_theirs_only,
            "notes": list(self.notes),
        }

    def write_differences(self, path: Path | str) -> Path:
        """The differing chains, one JSON object a line; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for d in self.differing:
                f.write(json.dumps(asdict(d), ensure_ascii=False) + "\n")
        return path


def string_answer(text: str) -> str | None:
    r"""TDG's comparison key as SOURCE.md counts it: the contents of the last \boxed{} with all
    whitespace removed ("\frac{1}{2} " and "\frac{1} {2}" match), or None when there is none."""
    b = checking.last_boxed(text)
    return None if b is None else "".join(b.split())


def _default_task(tdg_dir: Path) -> Any:
    from tasks import get_task

    # <root>/tdg/GPT3.5-turbo-MATH -> data root <root> (math test file: <root>/math/...)
    return get_task("math", data_dir=str(tdg_dir.parent.parent), tdg_dir=str(tdg_dir))


def import_tdg(
    tdg_dir: Path | str,
    task: Any = None,
    *,
    max_problems: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TDGResult:
    """The 8 GPT-3.5 chains of each MATH train problem, positives by our checker.

    tdg_dir: TDG's GPT3.5-turbo-MATH folder. task: the `math` task whose train/valid examples
    the chains point at (default: get_task("math", data_dir=<tdg_dir>/../.., tdg_dir=tdg_dir)).
    max_problems: read only the first n records (load order), for quick checks.
    """
    tdg_dir = Path(tdg_dir).expanduser()
    if not tdg_dir.is_dir():
        raise UserError(f"TDG import: no folder {tdg_dir} (give TDG's GPT3.5-turbo-MATH folder)")
    paths = math_task._tdg_files(tdg_dir)
    if not paths:
        raise UserError(f"TDG import: {tdg_dir} has no train_*/<n>.jsonl files")
    if task is None:
        task = _default_task(tdg_dir)
    examples: list[Example] = list(task.load("train")) + list(task.load("valid"))
    by_loc = {(e.meta.get("file"), e.meta.get("line")): e for e in examples}
    by_id = {e.id: e for e in examples}
    chains: list[Chain] = []
    differing: list[Difference] = []
    seen_ids: set[str] = set()
    n_records = n_dropped = n_dropped_chains = 0
    n_pos = n_none = n_str_pos = n_str_none = n_str_pos_all = 0
    n_total = max_problems if max_problems is not None else None
    done = False
    for path in paths:
        if done:
            break
        rel = path.relative_to(tdg_dir).as_posix()
        rows, _ = files.read_jsonl(path)
        for row in rows:
            if max_problems is not None and n_records >= max_problems:
                done = True
                break
            n_records += 1
            loc = files.where(path, row["_line"])
            gens = row.get("generated_answer")
            if not isinstance(gens, list) or not all(isinstance(g, str) for g in gens):
                raise UserError(f"{loc}: generated_answer must be a list of strings")
            ref = files.require(row, "answer", loc, str)
            their_gold = string_answer(ref)
            theirs_all = [g is not None and g == their_gold for g in map(string_answer, gens)]
            n_str_pos_all += sum(theirs_all)
            ex = by_loc.get((rel, row["_line"]))
            if ex is None:  # examples from elsewhere (the hub): match by content
                question = files.require(row, "question", loc, str).removeprefix(math_task.TDG_PREFIX)
                cand = by_id.get(math_task.problem_id(question))
                ex = cand if cand is not None and "file" not in cand.meta and cand.id not in seen_ids else None
            if ex is None:
                n_dropped += 1
                n_dropped_chains += len(gens)
                continue
            seen_ids.add(ex.id)
            for k, gen in enumerate(gens):
                answer = math_task.boxed(gen)
                ours = answer is not None and checking.math_equivalent(answer, ex.answer)
                their_answer = string_answer(gen)
                theirs = theirs_all[k]
                n_pos += ours
                n_none += answer is None
                n_str_pos += theirs
                n_str_none += their_answer is None
                text = gen.removeprefix(SOLUTION_PREFIX).strip()
                chain = Chain(
                    example_id=ex.id,
                    source=TDG_SOURCE,
                    text=text,
                    answer=answer,
                    correct=ours,
                    n_tokens=len(text.split()),
                    meta={"sample": k, "file": rel, "line": row["_line"], "string_match": theirs},
                )
                chains.append(split(chain))
                if ours != theirs:
                    differing.append(
                        Difference(
                            ex.id, rel, row["_line"], k, ex.answer, answer, their_answer, their_gold, ours, theirs, text
                        )
                    )
            if progress is not None:
                progress(n_records, n_total or 0)
    notes = []
    if n_dropped:
        notes.append(
            f"{n_dropped} records are repeats the math task leaves out ({n_dropped_chains} chains not imported)"
        )
    return TDGResult(
        chains=chains,
        n_records=n_records,
        n_problems=len(seen_ids),
        n_dropped_problems=n_dropped,
        n_dropped_chains=n_dropped_chains,
        n_positive=n_pos,
        n_no_answer=n_none,
        n_string_positive=n_str_pos,
        n_string_no_boxed=n_str_none,
        n_string_positive_all=n_str_pos_all,
        differing=differing,
        notes=notes,
    )
