"""Answer extraction and equivalence shared by all tasks.

Everything here reads untrusted model output: no eval, exact arithmetic with Fraction, and
hard size limits so a pathological string costs microseconds, not minutes.

Canonical number format (one string per rational value):
  integers        -> "12", "-4"
  terminating     -> shortest decimal, "0.5", "-2.25" (so "1/2" and "0.5" agree)
  non-terminating -> reduced fraction, "1/3"
"""

from __future__ import annotations

import ast
import atexit
import dataclasses
import functools
import math
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

from tasks import extraction
from tasks.base import TaskDefaults

MAX_DIGITS = 100  # longer numbers are not answers, and Fraction on them is not free
_MAX_NUMBER_TEXT = 300  # cheap length cut before any regex runs
_MAX_DECIMALS = 20  # past this a terminating decimal is less readable than the fraction

# --- extraction -------------------------------------------------------------------------

# Lazy body up to a sentence end: a period followed by space/end (not a decimal point, not
# the period of a title such as "Mrs. Hilt"), a newline, or the end of the text.
_ANSWER_IS = re.compile(
    r"the\s+(?:final\s+)?answer\s+is\s*:?\s*(.+?)\s*"
    r"(?:(?<!\bmr)(?<!\bmrs)(?<!\bms)(?<!\bdr)(?<!\bst)\.(?=\s|$)|\n|$)",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_LAST_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_TRAILING_PUNCT = ".,;:!?"
_BRACES = re.compile(r"\\boxed\{|[{}]")


def _clean(answer: str) -> str | None:
    """Strip markup and sentence punctuation around an extracted answer; None if empty."""
    a = answer.strip()
    boxed = last_boxed(a)
    if boxed is not None:
        a = boxed.strip()
    a = a.strip("*_`").strip()  # markdown emphasis around the answer
    a = a.rstrip(_TRAILING_PUNCT).strip()
    return a or None


_ANSWER_IS_START = re.compile(r"the\s+(?:final\s+)?answer\s+is", re.IGNORECASE)


def answer_is(text: str) -> str | None:
    """X from the last "The answer is X" (case-insensitive)."""
    # Match from each phrase start, last first: finditer's non-overlapping matches would let
    # an earlier unterminated "answer is ..." swallow a later "The answer is X".
    for start in reversed([m.start() for m in _ANSWER_IS_START.finditer(text)]):
        m = _ANSWER_IS.match(text, start)
        a = _clean(m.group(1)) if m else None
        if a is not None:
            return a
    return None


def hashes(text: str) -> str | None:
    """X from the last GSM8K-style "#### X" line."""
    for m in reversed(list(_HASHES.finditer(text))):
        a = _clean(m.group(1))
        if a is not None:
            return a
    return None


def last_boxed(text: str) -> str | None:
    r"""Contents of the last \boxed{...} with balanced braces, or None."""
    # One pass over the braces only: rescanning from each "\boxed{" is quadratic.
    best: tuple[int, int] | None = None
    stack: list[tuple[int, bool]] = []  # (content start, opened by \boxed)
    for m in _BRACES.finditer(text):
        tok = m.group(0)
        if tok == "}":
            if stack:
                start, boxed = stack.pop()
                if boxed and (best is None or start > best[0]):
                    best = (start, m.start())
        else:
            stack.append((m.end(), tok != "{"))
    return None if best is None else text[best[0] : best[1]]


def last_number(text: str) -> str | None:
    """The last number-looking token in the text (ints, decimals, 1,234 and a/b)."""
    found = _LAST_NUMBER.findall(text)
    return found[-1] if found else None


def extract_answer(text: str, *, last_number_fallback: bool = True) -> str | None:
    r"""The stated answer of a word-problem chain, after its last </think>: "The answer is X" >
    "#### X" > "Final answer: X" / an "Answer: X" line > \boxed{X} (boxes joined by "and" are
    one answer) > last number (optional). See tasks/extraction.py."""
    if not text or not text.strip():
        return None
    text = extraction.answer_region(text)
    for find in (answer_is, hashes, extraction.stated_answer):
        a = find(text)
        if a is not None:
            return a
    boxed = extraction.boxed_answer(text)
    if boxed is not None and boxed.strip():
        return _clean(boxed)
    if last_number_fallback:
        return last_number(text)
    return None


# The closing answer statement of a chain: "The answer is X.", "So the answer is (c) ...",
# "Therefore, the final answer is ...", a GSM8K "#### X" line.
_STATEMENT = re.compile(
    r"(?:(?:so|thus|therefore|hence),?\s+)?the\s+(?:final\s+)?answer\s+is(?![a-z])|####", re.IGNORECASE
)


def split_statement(text: str) -> tuple[str, str] | None:
    """(rationale, statement) of a chain, cut where its last answer statement starts.

    "3 + 4 = 7. The answer is 7." -> ("3 + 4 = 7.", "The answer is 7."). None when the text has no
    answer statement (e.g. a MATH chain whose answer is only in a \\boxed{}): it is all rationale.
    The rationale may be empty (a chain that only states its answer).
    """
    last = None
    for last in _STATEMENT.finditer(text):
        pass
    if last is None:
        return None
    return text[: last.start()].rstrip(), text[last.start() :].strip()


# --- numbers ----------------------------------------------------------------------------

_NUMBER = re.compile(
    r"""
    (?P<sign>[-+\u2212]?)\s*
    (?P<cur>[$\u00a3\u20ac]?)\s*
    (?P<sign2>[-+\u2212]?)
    (?P<body>
        \d+\s*/\s*\d+                       # simple fraction
      | \d{1,3}(?:,\d{3})+(?:\.\d+)?        # thousands separators
      | \d+(?:\.\d*)?
      | \.\d+
    )
    \s*(?P<pct>%?)
    (?P<unit>\s*[a-z][a-z'./\-]*(?:\s+[a-z][a-z'./\-]*)*)?  # "apples", "kg/horse"
    \s*\.?
    """,
    re.VERBOSE,
)
# Words that change the value rather than name a unit: "5 million" is not 5.
_MULTIPLIERS = {"hundred", "thousand", "million", "billion", "trillion", "k", "m", "bn", "e"}


@functools.lru_cache(maxsize=65536)
def parse_number(s: str) -> Fraction | None:
    """The exact value of a number-like answer ("$1,234", "50%", "9 apples", "-1/2"), or None."""
    if len(s) > _MAX_NUMBER_TEXT:
        return None
    m = _NUMBER.fullmatch(s.strip().lower())
    if m is None:
        return None
    if m["sign"] and m["sign2"]:
        return None
    unit = (m["unit"] or "").split()
    if unit and unit[0].rstrip(".") in _MULTIPLIERS:
        return None
    body = m["body"].replace(",", "").replace(" ", "")
    if sum(c.isdigit() for c in body) > MAX_DIGITS:
        return None
    if "/" in body:
        num, den = body.split("/")
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
    else:
        value = Fraction(body if not body.endswith(".") else body[:-1])
    # "%" is dropped like a unit: GSM-style golds write 50 for "50%".
    return -value if (m["sign"] or m["sign2"]) in ("-", "\u2212") else value


def format_number(value: Fraction) -> str:
    """The canonical string of an exact value (see the module docstring)."""
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    places = max(twos, fives)
    if den != 1 or places > _MAX_DECIMALS:
        return f"{value.numerator}/{value.denominator}"
    scaled = abs(value.numerator) * 10**places // value.denominator
    whole, frac = divmod(scaled, 10**places)
    sign = "-" if value < 0 else ""
    return f"{sign}{whole}.{str(frac).rjust(places, '0').rstrip('0')}"


def normalize_number(s: str) -> str | None:
    """Canonical string of a number-like answer, or None when it is not a number."""
    value = parse_number(s)
    return None if value is None else format_number(value)


# --- canonical forms and equivalence ------------------------------------------------------


def _normalize_text(s: str) -> str:
    """Lowercase, collapse whitespace, drop trailing periods and surrounding $...$."""
    prev = None
    while s != prev:  # to a fixed point, so canonical() is idempotent
        prev = s
        s = " ".join(s.split()).lower().rstrip(".")
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
            s = s[1:-1]
    return s


@functools.lru_cache(maxsize=65536)
def canonical(answer: str) -> str:
    """Numeric canonical form when the answer is a number, else normalized text."""
    num = normalize_number(answer)
    if num is not None:
        return num
    text = _normalize_text(answer)
    num = normalize_number(text)
    return text if num is None else num


REL_TOL = 1e-6


def equivalent(pred: str | None, gold: str) -> bool:
    """Whether pred states the gold answer. Non-integers are compared with REL_TOL.

    Two integers must match exactly: a slip of 1 in 12345678 is a wrong answer, not rounding.
    """
    if pred is None:
        return False
    if pred == gold:
        return True
    cp, cg = canonical(pred), canonical(gold)
    if cp == cg:
        return True
    a, b = parse_number(cp), parse_number(cg)
    if a is None and "frac" in pred:  # LaTeX fractions cost one regex: \frac{1}{2} vs 0.5
        a = _math_number(math_normalize(pred))
    if b is None and "frac" in gold:
        b = _math_number(math_normalize(gold))
    if a is None or b is None or (a.denominator == 1 and b.denominator == 1):
        return False
    return abs(a - b) <= Fraction(REL_TOL) * max(abs(a), abs(b))


def evaluate_expression(expr: str) -> Fraction | None:
    """The exact value of an arithmetic expression of numbers, + - * / and parentheses ("( 84.0 /
    2.0 )" -> 42), or None when it is anything else (names, calls, powers, division by zero, over
    200 characters). Walks the parsed syntax tree: never evals."""
    if len(expr) > 200:
        return None
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Fraction(str(node.value)) if isinstance(node.value, float) else Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if b == 0:
                raise ZeroDivisionError
            return a / b
        raise ValueError("not arithmetic")

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


class NumericAnswers(TaskDefaults):
    """student_input/extract/canonical/equivalent for tasks whose answers are numbers: the
    question as the student input, and this module's extraction and equivalence. A task with a
    `last_number_fallback` option (default on) can switch off reading the last number as the
    answer when no "The answer is" / "####" / \\boxed{} is found."""

    # FDD's teacher writes numeric word problems for these tasks (gsm8k, svamp, mawps, ...)
    problem_family: ClassVar[str | None] = "word"

    def student_input(self, example: Any) -> str:
        return example.question

    def extract(self, text: str) -> str | None:
        return extract_answer(text, last_number_fallback=getattr(self, "last_number_fallback", True))

    def canonical(self, answer: str) -> str:
        return canonical(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        return equivalent(pred, gold)


# --- MATH answers (LaTeX) -------------------------------------------------------------------
#
# Layered, cheapest first: string identity, normalised identity, exact numbers, structures
# (tuples, intervals, sets, matrices, lists) element by element, and only then sympy. The
# sympy step runs in a worker process with a hard time limit: sympy can hang or eat memory on
# model output (9^{9^{9^9}}), and signal-based timeouts only work on the main thread.

_MAX_MATH_TEXT = 2000  # longer "answers" are compared verbatim: normalising them is waste
_SYMPY_MAX_CHARS = 400  # MATH golds are under 160 characters; longer preds are not worth sympy
_MAX_DEPTH = 6  # structure nesting we recurse into; deeper is compared as text
_MAX_ITEMS = 64  # elements of a list/set/matrix we match pairwise

_BOXED_WRAP = re.compile(r"\\(?:boxed|fbox)\s*\{(.*)\}", re.DOTALL)
_LEFT_RIGHT = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])\.?")
_SPACING = re.compile(r"(?<!\\)\\[!,;: ]|\\q?quad(?![a-zA-Z])|\\displaystyle(?![a-zA-Z])|~")
_DEGREES = re.compile(r"\^\s*(?:\{\s*\\circ\s*\}|\\circ(?![a-zA-Z]))|\u00b0|\\degree(?![a-zA-Z])")
_TEXT_CMD = re.compile(r"\\(?:mbox|textrm|textnormal|textit|textbf|mathrm|mathit|textup)(?![a-zA-Z])")
_AND_OR = re.compile(r"\\text\{\s*(?:and|or)\s*\}|(?<![a-zA-Z\\])(?:and|or)(?![a-zA-Z])")
# A trailing unit: "5\text{ cm}", "3\text{ square feet}^2". The content must start with a space
# or have two letters, so "4\text{i}"-like symbols survive.
_TEXT_UNIT = re.compile(r"(?<=\S)\s*\\text\{(?:\s+[a-zA-Z][a-zA-Z ./']*|[a-zA-Z][a-zA-Z ./']+)\}(?:\^\{?[23]\}?)?$")
_WORD_UNIT = re.compile(r"^([-+]?[\d.,]*\d)\s+[a-zA-Z][a-zA-Z ]*(?:\^\{?[23]\}?|[\u00b2\u00b3])?$")  # "12 inches", "5 km²"
# Currency in front of a number: "£5", "\pounds 5", "€3.50" ("$" is dropped with math delimiters).
_CURRENCY = re.compile(r"^([-+]?)\s*(?:[\u00a3\u20ac\u00a5\u20b9]|\\pounds|\\euro|\\textsterling|\\yen)\s*(?=[\d.])")
_TEXT_WRAP = re.compile(r"\\text\{([^{}]*)\}")
_CHOICE = re.compile(r"\(([A-E])\)")
_ASSIGN = re.compile(r"([a-zA-Z]{1,2}(?:_\{?\w+\}?)?|\\[a-zA-Z]+|[a-zA-Z]\([^()=]*\))=(?!=)")
_ASSIGNED = re.compile(r"\s*\$?\s*([a-zA-Z])\s*=(?!=)")
_IN_PREFIX = re.compile(r"^[a-zA-Z]\\in(?![a-zA-Z])")
_FRAC_SHORT = (
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\frac\s*([^{\\\s])\s*([^{\\\s])"), r"\\frac{\1}{\2}"),  # \frac12
    (re.compile(r"\\frac\s*([^{\\\s])\s*\{"), r"\\frac{\1}{"),  # \frac1{x}
    (re.compile(r"\\frac\{([^{}]*)\}\s*([^{\\\s])"), r"\\frac{\1}{\2}"),  # \frac{1}2
    (re.compile(r"\\sqrt\s*(\[[^\]]*\])?\s*([^{\[\\\s])"), r"\\sqrt\1{\2}"),  # \sqrt2, \sqrt[3]2
)
# One spelling per relation: \le \ge \ne < > (">=", "\geqq", "≥" and "\gt" are the same relations).
# "!=" is "not equal" except after a number or a bracket, where "5!=120" is a factorial.
_RELATIONS = (
    (re.compile(r"\\leq(?:slant|q)?(?![a-zA-Z])|<=|\u2264|\u2266"), r"\\le"),
    (re.compile(r"\\geq(?:slant|q)?(?![a-zA-Z])|>=|\u2265|\u2267"), r"\\ge"),
    (re.compile(r"\\neq(?![a-zA-Z])|\u2260|(?<![\d)}\]!])!=(?!=)"), r"\\ne"),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"), (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
    (re.compile(r"\\varnothing(?![a-zA-Z])"), r"\\emptyset"))
_SINGLE_SCRIPT = re.compile(r"([\^_])\{([a-zA-Z0-9])\}")  # x^{2} -> x^2
_WHITESPACE = re.compile(r"(\\[a-zA-Z]+)?\s+(?=([a-zA-Z])?)")
_BARE_DECIMAL = re.compile(r"(?<![\d}a-zA-Z])\.(?=\d)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_BRACED_THOUSANDS = re.compile(r"\{(\d{1,3}(?:,\d{3})+)\}")
_BASE_BRACES = re.compile(r"(?<=\d)_\{(\d+)\}")  # not \log_{2002}


def _balanced(s: str) -> bool:
    """Whether the braces of s balance (so "{a}{b}" is not taken as one group)."""
    depth = 0
    for c in s:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _strip_whitespace(s: str) -> str:
    """Drop whitespace, except one space between a command and a letter (\\pi r is not \\pir)."""
    return _WHITESPACE.sub(lambda m: m[1] + " " if m[1] and m[2] else (m[1] or ""), s)


def _strip_assignment(s: str) -> str:
    """ "x=5" -> "5", also per element of "x=1,y=2"; equations like "x+y=1" are kept."""
    m = _ASSIGN.match(s)
    if m is not None and m.end() < len(s) and "=" not in s[m.end() :]:
        return s[m.end() :]
    parts = _split_top(s, ",")
    out = []
    for p in parts:
        m = _ASSIGN.match(p)
        if m is None or "=" in p[m.end() :] or m.end() == len(p):
            return s
        out.append(p[m.end() :])
    return ",".join(out)


def _normalize_once(s: str, strip_assignment: bool = True) -> str:
    s = s.strip()
    while (m := _BOXED_WRAP.fullmatch(s)) is not None and _balanced(m[1]):
        s = m[1].strip()
    s = s.replace("\\$", "").replace("$", "")
    s = _CURRENCY.sub(r"\1", s)
    if s.startswith("\\(") and s.endswith("\\)") or s.startswith("\\[") and s.endswith("\\]"):
        s = s[2:-2]
    s = _LEFT_RIGHT.sub("", s)
    s = _SPACING.sub(" ", s)
    s = s.replace("{,}", ",")
    s = _DEGREES.sub("", s).replace("\\%", "").replace("%", "")
    s = _TEXT_CMD.sub(r"\\text", s)
    s = _AND_OR.sub(",", s)
    s = _TEXT_UNIT.sub("", s.strip())
    if (m := _WORD_UNIT.fullmatch(s)) is not None:
        s = m[1]
    s = _TEXT_WRAP.sub(lambda m: m[1].strip(), s)  # \text{(A)} -> (A); units are gone by now
    for pattern, repl in (*_FRAC_SHORT, *_RELATIONS):
        s = pattern.sub(repl, s)
    s = _SINGLE_SCRIPT.sub(r"\1\2", s)
    s = _strip_whitespace(s)
    s = re.sub(r",{2,}", ",", s).strip(",;")
    if strip_assignment:
        s = _IN_PREFIX.sub("", s)
        s = _strip_assignment(s)
    if (m := _CHOICE.fullmatch(s)) is not None:
        s = m[1]
    s = _BARE_DECIMAL.sub("0.", s)
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    s = s.removeprefix("+")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    s = _BRACED_THOUSANDS.sub(lambda m: "{" + m[1].replace(",", "") + "}", s)  # \frac{3744}{2,598,960}
    s = _BASE_BRACES.sub(r"_\1", s)  # 1011_{2} -> 1011_2
    return s


@functools.lru_cache(maxsize=65536)
def math_normalize(answer: str, strip_assignment: bool = True) -> str:
    r"""Cheap string normal form of a LaTeX answer: "$x = \dfrac12$" -> "\frac{1}{2}".

    strip_assignment=False keeps "y =" and "x \in" (the equation layer needs to know them).
    """
    s = answer.strip()
    if len(s) > _MAX_MATH_TEXT:
        return s
    for _ in range(10):  # to a fixed point, so the function is idempotent
        prev, s = s, _normalize_once(s, strip_assignment)
        if s == prev:
            break
    return s


_DEC = r"\d+(?:\.\d*)?|\.\d+"
_PLAIN_NUM = re.compile(rf"([-+]?)({_DEC})")
_SLASH_NUM = re.compile(r"([-+]?)(\d+)/(\d+)|([-+]?)([1-9]\d*):([1-9]\d*)")  # 1/2; a ratio 5:6, not 05:00
_FRAC_NUM = re.compile(rf"([-+]?)\\frac\{{([-+]?)({_DEC})\}}\{{([-+]?)({_DEC})\}}")
_MIXED_NUM = re.compile(r"([-+]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}")  # 2\frac{1}{2} is 5/2 in MATH


def _signed(sign: str, value: Fraction) -> Fraction:
    return -value if sign == "-" else value


@functools.lru_cache(maxsize=65536)
def _math_number(s: str) -> Fraction | None:
    """The exact value of a normalised answer that is a plain number or simple fraction."""
    if len(s) > _MAX_NUMBER_TEXT or sum(c.isdigit() for c in s) > MAX_DIGITS:
        return None
    if (m := _PLAIN_NUM.fullmatch(s)) is not None:
        return _signed(m[1], Fraction(m[2].rstrip(".") or "0"))
    if (m := _SLASH_NUM.fullmatch(s)) is not None:
        sign, num, den = m[1] or m[4] or "", int(m[2] or m[5]), int(m[3] or m[6])
        return None if den == 0 else _signed(sign, Fraction(num, den))
    if (m := _FRAC_NUM.fullmatch(s)) is not None:
        num, den = Fraction(m[3].rstrip(".")), Fraction(m[5].rstrip("."))
        if den == 0:
            return None
        return _signed(m[1], _signed(m[2], Fraction(1)) * _signed(m[4], Fraction(1)) * num / den)
    if (m := _MIXED_NUM.fullmatch(s)) is not None:
        num, den = int(m[3]), int(m[4])
        if den == 0 or num >= den:  # 2\frac{3}{2} is a product, not a mixed number: leave to sympy
            return None
        return _signed(m[1], int(m[2]) + Fraction(num, den))
    return None


@functools.lru_cache(maxsize=65536)
def math_canonical(answer: str) -> str:
    """Grouping key for majority voting: the canonical number, else the normalised string.

    Equal keys imply math_equivalent (it compares these keys before anything costly).
    """
    s = math_normalize(answer)
    value = _math_number(s)
    return s if value is None else format_number(value)


def _numbers_close(a: Fraction, b: Fraction) -> bool:
    """Same rule as `equivalent`: integers exactly, anything else within REL_TOL."""
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    return abs(a - b) <= Fraction(REL_TOL) * max(abs(a), abs(b))


# --- structures ------------------------------------------------------------------------------

_OPEN, _CLOSE = "([{", ")]}"
_BASE_NUM = re.compile(r"([0-9A-Za-z]+)_(\d+)")


def _split_top(s: str, sep: str) -> list[str]:
    """Split s on sep where no bracket is open (intervals like [1,2) count as one bracket)."""
    parts, depth, start, i, n, k = [], 0, 0, 0, len(s), len(sep)
    while i < n:
        c = s[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i = i + k
            continue
        i += 1
    parts.append(s[start:])
    return parts


def _wrapped(s: str) -> bool:
    """Whether the first bracket of s closes at its last character."""
    depth = 0
    for i, c in enumerate(s):
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


_MATRIX = re.compile(r"\\begin\{([pbvBV]?matrix|array)\}(?:\{[lcr|]*\})?(.*)\\end\{\1\}", re.DOTALL)


def _structure(s: str) -> tuple[str, list[str]] | None:
    """(kind, elements) for a matrix, set, union, tuple/interval or bare list; None otherwise.

    Kinds: "matrix:RxC", "set", "union" and "list" are order-free or shape-checked; a bracket
    pair like "()" or "[)" is ordered and must match exactly (intervals keep their ends).
    """
    if len(s) > 2 and s[0] in "([" and s[-1] in ")]" and _MATRIX.fullmatch(s[1:-1]):
        s = s[1:-1]  # \left[ \begin{array}..\end{array} \right] (the \left/\right are gone)
    if (m := _MATRIX.fullmatch(s)) is not None:
        rows = [r for r in _split_top(m[2], "\\\\") if r]
        cells = [_split_top(r, "&") for r in rows]
        if not cells or len({len(r) for r in cells}) != 1:
            return None
        return f"matrix:{len(cells)}x{len(cells[0])}", [c for r in cells for c in r]
    if s.startswith("\\{") and s.endswith("\\}") and _wrapped(s[1:]):
        inner = s[2:-2]
        return "set", _split_top(inner, ",") if inner else []
    union = _split_top(s, "\\cup")
    if len(union) > 1:
        return "union", union
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _wrapped(s):
        items = _split_top(s[1:-1], ",")
        if len(items) >= 2:
            return s[0] + s[-1], items
    for sep in (",", ";"):  # "(-4,27);(2,11)": semicolons separate answers that hold commas
        items = _split_top(s, sep)
        if len(items) >= 2:
            return "list", items
    return None


def _match_unordered(a: list[str], b: list[str], same) -> bool:
    """Whether the elements pair up one to one (augmenting paths, so the answer is symmetric)."""
    if len(a) != len(b):
        return False
    if sorted(a) == sorted(b):
        return True
    owner: dict[int, int] = {}

    def place(i: int, seen: set[int]) -> bool:
        for j in range(len(b)):
            if j not in seen and same(a[i], b[j]):
                seen.add(j)
                if j not in owner or place(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(place(i, set()) for i in range(len(a)))


# --- a float pre-check -----------------------------------------------------------------------
#
# Most pairs that reach this point are wrong answers ("\sqrt{17}" vs "5"). A tiny evaluator for
# the common LaTeX subset settles those without sympy: both sides at three points (variables get
# fixed irrational-ish values). Different values => not equivalent. Equal values only send the
# pair on to sympy, so a bug here can cost speed or a wrong "no", never a wrong "yes"; the
# evaluator bails out (None) on anything it does not know, on complex values and on magnitudes
# where doubles lose the digits that matter.


class _Unsure(Exception):
    """The evaluator cannot decide this input."""


_FLOAT_LIMIT = 1e12  # beyond this, 53-bit doubles cannot tell 10^{20}+1 from 10^{20}
_POINTS = ((0.5371, 0.3119, 0.7207), (1.7313, 1.2291, 2.1157), (-0.8423, -1.3571, 0.4219))
_FLOAT_CMDS = {"\\cdot": "*", "\\times": "*", "\\div": "/"}


class _FloatEval:
    r"""Recursive descent over a normalised LaTeX string: + - * / ^ \frac \sqrt \pi, implicit products."""

    def __init__(self, s: str, point: tuple[Any, ...], names: list[str], imaginary: bool = False,
                 exact: bool = False) -> None:
        self.s, self.i, self.point, self.names = s, 0, point, names  # names: the variables, in order
        self.imaginary = imaginary  # i is the imaginary unit (answers like "-\frac{1}{13}-\frac{5}{13}i")
        self.exact = exact  # Fractions: integers, + - * / and integer powers only (no decimals, roots, pi, e)

    def run(self) -> float:
        value = self.expr()
        if self.i != len(self.s):
            raise _Unsure
        return value

    def peek(self) -> str:
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1
        return self.s[self.i] if self.i < len(self.s) else ""

    def command(self) -> str:
        m = re.compile(r"\\[a-zA-Z]+").match(self.s, self.i)
        return m[0] if m else ""

    def check(self, v: float) -> float:
        if self.exact:
            if isinstance(v, Fraction) and (v.numerator.bit_length() > 256 or v.denominator.bit_length() > 256):
                raise _Unsure
            return v
        if isinstance(v, complex) and not self.imaginary or v != v or abs(v) > _FLOAT_LIMIT:
            raise _Unsure
        return v

    def expr(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-") and self.peek():
            op = self.s[self.i]
            self.i += 1
            rhs = self.term()
            value = self.check(value + rhs if op == "+" else value - rhs)
        return value

    def term(self) -> float:
        value = self.unary()
        while True:
            c, cmd = self.peek(), self.command()
            op = _FLOAT_CMDS.get(cmd) or (c if c in "*/" and c else "")
            if op:
                self.i += len(cmd) if cmd in _FLOAT_CMDS else 1
                rhs = self.unary()
                if op == "/" and rhs == 0:
                    raise _Unsure
                value = self.check(value * rhs if op == "*" else value / rhs)
            elif c and (c.isalnum() or c in "({." or cmd in ("\\frac", "\\sqrt", "\\pi")):
                value = self.check(value * self.power())  # implicit product: 2\sqrt{3}, 3(x+1)
            else:
                return value

    def unary(self) -> float:
        if self.peek() in ("-", "+") and self.peek():
            sign = -1 if self.s[self.i] == "-" else 1
            self.i += 1
            return sign * self.unary()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == "^":
            self.i += 1
            if self.peek() == "{":
                exponent = self.group()
            elif self.peek().isdigit():  # x^23 is x^2 times 3 in LaTeX
                exponent = Fraction(int(self.s[self.i])) if self.exact else float(self.s[self.i])
                self.i += 1
            else:
                exponent = self.atom()
            if base < 0 and exponent != int(exponent) or base == 0 and exponent < 0 or abs(exponent) > 64:
                raise _Unsure
            if self.exact:
                if exponent.denominator != 1:
                    raise _Unsure
                return self.check(base ** int(exponent))
            return self.check(base**exponent)
        return base

    def group(self) -> float:
        close = {"{": "}", "(": ")", "[": "]"}[self.s[self.i]]
        self.i += 1
        value = self.expr()
        if self.peek() != close:
            raise _Unsure
        self.i += 1
        return value

    def atom(self) -> float:
        c, cmd = self.peek(), self.command()
        if c in ("{", "(", "[") and c:
            return self.group()
        if m := re.compile(r"\d+(?:\.\d*)?|\.\d+").match(self.s, self.i):
            if len(m[0]) > 15 or self.exact and "." in m[0]:
                raise _Unsure
            self.i = m.end()
            return Fraction(int(m[0])) if self.exact else float(m[0])
        if self.exact and cmd in ("\\pi", "\\sqrt"):
            raise _Unsure
        if cmd == "\\pi":
            self.i += 3
            return math.pi
        if cmd == "\\frac":
            self.i += 5
            if self.peek() != "{":
                raise _Unsure
            num = self.group()
            if self.peek() != "{":
                raise _Unsure
            den = self.group()
            if den == 0:
                raise _Unsure
            return self.check(num / den)
        if cmd == "\\sqrt":
            self.i += 5
            index = 2.0
            if self.peek() == "[":
                index = self.group()
            if self.peek() != "{" or index not in (2.0, 3.0, 4.0, 5.0):
                raise _Unsure
            radicand = self.group()
            if radicand < 0:
                if index % 2 == 0:
                    raise _Unsure
                return -((-radicand) ** (1 / index))
            return radicand ** (1 / index)
        if c == "i" and self.imaginary:
            self.i += 1
            return 1j  # type: ignore[return-value]
        if c.isalpha() and c not in "i":  # i as a variable: leave it to sympy
            self.i += 1
            if c == "e" and "e" not in self.names:
                if self.exact:
                    raise _Unsure
                return math.e
            k = self.names.index(c)
            return self.point[k] if k < len(self.point) else 0.9137 + 0.41 * k
        raise _Unsure


def _float_value(s: str, point: tuple[float, ...], names: list[str], imaginary: bool = False) -> float:
    return _FloatEval(s, point, names, imaginary).run()


_EXACT_POINTS = tuple(tuple(Fraction(n, d) for n, d in p) for p in (
    ((53, 97), (31, 101), (71, 103)), ((173, 101), (123, 97), (211, 107)), ((-84, 103), (-136, 97), (43, 109))))


def _exact_equal(a: str, b: str) -> bool | None:
    """Exact rational arithmetic on the +-*/^ subset: a verdict for constants ("\\frac{3^{10}\\cdot2-2^{11}}
    {3^{10}}" vs "\\frac{116050}{59049}") and, at three fixed rational points, for rational functions of
    variables (the same three-point rule the sympy worker applies); None outside the subset."""
    if len(a) > _SYMPY_MAX_CHARS or len(b) > _SYMPY_MAX_CHARS:
        return None
    names = sorted(set(re.findall(r"(?<![a-zA-Z])[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", " ", a + " " + b))))
    if "e" in names or "i" in names or len(names) > 3:
        return None
    try:
        for point in _EXACT_POINTS[: 3 if names else 1]:
            x = _FloatEval(a, point, names, exact=True).run()
            y = _FloatEval(b, point, names, exact=True).run()
            if x != y:
                return False
    except (_Unsure, ArithmeticError, ValueError, RecursionError, IndexError, TypeError):
        return None
    return True


def _float_differ(a: str, b: str) -> bool:
    """True when a and b surely differ in value (see above); False when unsure or equal."""
    if len(a) > _SYMPY_MAX_CHARS or len(b) > _SYMPY_MAX_CHARS:
        return False
    names = sorted(set(re.findall(r"(?<![a-zA-Z])[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", " ", a + " " + b))) - {"e"})
    has_e = bool(re.search(r"(?<![a-zA-Z\\])e(?![a-zA-Z])", a + b))
    if has_e and names:  # e next to variables may be a variable too
        return False
    imaginary = names == ["i"]  # complex numbers "a+bi": i is the only letter
    if imaginary:
        names = []
    try:
        for point in _POINTS[: 3 if names else 1]:
            x, y = _float_value(a, point, names, imaginary), _float_value(b, point, names, imaginary)
            if abs(x - y) > REL_TOL * max(abs(x), abs(y)) + 1e-12:
                return True
    except (_Unsure, ArithmeticError, ValueError, RecursionError, IndexError, TypeError):
        return False  # TypeError: an order comparison on a complex value (a root of one)
    return False


# --- the sympy step, in worker processes ------------------------------------------------------

SYMPY_TIMEOUT = 3.0  # seconds per check, for everything sympy does on it
_WORKER_STARTUP = 120.0  # importing sympy on a loaded machine; not counted against checks
_WORKER_MEMORY = 4 << 30  # address-space cap: 9^{9^9} raises MemoryError instead of swapping

# Not worth sympy: power towers of numbers (9^{9^{9^9}}, 9**9**9) and huge factorials only
# end in a timeout; base-n numerals ("3120_3") are read as plain integers by latex2sympy.
_ABSURD = re.compile(r"\d\s*(?:\^|\*\*)\s*\{?\s*[-+]?\d+\s*\}?\s*(?:\^|\*\*)|\d{4,}\s*!|\*\*|\d_\{?\w")
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")  # a word, not a product of symbols


@dataclasses.dataclass
class SympyStats:
    """Counters of the sympy step, shared by all threads (read them in benchmarks)."""

    calls: int = 0  # requests sent to a worker
    cache_hits: int = 0
    timeouts: int = 0  # requests killed at the time limit (the check returned False)
    errors: int = 0  # sympy could not parse or compare (the check returned False)
    skipped: int = 0  # too long or absurd, not attempted
    spawns: int = 0  # worker processes started

    def snapshot(self) -> dict[str, int]:
        return dataclasses.asdict(self)


SYMPY_STATS = SympyStats()
_STATS_LOCK = threading.Lock()


def _count(field: str) -> None:
    with _STATS_LOCK:
        setattr(SYMPY_STATS, field, getattr(SYMPY_STATS, field) + 1)


def _sympy_parse(latex: str) -> Any:
    """latex2sympy2 as math-verify calls it, with i read as the imaginary unit."""
    import sympy
    from latex2sympy2_extended import latex2sympy

    expr = latex2sympy(latex, normalization_config=None)
    if re.search(r"(?<![a-zA-Z\\])i(?![a-zA-Z])", latex) and hasattr(expr, "free_symbols"):
        expr = expr.subs({s: sympy.I for s in expr.free_symbols if getattr(s, "name", "") == "i"})
    return expr


def _sympy_close(x: Any, y: Any, has_float: bool) -> bool | None:
    """Numeric comparison of two closed-form numbers; None when they do not evaluate."""
    import sympy

    xv, yv = sympy.N(x, 30), sympy.N(y, 30)
    if not (xv.is_number and yv.is_number) or xv.has(sympy.nan, sympy.zoo) or yv.has(sympy.nan, sympy.zoo):
        return None
    scale = max(abs(xv), abs(yv))
    if not scale.is_finite:
        return bool(xv == yv)
    if has_float:  # a float in the answer is a rounding: REL_TOL, as for plain decimals
        return bool(abs(xv - yv) <= REL_TOL * scale)
    # Exact forms: evaluate the difference itself (sympy raises precision as needed), so that
    # 2^{100} and 2^{100}-2 differ even though they agree to 30 digits.
    diff = abs(sympy.N(x - y, 30))
    if not diff.is_number:
        return None
    return bool(diff <= 1e-20)


def _sympy_expr_equal(x: Any, y: Any) -> bool:
    """Whether two parsed sympy objects are the same answer (runs inside a worker)."""
    import sympy
    from sympy.core.relational import Relational

    if isinstance(x, Relational) != isinstance(y, Relational):
        # "y = 2x+3" states the expression 2x+3: compare the right-hand side.
        x, y = (x.rhs if isinstance(x, sympy.Eq) and x.lhs.is_Symbol else x,
                y.rhs if isinstance(y, sympy.Eq) and y.lhs.is_Symbol else y)
        if isinstance(x, Relational) or isinstance(y, Relational):
            return False
    if isinstance(x, Relational):
        if type(x) is not type(y):
            x, y = x.canonical, y.canonical
            if type(x) is not type(y):
                return False
        dx, dy = x.lhs - x.rhs, y.lhs - y.rhs
        if isinstance(x, sympy.Eq):  # the same line written either way round, or scaled
            ratio = sympy.simplify(dx / dy) if dy != 0 else None
            return ratio is not None and ratio.is_number and ratio != 0 and ratio.is_finite is not False
        return _sympy_expr_equal(dx, dy)
    if isinstance(x, sympy.MatrixBase) or isinstance(y, sympy.MatrixBase):
        if not (isinstance(x, sympy.MatrixBase) and isinstance(y, sympy.MatrixBase)) or x.shape != y.shape:
            return False
        return all(_sympy_expr_equal(a, b) for a, b in zip(x, y))
    if not (isinstance(x, sympy.Expr) and isinstance(y, sympy.Expr)):
        return bool(x == y)  # sets, intervals, tuples: structural equality only
    if x == y:
        return True
    has_float = bool(x.atoms(sympy.Float) or y.atoms(sympy.Float))
    symbols = x.free_symbols | y.free_symbols
    if not symbols:
        close = _sympy_close(x, y, has_float)
        if close is not None:
            return close
    else:
        # Evaluate at a few fixed irrational-ish points: unequal values prove inequality,
        # equal values at three points are taken as identity (polynomials, rational functions).
        ordered_symbols = sorted(symbols, key=lambda s: s.name)
        verdicts = []
        for point in (0.5371, 1.7313, -0.8423):
            values = {s: sympy.Float(point + 0.1 * k, 30) for k, s in enumerate(ordered_symbols)}
            verdicts.append(_sympy_close(x.subs(values), y.subs(values), has_float))
        if False in verdicts:
            return False
        if verdicts.count(True) >= 2:
            return True
    return bool(sympy.simplify(x - y) == 0)


def _sympy_equal(a: str, b: str) -> bool:
    """Whether two normalised LaTeX answers are symbolically equal (runs inside a worker)."""
    return _sympy_expr_equal(_sympy_parse(a), _sympy_parse(b))


def _worker_main(fd: int, parent: int) -> None:
    """Serve (a, b) -> ("ok", bool) | ("error", text) on socket fd until it closes or None arrives."""
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY, _WORKER_MEMORY))
    except (ImportError, ValueError, OSError):
        pass

    def orphan_watch() -> None:  # a worker stuck in sympy must not outlive its parent
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=orphan_watch, daemon=True).start()
    _sympy_equal("1", "1")  # import sympy and latex2sympy2 before saying ready
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", _sympy_equal(*request))
        except BaseException as e:
            reply = ("error", f"{type(e).__name__}: {str(e)[:200]}")
        conn.send(reply)


# The worker loads this file by path, not as tasks.checking: the tasks package __init__ imports
# every task, which a worker does not need (and which must not break it).
_WORKER_CMD = (
    "import sys, importlib.util as u; spec = u.spec_from_file_location('_checking_worker', sys.argv[1]); "
    "m = u.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m); "
    "m._worker_main(int(sys.argv[2]), int(sys.argv[3]))"
)


class _Worker:
    """One worker process and its socket; started at once, waited for on first use.

    A fresh interpreter (fork+exec, like multiprocessing's "spawn", so safe next to torch
    threads) that loads only this file: multiprocessing's spawn would also re-run the caller's
    __main__, which breaks for stdin/notebook callers and slows down heavy scripts.
    """

    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CMD, str(Path(__file__).resolve()), str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.ready = False
        _count("spawns")

    def call(self, request: tuple[str, str], timeout: float) -> tuple[str, Any] | None:
        """The worker's reply, or None if it did not answer within timeout (then it is dead)."""
        if not self.ready:
            if not self.conn.poll(_WORKER_STARTUP) or self.conn.recv() != "ready":
                raise RuntimeError("sympy worker did not start")
            self.ready = True
        self.conn.send(request)
        if self.conn.poll(max(timeout, 0.0)):
            return self.conn.recv()
        return None

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
                self.proc.wait(0.5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for end in (self.proc.terminate, self.proc.kill):
            if self.proc.poll() is None:
                end()
                try:
                    self.proc.wait(0.5)
                except subprocess.TimeoutExpired:
                    pass
        self.conn.close()


class SympyPool:
    """Long-lived sympy worker processes with a hard per-request time limit.

    Thread-safe: each request takes an idle worker (or starts one, up to `size`, or waits). A
    worker that misses the deadline is killed and replaced at once, so the replacement warms up
    while other checks run. Workers are fresh interpreters (see _Worker): safe next to torch threads.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = size or max(1, min(4, os.cpu_count() or 1))
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._warmed = False

    def _acquire(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise RuntimeError("SympyPool is closed")
            if len(self._all) < self.size:
                worker = _Worker()
                self._all.add(worker)
                return worker
        return self._idle.get()

    def _replace(self, worker: _Worker) -> None:
        worker.stop(kill=True)
        with self._lock:
            self._all.discard(worker)
            if self._closed:
                return
            fresh = _Worker()
            self._all.add(fresh)
        self._idle.put(fresh)

    def warm(self) -> None:
        """Start one worker now (it imports sympy while the caller goes on); once per pool."""
        if self._warmed:
            return
        with self._lock:
            if self._warmed or self._closed:
                return
            self._warmed = True
            if self._all:
                return
            worker = _Worker()
            self._all.add(worker)
        self._idle.put(worker)

    def compare(self, a: str, b: str, timeout: float) -> bool | None:
        """Whether sympy finds a == b; False on a parse error, None on a timeout."""
        worker = self._acquire()
        try:
            reply = worker.call((a, b), timeout)
        except BaseException:
            self._replace(worker)
            raise
        if reply is None:
            self._replace(worker)
            return None
        self._idle.put(worker)
        status, value = reply
        if status != "ok":
            _count("errors")
            return False
        return bool(value)

    def close(self) -> None:
        """Stop every worker (also registered with atexit for the default pool)."""
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.stop()


_POOL: SympyPool | None = None
_POOL_LOCK = threading.Lock()


def sympy_pool() -> SympyPool:
    """The shared pool, started on first use and stopped at interpreter exit."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SympyPool()
            atexit.register(_POOL.close)
        return _POOL


_SYMPY_CACHE: dict[tuple[str, str], bool] = {}
_SYMPY_CACHE_MAX = 65536


def _sympy_equivalent(a: str, b: str, deadline: float) -> bool:
    """The sympy layer: cached, skipped for absurd input, False on timeout."""
    key = (a, b) if a <= b else (b, a)  # the comparison is symmetric
    cached = _SYMPY_CACHE.get(key)
    if cached is not None:
        _count("cache_hits")
        return cached
    if (
        not a or not b or len(a) > _SYMPY_MAX_CHARS or len(b) > _SYMPY_MAX_CHARS
        or _ABSURD.search(a) or _ABSURD.search(b) or _WORD.search(a) or _WORD.search(b)
        or "\x00" in a or "\x00" in b or ":" in a or ":" in b
    ):
        _count("skipped")
        return False
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        _count("timeouts")
        return False
    _count("calls")
    result = sympy_pool().compare(a, b, remaining)
    if result is None:
        _count("timeouts")  # not cached: a later call with more time may succeed
        return False
    if len(_SYMPY_CACHE) >= _SYMPY_CACHE_MAX:
        _SYMPY_CACHE.clear()
    _SYMPY_CACHE[key] = result
    return result


# --- relations and sets of real numbers --------------------------------------------------------
#
# "y \ge 2", "2 \le y", "[2, \infty)" and "y \in [2,\infty)" are one answer. A relation in one
# variable (x < a, a \le x < b, |x| < a, x \ne a, "x < -1 or x > 3") and an interval, a union of
# intervals, \mathbb{R} or a finite set \{..\} all become one sorted list of disjoint intervals of
# the reals, compared endpoint by endpoint (exact numbers exactly, other constants as floats).
# Equations are not sets: "3x - 6y + 2 = 0" vs "y = \frac12x + \frac13" is decided by sympy.

_REL_OP = re.compile(r"\\(?:le|ge|ne)(?![a-zA-Z])|[<>=]")
_INEQUALITY = re.compile(r"\\(?:le|ge|ne)(?![a-zA-Z])|[<>]|\\in(?![a-zA-Z])")
_VAR = r"[a-zA-Z](?:_\{?\w+\}?)?"
_VARIABLE = re.compile(_VAR)
_ABS_VAR = re.compile(rf"\|({_VAR})\|")
_IN_SET = re.compile(rf"({_VAR})\\in(?![a-zA-Z])(.+)")
_REALS = ("\\mathbb{R}", "\\mathbbR", "\\R", "\\mathbb{R}^1")
_LOWER = {"<": ">", "\\le": "\\ge"}  # x op a with op here: x is below a
_Interval = tuple[float, bool, float, bool]  # (lo, lo closed, hi, hi closed)


def _relation(s: str) -> tuple[list[str], list[str]] | None:
    """(members, operators) of a top-level chain such as "-1\\le t<4"; None without one."""
    members: list[str] = []
    ops: list[str] = []
    depth = start = i = 0
    while i < len(s):
        c = s[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0 and (m := _REL_OP.match(s, i)) is not None:
            members.append(s[start:i].strip())
            ops.append(m[0])
            start = i = m.end()
            continue
        i += 1
    members.append(s[start:].strip())
    return (members, ops) if ops and all(members) else None


def _point(s: str) -> float | None:
    """The real value of an endpoint without variables (\\infty included), or None."""
    s = s.strip()
    if s in ("\\infty", "+\\infty", "\\infin"):
        return math.inf
    if s == "-\\infty":
        return -math.inf
    if (v := _math_number(s)) is not None:
        return float(v)
    try:
        return _float_value(s, (), [])
    except (_Unsure, ArithmeticError, ValueError, RecursionError, IndexError):
        return None


def _half(op: str, a: float, var_below: bool) -> list[_Interval]:
    """The set of x with x op a (var_below: x is on the left of op)."""
    if op == "\\ne":
        return [(-math.inf, False, a, False), (a, False, math.inf, False)]
    below = (op in _LOWER) == var_below  # x < a, x \le a, a > x, a \ge x
    closed = op in ("\\le", "\\ge")
    return [(-math.inf, False, a, closed)] if below else [(a, closed, math.inf, False)]


def _relation_set(s: str) -> tuple[str, list[_Interval]] | None:
    """(variable, set) of a relation in one variable, or None."""
    if (m := _IN_SET.fullmatch(s)) is not None:
        rest = _real_set(m[2])
        return None if rest is None else (m[1], rest)
    rel = _relation(s)
    if rel is None:
        return None
    members, ops = rel
    if "=" in ops:
        return None
    if len(ops) == 1:
        left, right = members
        for var_text, other, var_below in ((left, right, True), (right, left, False)):
            a = _point(other)
            if a is None or math.isinf(a):
                continue
            if _VARIABLE.fullmatch(var_text):
                return var_text, _half(ops[0], a, var_below)
            if (m := _ABS_VAR.fullmatch(var_text)) is not None and ops[0] != "\\ne" and a >= 0:
                inner = _half(ops[0], a, var_below)  # |x| < a: -a < x < a; |x| > a: the two outer rays
                if inner[0][0] == -math.inf:
                    return m[1], [(-a, inner[0][3], a, inner[0][3])]
                return m[1], [(-math.inf, False, -a, inner[0][1]), (a, inner[0][1], math.inf, False)]
        return None
    if len(ops) == 2 and _VARIABLE.fullmatch(members[1]) and "\\ne" not in ops:
        lo, hi = _point(members[0]), _point(members[2])
        if lo is None or hi is None:
            return None
        if ops[0] in _LOWER and ops[1] in _LOWER:  # a < x < b
            return members[1], [(lo, ops[0] == "\\le", hi, ops[1] == "\\le")]
        if ops[0] not in _LOWER and ops[1] not in _LOWER:  # b > x > a
            return members[1], [(hi, ops[1] == "\\ge", lo, ops[0] == "\\ge")]
    return None


def _merge(intervals: list[_Interval]) -> list[_Interval]:
    """Sorted disjoint intervals; touching pieces join when the touch point is in either."""
    out: list[_Interval] = []
    for lo, lc, hi, hc in sorted(intervals, key=lambda t: (t[0], not t[1])):
        if lo > hi or lo == hi and not (lc and hc):
            continue  # empty
        if out and (lo < out[-1][2] or lo == out[-1][2] and (lc or out[-1][3])):
            plo, plc, phi, phc = out[-1]
            out[-1] = (plo, plc, max(phi, hi), phc if phi > hi else hc if hi > phi else phc or hc)
        else:
            out.append((lo, lc, hi, hc))
    return out


def _real_set(s: str) -> list[_Interval] | None:
    """The set of reals an interval, union, \\mathbb{R}, \\emptyset or \\{a, b\\} stands for."""
    if s in _REALS:
        return [(-math.inf, False, math.inf, False)]
    if s in ("\\emptyset", "\\{\\}"):
        return []
    parts = _split_top(s, "\\cup")
    out: list[_Interval] = []
    for part in parts:
        if len(part) >= 2 and part[0] in "([" and part[-1] in ")]" and _wrapped(part):
            items = _split_top(part[1:-1], ",")
            ends = [_point(x) for x in items]
            if len(items) != 2 or None in ends:
                return None
            out.append((ends[0], part[0] == "[", ends[1], part[-1] == "]"))
        elif part.startswith("\\{") and part.endswith("\\}") and _wrapped(part[1:]):
            points = [_point(x) for x in _split_top(part[2:-2], ",")]
            if None in points:
                return None
            out += [(p, True, p, True) for p in points]
        elif part in _REALS:
            out.append((-math.inf, False, math.inf, False))
        else:
            return None
    return _merge(out)


def _set_of(s: str) -> tuple[str | None, list[_Interval]] | None:
    """(variable or None, set) of a relation, a list of relations in one variable, or a set."""
    if (rel := _relation_set(s)) is not None:
        return rel[0], _merge(rel[1])
    items = _split_top(s, ",")
    if len(items) == 2:  # "x<-1, x>3" ("or" and "and" are both commas by now)
        sets = [_relation_set(x) for x in items]
        if None not in sets and sets[0][0] == sets[1][0]:  # type: ignore[index]
            a, b = (_merge(x[1]) for x in sets)  # type: ignore[union-attr]
            meet = _intersect(a, b)
            # two rays that overlap were meant as "and" (1 < x, x < 3); disjoint ones as "or"
            return sets[0][0], meet if meet else _merge(a + b)  # type: ignore[index]
    real = _real_set(s)
    return None if real is None else (None, real)


def _intersect(a: list[_Interval], b: list[_Interval]) -> list[_Interval]:
    out = []
    for alo, alc, ahi, ahc in a:
        for blo, blc, bhi, bhc in b:
            lo, lc = max((alo, not alc), (blo, not blc))
            hi, hc = min((ahi, ahc), (bhi, bhc))
            out.append((lo, not lc, hi, hc))
    return _merge(out)


def _same_end(x: float, y: float) -> bool:
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))


def _sets_equal(a: list[_Interval], b: list[_Interval]) -> bool:
    return len(a) == len(b) and all(
        _same_end(p[0], q[0]) and _same_end(p[2], q[2])
        and (p[1] == q[1] or math.isinf(p[0])) and (p[3] == q[3] or math.isinf(p[2]))
        for p, q in zip(a, b)
    )


def _relations_equal(a: str, b: str) -> bool | None:
    """The verdict when either side is an inequality or a union/\\mathbb{R} and both are sets
    of reals; None when this layer cannot decide (other layers go on)."""
    if not (_INEQUALITY.search(a) or _INEQUALITY.search(b) or "\\cup" in a + b or "\\mathbb" in a + b):
        return None
    sa, sb = _set_of(a), _set_of(b)
    if sa is None or sb is None:
        return None
    if sa[0] is not None and sb[0] is not None and sa[0] != sb[0]:
        return False  # "x > 2" is not "y > 2"
    if sa[0] is None and sb[0] is None and "\\cup" not in a + b and "\\mathbb" not in a + b:
        return None  # two plain intervals: the structure layer compares them
    return _sets_equal(sa[1], sb[1])


def _is_inequality(s: str) -> bool:
    rel = _relation(s)
    return rel is not None and any(op != "=" for op in rel[1])


def _has_variable(s: str) -> bool:
    return _VARIABLE.search(re.sub(r"\\[a-zA-Z]+", " ", s)) is not None


def _is_equation(s: str) -> bool:
    """One top-level "=" between two non-empty members, not a list."""
    rel = _relation(s)
    return rel is not None and rel[1] == ["="] and len(_split_top(s, ",")) == 1


def _is_assignment(s: str) -> bool:
    """ "x=...", "f(x)=...": the left side names the thing the right side gives."""
    m = _ASSIGN.match(s)
    return m is not None and "=" not in s[m.end() :]



# --- equivalence -----------------------------------------------------------------------------


def _math_equal(a: str, b: str, deadline: float, depth: int) -> bool:
    """Equivalence of two normalised answers, cheapest layer first."""
    if a == b:
        return True
    x, y = _math_number(a), _math_number(b)
    if x is not None and y is not None:
        return _numbers_close(x, y)
    if depth == 0:
        sympy_pool().warm()  # the first pair that may need sympy starts its worker, without waiting
    if math_canonical(a) == math_canonical(b):
        return True
    if (relations := _relations_equal(a, b)) is not None:
        return relations
    if _is_inequality(a) != _is_inequality(b):
        return False  # "y < 6" vs "3": a relation is not a value (nor is it for math-verify)
    if ("=" in a) != ("=" in b) and depth < _MAX_DEPTH:
        # A predicted "5!=120" or "(b,c)=(-10,21)" against "120": the value stated last is the
        # answer. A gold "A = B" only when it is a computation ("0.56 = 56\%"): a gold equation
        # with variables ("5 = 3p + q") is not its right-hand side (as math-verify decides).
        members = _split_top(a if "=" in a else b, "=")
        if "=" in b and any(_has_variable(m) for m in members):
            return False
        last = members[-1]
        return bool(last) and (_math_equal(last, b, deadline, depth + 1) if "=" in a
                               else _math_equal(a, last, deadline, depth + 1))
    if (m := _BASE_NUM.fullmatch(a) or _BASE_NUM.fullmatch(b)) is not None:
        # A base-n numeral: the digits must match ("1011_2" vs "1011"); its value is not read.
        other = b if m.string == a else a
        o = _BASE_NUM.fullmatch(other)
        return m[1].lower() == (o[1] if o else other).lower() and (o is None or o[2] == m[2])
    if _WORD.search(a) and a.lower() == b.lower():  # text answers: "Monday" vs "monday"
        return True
    if depth < _MAX_DEPTH:
        sa, sb = _structure(a), _structure(b)
        if sa is not None or sb is not None:
            return _structures_equal(sa, sb, deadline, depth)
    if x is not None or y is not None:
        # A plain number against an expression: only sympy can tell (\sqrt{4} vs 2).
        other = b if x is not None else a
        if _math_number(other) is None and not re.search(r"[\\\d]", other):
            return False  # "5" vs "x": no number in sight
    if (exact := _exact_equal(a, b)) is not None:
        return exact
    if _float_differ(a, b):
        return False
    return _sympy_equivalent(a, b, deadline)


def _structures_equal(
    sa: tuple[str, list[str]] | None, sb: tuple[str, list[str]] | None, deadline: float, depth: int
) -> bool:
    """Element-wise comparison; tuples and intervals in order, sets and lists in any order."""
    if sa is None or sb is None:
        return False
    (ka, ia), (kb, ib) = sa, sb
    if len(ia) > _MAX_ITEMS or len(ib) > _MAX_ITEMS:
        return False

    def same(p: str, q: str) -> bool:
        return _math_equal(p, q, deadline, depth + 1)

    words = any(_WORD.search(x) for x in ia + ib)  # "Softball, Kickball, Picnic" is a ranking
    if ka == kb == "union" or {ka, kb} <= {"set", "list"} and not (words and ka == kb == "list"):
        return _match_unordered(ia, ib, same)
    if ka != kb and {ka, kb} != {"list", "()"}:  # "1,2" for "(1,2)" is read as the pair
        return False
    return len(ia) == len(ib) and all(same(p, q) for p, q in zip(ia, ib))


def math_equivalent(pred: str | None, gold: str, *, timeout: float | None = None, rounding: bool = False) -> bool:
    r"""Whether pred states the gold MATH answer ("\dfrac12" vs "0.5", "(1,2)" vs "(1, 2)").

    Not symmetric: a predicted equation "5 = 3p + q" states 3p + q, a gold one does not.
    rounding=True also accepts a decimal the model rounded (ROUNDING_RULE). Never takes much
    longer than `timeout` (default SYMPY_TIMEOUT) seconds: the sympy step runs in a worker
    process that is killed at the deadline, and then the answer is False.
    """
    if pred is None:
        return False
    if pred == gold:
        return True
    va, vb = _ASSIGNED.match(pred), _ASSIGNED.match(gold)
    if va and vb and va[1] != vb[1] and "," not in pred + gold:
        return False  # "y = \frac{3}{2}" is another line than "x = \frac{3}{2}"
    deadline = time.monotonic() + (SYMPY_TIMEOUT if timeout is None else timeout)
    if "=" in pred and "=" in gold:
        # Two equations, one not a plain assignment: the same solution set, checked by sympy
        # ("y = \frac12x + \frac13" vs "3x - 6y + 2 = 0").
        ka, kb = math_normalize(pred, False), math_normalize(gold, False)
        if _is_equation(ka) and _is_equation(kb) and not (_is_assignment(ka) and _is_assignment(kb)):
            return ka == kb or _sympy_equivalent(ka, kb, deadline)
    a, b = math_normalize(pred), math_normalize(gold)
    if a == b:
        return True
    if len(a) > _MAX_MATH_TEXT or len(b) > _MAX_MATH_TEXT:
        return False
    return _math_equal(a, b, deadline, 0) or _numbers_in_the_wild(pred, gold, a, b, rounding)


ROUNDING_RULE = (
    "a decimal with d >= 1 digits after the point and at least 2 significant digits matches a gold "
    "whose value rounds to it at d digits (|gold - pred| <= 0.5 * 10^-d)"
)
_DECIMAL_COMMA = re.compile(r"([-+]?\d+),(\d{1,2}|\d{4,})")  # "3,25"; "3,250" is a thousands separator
_ROUNDED = re.compile(r"[-+]?(\d*)\.(\d+)")


def _numbers_in_the_wild(pred: str, gold: str, a: str, b: str, rounding: bool) -> bool:
    """A decimal comma ("3,25" for 3.25), a percentage against its fraction ("50\%" for 0.5; the
    sign itself is dropped in normalisation, so "50\%" for 50 matched already), and, when asked,
    a rounded decimal (ROUNDING_RULE)."""
    p, g = _math_number(a), _math_number(b)
    if p is None and (m := _DECIMAL_COMMA.fullmatch(a)) is not None:
        p = _signed("-" if m[1].startswith("-") else "", Fraction(f"{m[1].lstrip('+-')}.{m[2]}"))
        if g is not None and _numbers_close(p, g):
            return True
    if p is not None and g is not None and ("%" in pred) != ("%" in gold):
        pct, other = (p, g) if "%" in pred else (g, p)
        if _numbers_close(pct / 100, other):
            return True
    if not rounding or p is None or (m := _ROUNDED.fullmatch(a)) is None:
        return False
    if len((m[1] + m[2]).lstrip("0")) < 2:
        return False
    value = float(g) if g is not None else _point(b)
    if value is None or math.isinf(value):
        return False
    return abs(value - float(p)) <= 0.5 * 10 ** -len(m[2]) + 1e-12 * max(1.0, abs(value))
