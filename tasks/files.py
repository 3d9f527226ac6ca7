"""Helpers for tasks that load original dataset files (JSON Lines or a JSON list).

Every problem with a file is a one-line UserError naming the file and the line (JSON Lines)
or the record index (JSON list). With skip_bad the bad rows are skipped instead, and one
message per skipped row is returned so the caller can report them: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import UserError, unknown
from tasks.base import TaskDefaults

log = logging.getLogger("distillbench.tasks")


class RowError(ValueError):
    """One bad row; `str(e)` is the full one-line message ("<path>:<line>: <what>")."""


def where(path: Path | str, line: int) -> str:
    """The location prefix used in every message: "<path>:<line>"."""
    return f"{path}:{line}"


def _row(obj: Any, loc: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RowError(f"{loc}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl(path: Path | str, skip_bad: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, skipped messages) of a JSON Lines file; blank lines are ignored.

    Each row gets "_line" (1-based line number) so later checks can name the line.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        loc = where(path, n)
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RowError(f"{loc}: invalid JSON ({e.msg} at column {e.colno})") from None
            row = _row(obj, loc)
        except RowError as e:
            if not skip_bad:
                raise UserError(str(e)) from None
            skipped.append(str(e))
            continue
        rows.append({**row, "_line": n})
    return rows, skipped


def read_json_list(
    path: Path | str, skip_bad: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, skipped messages) of a file holding one JSON array of objects.

    The location of a row is its 0-based record index ("<path>:<index>"), kept as "_line".
    A file that is not valid JSON as a whole cannot be partly read, so it always raises.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{where(path, e.lineno)}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for i, obj in enumerate(data):
        try:
            row = _row(obj, f"{path}:record {i}")
        except RowError as e:
            if not skip_bad:
                raise UserError(str(e)) from None
            skipped.append(str(e))
            continue
        rows.append({**row, "_line": i})
    return rows, skipped


def require(row: dict[str, Any], field: str, loc: str, kind: type | tuple[type, ...] = object) -> Any:
    """row[field], or RowError("<loc>: missing field 'x'") / wrong type."""
    if field not in row or row[field] is None:
        raise RowError(f"{loc}: missing field {field!r}")
    value = row[field]
    if not isinstance(value, kind):
        raise RowError(f"{loc}: field {field!r} has type {type(value).__name__}")
    return value


def convert_rows(
    rows: Iterable[dict[str, Any]], convert: Any, skip_bad: bool, skipped: list[str]
) -> list[Any]:
    """convert(row) for each row; a RowError raises UserError, or with skip_bad is recorded."""
    out = []
    for row in rows:
        try:
            out.append(convert(row))
        except RowError as e:
            if not skip_bad:
                raise UserError(str(e)) from None
            skipped.append(str(e))
    return out


def report_skipped(task: str, skipped: list[str]) -> None:
    """Log one warning per skipped row (skip_bad=True), so none goes unnoticed."""
    for msg in skipped:
        log.warning("task %r: skipped bad row: %s", task, msg)


def pick_split(task: Any, split: str, loaded: tuple[dict[str, Any], tuple[str, ...]]) -> list[Any]:
    """The examples of `split` from a task's cached `(splits, skipped)` load; skipped rows are
    reported on every load, so a user never misses them."""
    from tasks.base import SPLITS

    if split not in SPLITS:
        raise unknown("split", split, SPLITS)
    splits, skipped = loaded
    report_skipped(task.name, list(skipped))
    return list(splits[split])


def resolve_data_dir(
    data_dir: str | None, task: str, expected: str, *, subdir: str | None = None, marker: str | None = None
) -> Path:
    """The task's data folder; one-line UserError when unset or missing.

    `expected` says what the folder holds, e.g. "train.jsonl and test.jsonl". With `subdir`
    and `marker` (a path the folder must hold), data_dir may also be a data root laid out like
    ../shared/data (one folder per dataset): when data_dir/marker is absent but
    data_dir/subdir/marker exists, data_dir/subdir is the folder.
    """
    hint = f"the folder holding {expected} (see README: Data)"
    if data_dir is None or not str(data_dir).strip():
        raise UserError(f"task {task!r} needs data_dir: {hint}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise UserError(f"task {task!r}: data_dir {str(path)!r} is not a folder; it must be {hint}")
    if subdir and marker and not (path / marker).exists() and (path / subdir / marker).exists():
        return path / subdir
    return path


def data_root(folder: Path, subdir: str) -> Path:
    """The data root a resolved task folder sits in (its parent when it is the root's `subdir`),
    for tasks that read a second dataset folder beside their own (e.g. MATH train from tdg/)."""
    return folder.parent if folder.name == subdir else folder


def require_file(folder: Path, name: str, task: str) -> Path:
    """folder/name, or a one-line UserError saying which file is missing."""
    path = folder / name
    if not path.is_file():
        raise UserError(f"task {task!r}: {path} not found (data_dir must hold {name})")
    return path


def hash_split(ids: Iterable[str], share: float, salt: str) -> set[str]:
    """The ids whose sha256(salt + ":" + id) falls in the first `share` (0..1) of hash space.

    Membership depends on the id alone (not on the other ids or their order), so adding rows
    never moves an existing example across splits. The carved size is about share * len(ids).
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    cut = int(share * 2**32)
    out = set()
    for i in ids:
        h = int(hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()[:8], 16)
        if h < cut:
            out.add(i)
    return out


def number_answer(value: Any, loc: str) -> str:
    """The canonical gold string of a raw numeric answer (int, float or numeric string)."""
    from fractions import Fraction

    from tasks import checking

    if isinstance(value, bool):
        raise RowError(f"{loc}: answer {value!r} is not a number")
    if isinstance(value, (int, float)):
        try:
            # repr gives the shortest string that round-trips, so 39.0 -> 39 and 0.1 -> 0.1.
            return checking.format_number(Fraction(repr(value)))
        except (ValueError, OverflowError):
            raise RowError(f"{loc}: answer {value!r} is not a finite number") from None
    if isinstance(value, str):
        num = checking.normalize_number(value.strip())
        if num is not None:
            return num
    raise RowError(f"{loc}: answer {value!r} is not a number")


# Four short word problems written for this project (not taken from any benchmark), so a
# few-shot prompt never shows a test item: "Q: ...\nA: ... The answer is N.\n\n".
WORD_PROBLEM_EXEMPLARS: tuple[tuple[str, str], ...] = (
    (
        "A farmer has 14 cows and buys 9 more. Then 5 cows are sold. How many cows does the "
        "farmer have now?",
        "The farmer starts with 14 cows and buys 9, so 14 + 9 = 23 cows. After selling 5 "
        "there are 23 - 5 = 18 cows. The answer is 18.",
    ),
    (
        "A notebook costs $3 and a pen costs $2. Lena buys 4 notebooks and 3 pens. How much "
        "does she spend?",
        "The notebooks cost 4 * 3 = 12 dollars. The pens cost 3 * 2 = 6 dollars. In total "
        "she spends 12 + 6 = 18 dollars. The answer is 18.",
    ),
    (
        "A class of 28 students splits into teams of 4. Each team gets 2 balls. How many "
        "balls are needed?",
        "There are 28 / 4 = 7 teams. They need 7 * 2 = 14 balls. The answer is 14.",
    ),
    (
        "Omar reads 12 pages on Monday and twice as many on Tuesday. His book has 60 pages. "
        "How many pages are left to read?",
        "On Tuesday he reads 12 * 2 = 24 pages. So far he has read 12 + 24 = 36 pages. "
        "There are 60 - 36 = 24 pages left. The answer is 24.",
    ),
)


def few_shot_prompt(question: str) -> str:
    """The 4-shot chain-of-thought prompt used by the word-problem tasks."""
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in WORD_PROBLEM_EXEMPLARS)
    return shots + f"Q: {question}\nA:"


def json_list_examples(
    path: Path, task: str, skip_bad: bool, convert: Any
) -> tuple[list[Any], list[str]]:
    """(examples, skipped) from a JSON-list file: convert(row, loc) per row, ids checked unique."""
    rows, skipped = read_json_list(path, skip_bad=skip_bad)
    seen: set[str] = set()

    def one(row: dict[str, Any]) -> Any:
        loc = f"{path}:record {row['_line']}"
        ex = convert(row, loc)
        if ex.id in seen:  # ids must be stable and unique: a repeated raw id is a bad row
            raise RowError(f"{loc}: duplicate id {ex.id!r}")
        seen.add(ex.id)
        return ex

    return convert_rows(rows, one, skip_bad, skipped), skipped


def check_options(task: str, data_dir: Any, skip_bad: Any) -> None:
    """One-line UserErrors for the data_dir / skip_bad options every file task has."""
    if data_dir is not None and not isinstance(data_dir, str):
        raise UserError(f"task {task!r}: data_dir must be a path string, got {data_dir!r}")
    if not isinstance(skip_bad, bool):
        raise UserError(f"task {task!r}: skip_bad must be true or false, got {skip_bad!r}")


def find_source(
    data_dir: str | None,
    task: str,
    expected: str,
    layouts: Iterable[tuple[str, str, str]],
    source: str = "auto",
) -> tuple[str, Path]:
    """(source, folder) for a task whose files come in more than one layout.

    `layouts` lists (source name, subdir, marker) in order of preference: the source's files
    are in data_dir/subdir ("" = data_dir itself) when that folder holds `marker`, so data_dir
    may be a task folder or a data root. source="auto" takes the first layout found; a named
    source only its own layouts. When none is found the first candidate is returned, so the
    source's reader names the file that is missing.
    """
    base = resolve_data_dir(data_dir, task, expected)
    cands = [lay for lay in layouts if source in ("auto", lay[0])]
    for name, subdir, marker in cands:
        if (base / subdir / marker).is_file():
            return name, base / subdir
    return cands[0][0], base


class WordProblemFiles(TaskDefaults):
    """load/skipped/prompt for a word-problem task read from files: the class defines
    `_loaded()` (its cached `(splits, skipped)`) and gets the rest from here."""

    name: str

    def _loaded(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        raise NotImplementedError

    def load(self, split: str) -> list[Any]:
        return pick_split(self, split, self._loaded())

    def skipped(self) -> list[str]:
        """One message per row skipped with skip_bad=True (empty otherwise)."""
        return list(self._loaded()[1])

    def prompt(self, example: Any) -> str:
        return few_shot_prompt(example.question)
