r"""MATH (Hendrycks et al., 2021) and its MATH500 subset (Lightman et al., 2023, PRM800K).

Tasks:
  "math"     test = the full 5,000-problem MATH test (`full_test_5000/test.jsonl`, fields
             question = problem, answer = solution, level, type);
  "math500"  test = the 500-problem PRM800K subset (`prm800k_math_splits/test.jsonl`, fields
             problem, solution, answer, subject, level, unique_id).
Both take train/valid from the 7,500 MATH train problems, read from TDG's GPT-3.5 files
(`tdg/GPT3.5-turbo-MATH/train_gpt3.5_<subject>_8/<n>.jsonl`; "question" has a "Problem:\n"
prefix, "answer" is the reference solution), in a fixed order: subject folder, then numeric
file name, then line. Valid is ~10% of them by files.hash_split (salt "math-valid").

Ids are "math-<first 12 hex of sha256(whitespace-normalised problem)>", so a problem has the
same id in the 5,000 file, in MATH500 and on the hub (a MATH500 example's id is its id in
"math"). A repeated problem in a test file is a bad row. MATH's train data repeats itself:
one train problem occurs twice and one also occurs in the test set (equal after whitespace
normalisation). A train problem whose id is already taken (by a test problem or by an earlier
train problem) is therefore left out of train/valid; `dropped()` lists them (2 of 7,500).

Gold answer: the last \boxed{} of the reference solution, as written (trimmed); the
rationale is the reference solution. Equivalence is checking.math_equivalent (sympy, time
limited) and the grouping key checking.math_canonical.

A chain's answer (tasks/extraction.py): the last \boxed{} (boxes joined by "and" are one
answer) > a stated answer ("Final answer: ...", "The answer is ...") > the last display math >
the last number (only with last_number_fallback). Options: `answer_order` (a list of those
sources, e.g. [boxed] to grade boxed answers only) and `rounding` (accept a decimal the model
rounded, checking.ROUNDING_RULE; off, as it would change MATH verdicts: bench/CHECKER_NOTES.md).

Hugging Face: "math" <- EleutherAI/hendrycks_math (7 subject configs, concatenated in
SUBJECT_CONFIGS order; split "train" gives train/valid, "test" the test set); "math500" <-
HuggingFaceH4/MATH-500 (split "test" only: its train/valid need data_dir or tdg_dir).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import checking, extraction, files, hub
from tasks.base import SPLITS, TaskDefaults

log = logging.getLogger("distillbench.tasks")

VALID_SHARE = 0.10
VALID_SALT = "math-valid"
TEST_5000 = "full_test_5000/test.jsonl"
TEST_500 = "prm800k_math_splits/test.jsonl"
TDG_DEFAULT = ("tdg", "GPT3.5-turbo-MATH")
TDG_PREFIX = "Problem:\n"
HF_MATH = "EleutherAI/hendrycks_math"
SUBJECT_CONFIGS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)

# "\boxed 2" (no braces), as Hendrycks' own last_boxed_only_string also accepts.
_BOXED_BARE = re.compile(r"\\boxed[ \t]+([^\s${}]+)")
_MINERVA = re.compile(
    r"Final Answer:\s*The final answer is\s*(.+?)\s*\.?\s*I hope it is correct", re.IGNORECASE | re.DOTALL
)
_LEVEL = re.compile(r"Level\s+(\d+)")

# Golds for the 2 reference solutions whose box is empty in MATH itself ("there are
# $\boxed{}$ primes"), keyed by problem id; used only when the box is empty (a source that
# fixes the box wins). Both are multiple-choice problems whose solution proves choice (A) 0.
ERRATA: dict[str, str] = {
    # MATH train number_theory: primes strictly between n!+1 and n!+n, choice (A) 0; the
    # solution shows all of them are composite but its box is empty.
    "math-79595ba3b4cf": "0",
    # MATH train number_theory: primes among P+n (P = product of primes <= 61, n = 2..59),
    # choice (A) 0; the solution shows none is prime but its box is empty.
    "math-81a7fe8e017d": "0",
}


def problem_id(problem: str) -> str:
    """The id of a MATH problem: a content hash of its whitespace-normalised text."""
    return "math-" + hashlib.sha256(" ".join(problem.split()).encode("utf-8")).hexdigest()[:12]


def boxed(text: str) -> str | None:
    r"""The trimmed content of the last \boxed{...} (or bare "\boxed X") in text; None if none."""
    braced = checking.last_boxed(text)
    bare = list(_BOXED_BARE.finditer(text))
    if bare and (braced is None or bare[-1].start() > text.rfind("\\boxed{")):
        return bare[-1].group(1).rstrip(".,;:") or None
    if braced is not None and braced.strip():
        return braced.strip()
    return None


def _level(value: Any) -> Any:
    """3 for "Level 3" or 3; other values (MATH has "Level ?") are kept as written."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (m := _LEVEL.fullmatch(value.strip())) is not None:
        return int(m[1])
    return value


def _example(problem: Any, solution: Any, loc: str, meta: dict[str, Any]) -> Example:
    if not isinstance(problem, str) or not problem.strip():
        raise files.RowError(f"{loc}: empty problem")
    gold = boxed(solution)
    if gold is None and checking.last_boxed(solution) is not None:  # an empty \boxed{}
        gold = ERRATA.get(problem_id(problem))
        if gold is not None:
            meta = {**meta, "erratum": "gold supplied: the solution's \\boxed{} is empty"}
    if gold is None:
        what = "an empty \\boxed{}" if checking.last_boxed(solution) is not None else "no \\boxed{} answer"
        raise files.RowError(f"{loc}: solution has {what}")
    return Example(id=problem_id(problem), question=problem.strip(), answer=gold, rationale=solution.strip(), meta=meta)


# --- the few-shot prompt ----------------------------------------------------------------------

# Four problems written for this project in MATH's style (not MATH items), one per common
# answer shape: integer, fraction, radical expression, ordered pair.
MATH_EXEMPLARS: tuple[tuple[str, str], ...] = (
    (
        "What is the sum of all positive divisors of $18$?",
        ("The positive divisors of $18 = 2 \\cdot 3^2$ are $1, 2, 3, 6, 9, 18$. "
        "Their sum is $1 + 2 + 3 + 6 + 9 + 18 = 39$. The answer is $\\boxed{39}$."),
    ),
    (
        ("A bag holds 3 red marbles and 5 blue marbles. Two marbles are drawn without "
        "replacement. What is the probability that both are red? Express your answer as a "
        "common fraction."),
        ("There are $\\binom{8}{2} = 28$ ways to draw two marbles and $\\binom{3}{2} = 3$ ways to "
        "draw two red ones, so the probability is $\\frac{3}{28}$. The answer is "
        "$\\boxed{\\frac{3}{28}}$."),
    ),
    (
        "Find the larger root of $x^2 - 4x + 1 = 0$.",
        ("By the quadratic formula, $x = \\frac{4 \\pm \\sqrt{16 - 4}}{2} = 2 \\pm \\sqrt{3}$. "
        "The larger root is $2 + \\sqrt{3}$. The answer is $\\boxed{2 + \\sqrt{3}}$."),
    ),
    (
        "The lines $y = 2x + 1$ and $y = -x + 7$ meet at a point $(a, b)$. Find $(a, b)$.",
        ("Setting $2x + 1 = -x + 7$ gives $3x = 6$, so $x = 2$ and $y = 2 \\cdot 2 + 1 = 5$. "
        "The answer is $\\boxed{(2, 5)}$."),
    ),
)


def math_prompt(problem: str) -> str:
    """The 4-shot chain-of-thought prompt: "Problem: ...\\nSolution: ... \\boxed{X}."."""
    shots = "".join(f"Problem: {q}\nSolution: {a}\n\n" for q, a in MATH_EXEMPLARS)
    return shots + f"Problem: {problem}\nSolution:"


# --- the tasks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MathBase(TaskDefaults):
    """Shared options, prompting, extraction and checking of "math" and "math500"."""

    data_dir: str | None = None
    hf_dataset: str | None = None
    tdg_dir: str | None = None
    skip_bad: bool = False
    last_number_fallback: bool = False
    answer_order: tuple[str, ...] | None = None
    rounding: bool = False

    name: ClassVar[str]
    # 2: answers found beyond the last \boxed{} and relations/equations compared (issue 18), so
    # the leaderboard keeps v1 and v2 scores apart; `distillbench aggregate RUN_ID` re-scores
    # a v1 run's saved chains with the current checker (--re-extract: and extraction)
    version: ClassVar[str] = "2"
    prompt_version: ClassVar[str] = "1"
    test_file: ClassVar[str]
    problem_family: ClassVar[str | None] = "math"

    def __post_init__(self) -> None:
        files.check_options(self.name, self.data_dir, self.skip_bad)
        hub.check_source(self.name, self.data_dir, self.hf_dataset)
        if self.tdg_dir is not None and not isinstance(self.tdg_dir, str):
            raise UserError(f"task {self.name!r}: tdg_dir must be a path string, got {self.tdg_dir!r}")
        for flag in ("last_number_fallback", "rounding"):
            if not isinstance(getattr(self, flag), bool):
                raise UserError(f"task {self.name!r}: {flag} must be true or false, got {getattr(self, flag)!r}")
        if self.answer_order is not None:
            if isinstance(self.answer_order, str) or not isinstance(self.answer_order, (list, tuple)):
                raise UserError(f"task {self.name!r}: answer_order must be a list, got {self.answer_order!r}")
            try:  # a tuple, so the task stays hashable (its loaders are cached per task)
                object.__setattr__(self, "answer_order", extraction.check_order(self.answer_order, "answer_order"))
            except ValueError as e:
                raise UserError(f"task {self.name!r}: {e}") from None

    def load(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        if split == "test":
            examples, skipped = _load_test(self)
            files.report_skipped(self.name, list(skipped))
            return list(examples)
        loaded = _load_train(self)
        files.report_skipped(self.name, list(loaded["skipped"]))
        return list(loaded[split])

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise), test then train
        (train only when its data is there)."""
        out = list(_load_test(self)[1])
        if _train_available(self):
            out += list(_load_train(self)["skipped"])
        return out

    def dropped(self) -> list[str]:
        """The train problems left out because their id was taken (see the module docstring)."""
        return list(_load_train(self)["dropped"])

    def prompt(self, example: Example) -> str:
        return math_prompt(example.question)

    def student_input(self, example: Example) -> str:
        return example.question

    def extract(self, text: str) -> str | None:
        return extraction.final_answer(text, self.answer_order or self._default_order())

    def _default_order(self) -> tuple[str, ...]:
        return extraction.MATH_ORDER + (("number",) if self.last_number_fallback else ())

    def canonical(self, answer: str) -> str:
        return checking.math_canonical(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        return checking.math_equivalent(pred, gold, rounding=self.rounding)

    # --- where the data is ---------------------------------------------------------------

    def _folder(self) -> Path:
        return files.resolve_data_dir(
            self.data_dir, self.name, f"{self.test_file} (the MATH data folder)", subdir="math", marker=self.test_file
        )

    def _tdg_folder(self) -> Path | None:
        """The TDG train folder, or None when neither tdg_dir nor data_dir says where."""
        if self.tdg_dir is not None:
            return Path(self.tdg_dir).expanduser()
        if self.data_dir is None:
            return None
        return files.data_root(self._folder(), "math").joinpath(*TDG_DEFAULT)


@dataclass(frozen=True)
class MathTask(_MathBase):
    """MATH: competition mathematics, 5,000 test problems, LaTeX answers in \\boxed{}."""

    name: ClassVar[str] = "math"
    test_file: ClassVar[str] = TEST_5000


@dataclass(frozen=True)
class Math500Task(_MathBase):
    """MATH500: the 500-problem PRM800K subset of the MATH test set."""

    name: ClassVar[str] = "math500"
    test_file: ClassVar[str] = TEST_500


# --- loading ------------------------------------------------------------------------------------


def _unique(examples: list[Example], locs: list[str], skip_bad: bool, skipped: list[str]) -> list[Example]:
    """The examples with a repeated id (the same problem twice in a test set) as bad rows."""
    first: dict[str, str] = {}
    out = []
    for ex, loc in zip(examples, locs, strict=True):
        if ex.id in first:
            msg = f"{loc}: duplicate problem (id {ex.id!r}, first at {first[ex.id]})"
            if not skip_bad:
                raise UserError(msg)
            skipped.append(msg)
            continue
        first[ex.id] = loc
        out.append(ex)
    return out


def _convert(rows: list[dict[str, Any]], convert: Any, loc_of: Any, skip_bad: bool, skipped: list[str]):
    """(examples, locations) of rows converted one by one; bad rows raise or are recorded."""
    pairs = files.convert_rows(rows, lambda r: (convert(r), loc_of(r)), skip_bad, skipped)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _file_test_row(task: _MathBase, path: Path, row: dict[str, Any]) -> Example:
    loc = files.where(path, row["_line"])
    meta: dict[str, Any] = {"file": task.test_file, "line": row["_line"]}
    if task.name == "math500":
        problem = files.require(row, "problem", loc, str)
        solution = files.require(row, "solution", loc, str)
        meta |= {
            "level": _level(row.get("level")),
            "subject": row.get("subject"),
            "unique_id": row.get("unique_id"),
        }
    else:
        problem = files.require(row, "question", loc, str)
        solution = files.require(row, "answer", loc, str)
        meta |= {"level": _level(row.get("level")), "subject": row.get("type")}
    return _example(problem, solution, loc, meta)


def _hub_row(task: _MathBase, dataset: str, config: str | None, split: str, row: dict[str, Any]) -> Example:
    loc = hub.where(dataset, config, split, row["_line"])
    problem = files.require(row, "problem", loc, str)
    solution = files.require(row, "solution", loc, str)
    meta: dict[str, Any] = {"hf_dataset": dataset, "hf_config": config, "row": row["_line"]}
    if task.name == "math500" and config is None:
        meta |= {"level": _level(row.get("level")), "subject": row.get("subject"), "unique_id": row.get("unique_id")}
    else:
        meta |= {"level": _level(row.get("level")), "subject": row.get("type")}
    return _example(problem, solution, loc, meta)


def _hub_split(task: _MathBase, split: str, skipped: list[str]) -> tuple[list[Example], list[str]]:
    """Examples and their locations of one hub split (all subject configs for "math")."""
    dataset = task.hf_dataset
    assert dataset is not None
    configs: tuple[str | None, ...] = SUBJECT_CONFIGS if task.name == "math" else (None,)
    examples: list[Example] = []
    locs: list[str] = []
    for config in configs:
        rows = hub.load_rows(dataset, split, task=task.name, config=config)
        ex, lc = _convert(
            rows,
            functools.partial(_hub_row, task, dataset, config, split),
            lambda r, c=config: hub.where(dataset, c, split, r["_line"]),
            task.skip_bad,
            skipped,
        )
        examples += ex
        locs += lc
    return examples, locs


@functools.lru_cache(maxsize=8)
def _load_test(task: _MathBase) -> tuple[tuple[Example, ...], tuple[str, ...]]:
    skipped: list[str] = []
    if task.hf_dataset is not None:
        examples, locs = _hub_split(task, "test", skipped)
    else:
        folder = task._folder()
        path = files.require_file(folder, task.test_file, task.name)
        rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)
        skipped += bad
        examples, locs = _convert(
            rows,
            functools.partial(_file_test_row, task, path),
            lambda r: files.where(path, r["_line"]),
            task.skip_bad,
            skipped,
        )
    return tuple(_unique(examples, locs, task.skip_bad, skipped)), tuple(skipped)


def _tdg_files(folder: Path) -> list[Path]:
    """The TDG .jsonl files in load order: subject folder, then numeric file name."""

    def key(p: Path) -> tuple[int, int, str]:
        return (0, int(p.stem), p.name) if p.stem.isdigit() else (1, 0, p.name)

    out: list[Path] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        out += sorted((p for p in sub.iterdir() if p.is_file() and p.suffix == ".jsonl"), key=key)
    return out


def _train_available(task: _MathBase) -> bool:
    """Whether load("train") has data to read (it raises a UserError saying why otherwise)."""
    try:
        _train_source(task)
    except UserError:
        return False
    return True


def _train_source(task: _MathBase) -> tuple[str, Any]:
    """("hub", dataset) or ("tdg", [files]); a one-line UserError when there is no train data."""
    if task.tdg_dir is None and task.hf_dataset is not None:
        if task.name == "math500":
            raise UserError(
                f"task 'math500': {task.hf_dataset!r} has only a test split; train with task 'math' "
                "data, or give data_dir (or tdg_dir) for the MATH train problems"
            )
        return "hub", task.hf_dataset
    folder = task._tdg_folder()
    if folder is None:
        raise UserError(f"task {task.name!r} needs data_dir or tdg_dir for its train/valid splits")
    found = _tdg_files(folder) if folder.is_dir() else []
    if not found:
        raise UserError(
            f"task {task.name!r}: no MATH train data: {folder} has no TDG train_*/<n>.jsonl files "
            "(set tdg_dir to TDG's GPT3.5-turbo-MATH folder; see README: Data)"
        )
    return "tdg", (folder, found)


def _tdg_row(folder: Path, path: Path, row: dict[str, Any]) -> Example:
    loc = files.where(path, row["_line"])
    question = files.require(row, "question", loc, str)
    solution = files.require(row, "answer", loc, str)
    problem = question.removeprefix(TDG_PREFIX)
    rel = path.relative_to(folder).as_posix()
    meta = {"file": rel, "line": row["_line"], "level": _level(row.get("level")), "subject": row.get("type")}
    return _example(problem, solution, loc, meta)


@functools.lru_cache(maxsize=8)
def _load_train(task: _MathBase) -> dict[str, tuple[Any, ...]]:
    kind, source = _train_source(task)
    skipped: list[str] = []
    if kind == "hub":
        examples, locs = _hub_split(task, "train", skipped)
    else:
        folder, paths = source
        examples, locs = [], []
        for path in paths:
            rows, bad = files.read_jsonl(path, skip_bad=task.skip_bad)
            skipped += bad
            ex, lc = _convert(
                rows,
                functools.partial(_tdg_row, folder, path),
                lambda r, p=path: files.where(p, r["_line"]),
                task.skip_bad,
                skipped,
            )
            examples += ex
            locs += lc
    # Known MATH repeats (see the module docstring): keep each id once, and never a test problem.
    taken = {e.id: "the test set" for e in _test_ids_for_train(task)}
    kept: list[Example] = []
    dropped: list[str] = []
    for ex, loc in zip(examples, locs, strict=True):
        if ex.id in taken:
            dropped.append(f"{loc}: problem {ex.id!r} already in {taken[ex.id]}")
            continue
        taken[ex.id] = loc
        kept.append(ex)
    for msg in dropped:
        log.info("task %r: left out of train: %s", task.name, msg)
    valid_ids = files.hash_split((e.id for e in kept), VALID_SHARE, salt=VALID_SALT)
    return {
        "train": tuple(e for e in kept if e.id not in valid_ids),
        "valid": tuple(e for e in kept if e.id in valid_ids),
        "skipped": tuple(skipped),
        "dropped": tuple(dropped),
    }


def _test_ids_for_train(task: _MathBase) -> list[Example]:
    """The test problems train must not contain: this task's test set, and for "math500" with
    data_dir also the full 5,000 when the file is there (so its train equals "math"'s)."""
    test = list(_load_test(task)[0])
    if task.name == "math500" and task.hf_dataset is None:
        full = task._folder() / TEST_5000
        if full.is_file():
            test += MathTask(data_dir=os.fspath(task._folder()), skip_bad=task.skip_bad).load("test")
    return test
