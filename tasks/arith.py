"""Procedural arithmetic ("Calculate 4 - 1 - 7.") from reasoning-gym's basic_arithmetic.

Gold answers are computed here with the usual precedence (* and / before + and -), exactly,
from a tiny tokenizer; reasoning-gym's own answer evaluates strictly left to right, which
differs from ordinary arithmetic once * or / is mixed with + or -.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, ClassVar

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import checking
from tasks.base import SPLITS, check_problem_kind

# Fixed share of the hash space per split: an expression's split never depends on the sizes
# asked for, so a test question can't reach train under any configuration.
_SPLIT_SHARES = (("train", 80), ("valid", 10), ("test", 10))
_OPERATORS = ("+", "-", "*", "/")
_MAX_DIGITS = 12
_STALE_DRAWS = 5000  # draws without a new expression before the pool counts as exhausted
_GROW_TERMS_UP_TO = 8  # a "harder" problem adds a term below this many, else lengthens numbers
_PROBLEM_DRAWS = 50  # new numbers drawn before giving up on a problem (all zero divisors, ...)

_EXEMPLARS = ("12 + 7", "5 - 9 + 3", "40 - 17")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_of(key: str) -> str:
    """The split a question key belongs to, from a stable hash (not Python's hash())."""
    bucket = int(sha256_hex(key)[:8], 16) % 100
    for split, share in _SPLIT_SHARES:
        if bucket < share:
            return split
        bucket -= share
    raise AssertionError("shares must sum to 100")


def fill_splits(
    items: Any, key: Any, sizes: dict[str, int], *, what: str, max_draws: int
) -> dict[str, list[Any]]:
    """Take the first sizes[s] unique items of each hash split from a lazy item stream.

    Stops early when every split is full; raises UserError when the stream runs dry (no new
    key for _STALE_DRAWS draws, or max_draws reached) before that.
    """
    out: dict[str, list[Any]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    stale = 0
    for draws, item in enumerate(items):
        if all(len(out[s]) >= sizes[s] for s in SPLITS) or draws >= max_draws:
            break
        k = key(item)
        if k in seen:
            stale += 1
            if stale >= _STALE_DRAWS:
                break
            continue
        seen.add(k)
        stale = 0
        split = split_of(k)
        if len(out[split]) < sizes[split]:
            out[split].append(item)
    if any(len(out[s]) < sizes[s] for s in SPLITS):
        got = ", ".join(f"{s}={len(out[s])}/{sizes[s]}" for s in SPLITS)
        raise UserError(
            f"{what}: not enough distinct questions for the requested split sizes ({got} after "
            f"{len(seen)} distinct); ask for fewer examples or widen the generator options"
        )
    return out


# --- expressions ------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|([-+*/]))")


def tokenize(expression: str) -> list[Fraction | str]:
    """Alternating numbers and operators: "4 - 1 - 7" -> [4, "-", 1, "-", 7]."""
    tokens: list[Fraction | str] = []
    pos = 0
    expression = expression.strip()
    while pos < len(expression):
        m = _TOKEN.match(expression, pos)
        if m is None:
            raise ValueError(f"cannot parse arithmetic expression {expression!r}")
        tokens.append(Fraction(int(m[1])) if m[1] else m[2])
        pos = m.end()
    ok = (
        tokens
        and all(isinstance(t, Fraction) == (i % 2 == 0) for i, t in enumerate(tokens))
        and len(tokens) % 2 == 1
    )
    if not ok:
        raise ValueError(f"not a number-operator-number expression: {expression!r}")
    return tokens


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ValueError("division by zero")
    return a / b


Step = tuple[Fraction, str, Fraction, Fraction]  # a op b = result


def steps(expression: str, slip: tuple[int, Fraction] | None = None) -> list[Step]:
    """One step per operator, * and / first, then left to right.

    slip=(i, value) replaces the result of step i by value and carries it through.
    """
    tokens = tokenize(expression)
    out: list[Step] = []

    def do(a: Fraction, op: str, b: Fraction) -> Fraction:
        r = _apply(a, op, b)
        if slip is not None and slip[0] == len(out):
            r = slip[1]
        out.append((a, op, b, r))
        return r

    # Multiplicative pass: fold runs of * and / into single terms.
    terms: list[Fraction] = [tokens[0]]  # type: ignore[list-item]
    add_ops: list[str] = []
    for op, b in zip(tokens[1::2], tokens[2::2], strict=True):
        if op in "*/":
            terms[-1] = do(terms[-1], op, b)  # type: ignore[arg-type]
        else:
            add_ops.append(op)  # type: ignore[arg-type]
            terms.append(b)  # type: ignore[arg-type]
    acc = terms[0]
    for op, b in zip(add_ops, terms[1:], strict=True):
        acc = do(acc, op, b)
    return out


def evaluate(expression: str) -> Fraction:
    """Exact value with the usual precedence; never eval."""
    s = steps(expression)
    return s[-1][3] if s else tokenize(expression)[0]  # type: ignore[return-value]


def slip_value(value: Fraction, rng: random.Random, *, nonnegative: bool = False) -> Fraction:
    """A plausible miscalculation of value: off by one in some digit place, or two digits swapped.

    Works on the digits of the decimal form, so 0.75 can become 0.76 or 0.57. Always differs;
    with nonnegative, a positive value stays positive (a count does not slip to 0 or below).
    """
    text = checking.format_number(abs(value))
    if "/" in text:  # non-terminating: slip the whole part
        return value + rng.choice((-1, 1)) if not nonnegative or value >= 1 else value + 1
    places = len(text.partition(".")[2])
    digits = text.replace(".", "")
    n = int(digits)
    candidates: set[int] = set()
    for place in range(len(digits)):
        candidates.update((n + 10**place, n - 10**place))
    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1] and not (i == 0 and digits[1] == "0"):
            swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
            candidates.add(int(swapped))
    sign = -1 if value < 0 else 1
    options = sorted(
        Fraction(sign * c, 10**places)
        for c in candidates
        if c >= 0 and c != n and not (nonnegative and (sign * c < 0 or c == 0 < n))
    )
    if not options:  # e.g. 0 with nonnegative: only upward slips exist
        options = [value + 1]
    return rng.choice(options)


def chain_text(step_list: list[Step], answer: Fraction) -> str:
    fmt = checking.format_number
    lines = [f"{fmt(a)} {op} {fmt(b)} = {fmt(r)}." for a, op, b, r in step_list]
    lines.append(f"The answer is {fmt(answer)}.")
    return " ".join(lines)


# --- the task -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArithTask(checking.NumericAnswers):
    """Short integer expressions; disjoint train/valid/test by a hash of the expression."""

    min_terms: int = 2
    max_terms: int = 2
    min_digits: int = 1
    max_digits: int = 2
    operators: tuple[str, ...] = ("+", "-")
    n_train: int = 2000
    n_valid: int = 200
    n_test: int = 200
    seed: int = 0

    name: ClassVar[str] = "arith"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        # Options arrive from specs and the CLI: lists become tuples so the task stays hashable.
        object.__setattr__(self, "operators", tuple(self.operators))
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "operators" and (not isinstance(v, int) or isinstance(v, bool)):
                raise UserError(f"task 'arith': option {f.name} must be an integer, got {v!r}")
        if not 2 <= self.min_terms <= self.max_terms:
            raise UserError("task 'arith': need 2 <= min_terms <= max_terms")
        if not 1 <= self.min_digits <= self.max_digits <= _MAX_DIGITS:
            raise UserError(f"task 'arith': need 1 <= min_digits <= max_digits <= {_MAX_DIGITS}")
        if not self.operators or any(op not in _OPERATORS for op in self.operators):
            raise UserError(
                f"task 'arith': operators must be a non-empty subset of {list(_OPERATORS)}, "
                f"got {list(self.operators)}"
            )
        if min(self.n_train, self.n_valid, self.n_test) < 0:
            raise UserError("task 'arith': split sizes must be >= 0")

    # -- data

    def load(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        return list(_load_arith(self)[split])

    # -- prompts

    def prompt(self, example: Example) -> str:
        shots = []
        for expr in _EXEMPLARS:
            s = steps(expr)
            shots.append(f"Q: Calculate {expr}.\nA: {chain_text(s, s[-1][3])}\n\n")
        return "".join(shots) + f"Q: {example.question}\nA:"

    # -- oracle chains (checking comes from checking.NumericAnswers)

    def write_chain(
        self, example: Example, slip_rng: random.Random | None = None
    ) -> tuple[str, str]:
        """(chain, final answer): one step per operator; with slip_rng, one wrong step."""
        expression = example.meta.get("expression") or _expression_of(example.question)
        correct = steps(expression)
        if not correct:
            raise ValueError(f"no operator to work through in {expression!r}")
        gold = correct[-1][3]
        if slip_rng is None:
            return chain_text(correct, gold), checking.format_number(gold)
        # A slip can be cancelled (x * 0 later), so retry; slipping the last step always works.
        for attempt in range(20):
            last = attempt == 19
            i = len(correct) - 1 if last else slip_rng.randrange(len(correct))
            slipped = steps(expression, slip=(i, slip_value(correct[i][3], slip_rng)))
            answer = slipped[-1][3]
            if not checking.equivalent(
                checking.format_number(answer), checking.format_number(gold)
            ):
                return chain_text(slipped, answer), checking.format_number(answer)
        raise AssertionError("unreachable: a slipped last step always changes the answer")

    # -- oracle problems (FDD)

    def write_problem(self, example: Example, kind: str, rng: random.Random) -> Example:
        """A new expression with new numbers: "similar" keeps the parent's shape (terms, digits
        of each number, operator at each position); "harder" adds a term or a digit to every
        number (see `_harder_shape`)."""
        check_problem_kind(kind)
        parent = example.meta.get("expression") or _expression_of(example.question)
        tokens = tokenize(parent)
        digits = [len(str(int(n))) for n in tokens[::2]]
        ops = [str(op) for op in tokens[1::2]]
        if kind == "harder":
            digits, ops = self._harder_shape(digits, ops, rng)
        for _ in range(_PROBLEM_DRAWS):
            numbers = [str(_draw_number(d, rng)) for d in digits]
            parts = [numbers[0]]
            for op, n in zip(ops, numbers[1:], strict=True):
                parts += [op, n]
            expression = " ".join(parts)
            if expression != parent and _well_defined(expression):
                meta = {"expression": expression, "index": None, "kind": kind, "parent": example.id}
                return _new_example(expression, f"Calculate {expression}.", meta)
        raise ValueError(f"no well-defined {kind} problem for {parent!r} in {_PROBLEM_DRAWS} draws")

    def _harder_shape(
        self, digits: list[int], ops: list[str], rng: random.Random
    ) -> tuple[list[int], list[str]]:
        """One more term (an operator from `operators`, as many digits as the parent's longest
        number) or every number one digit longer (up to _MAX_DIGITS), 50/50; at 8+ terms only
        longer numbers, unless every number already has _MAX_DIGITS."""
        can_lengthen = any(d < _MAX_DIGITS for d in digits)
        add_term = not can_lengthen or (len(digits) < _GROW_TERMS_UP_TO and rng.random() < 0.5)
        if add_term:
            return [*digits, max(digits)], [*ops, rng.choice(self.operators)]
        return [d + 1 if d < _MAX_DIGITS else d for d in digits], ops


_QUESTION = re.compile(r"^\s*Calculate\s+(.+?)\s*\.?\s*$")


def _expression_of(question: str) -> str:
    m = _QUESTION.match(question)
    if m is None:
        raise ValueError(f"not an arithmetic question: {question!r}")
    return m[1]


@functools.lru_cache(maxsize=8)
def _load_arith(task: ArithTask) -> dict[str, tuple[Example, ...]]:
    import reasoning_gym

    sizes = {"train": task.n_train, "valid": task.n_valid, "test": task.n_test}
    total = sum(sizes.values())
    max_draws = 50 * total + 10_000
    # Items depend only on seed + index, so reading further is the same as a bigger pool.
    ds = reasoning_gym.create_dataset(
        "basic_arithmetic",
        min_terms=task.min_terms,
        max_terms=task.max_terms,
        min_digits=task.min_digits,
        max_digits=task.max_digits,
        operators=task.operators,
        allow_parentheses=False,
        allow_negation=False,
        size=max_draws,
        seed=task.seed,
    )
    # "/" can draw a zero divisor; such items are skipped, not answered.
    items = (ds[i] for i in range(max_draws))
    items = (it for it in items if _well_defined(it["metadata"]["expression"]))
    chosen = fill_splits(
        items,
        key=lambda it: it["metadata"]["expression"],
        sizes=sizes,
        what=f"task 'arith' with {task}",
        max_draws=max_draws,
    )
    out = {}
    for split, rows in chosen.items():
        out[split] = tuple(_example(r) for r in rows)
    return out


def _well_defined(expression: str) -> bool:
    try:
        evaluate(expression)
    except (ValueError, ZeroDivisionError):
        return False
    return True


def _draw_number(digits: int, rng: random.Random) -> int:
    """A random number with exactly `digits` digits (no leading zero; one digit may be 0)."""
    return rng.randint(0, 9) if digits == 1 else rng.randint(10 ** (digits - 1), 10**digits - 1)


def _example(row: dict[str, Any]) -> Example:
    expression = row["metadata"]["expression"]
    meta = {"expression": expression, "index": row["metadata"]["source_index"]}
    return _new_example(expression, row["question"], meta)


def _new_example(expression: str, question: str, meta: dict[str, Any]) -> Example:
    # The id hashes the expression alone, so a written problem equal to a loaded one shares its id.
    return Example(
        id=f"arith-{sha256_hex(expression)[:12]}",
        question=question,
        answer=checking.format_number(evaluate(expression)),
        meta=meta,
    )
