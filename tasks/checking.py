"""Answer extraction and equivalence shared by all tasks.

Everything here reads untrusted model output: no eval, exact arithmetic with Fraction, and
hard size limits so a pathological string costs microseconds, not minutes.

Canonical number format (one string per rational value):
  integers        -> "12", "-4"
  terminating     -> shortest decimal, "0.5", "-2.25" (so "1/2" and "0.5" agree)
  non-terminating -> reduced fraction, "1/3"
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Any

MAX_DIGITS = 100  # longer numbers are not answers, and Fraction on them is not free
_MAX_NUMBER_TEXT = 300  # cheap length cut before any regex runs
_MAX_DECIMALS = 20  # past this a terminating decimal is less readable than the fraction

# --- extraction -------------------------------------------------------------------------

# Lazy body up to a sentence end: a period followed by space/end (not a decimal point),
# a newline, or the end of the text.
_ANSWER_IS = re.compile(
    r"the\s+(?:final\s+)?answer\s+is\s*:?\s*(.+?)\s*(?:\.(?=\s|$)|\n|$)", re.IGNORECASE
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


def answer_is(text: str) -> str | None:
    """X from the last "The answer is X" (case-insensitive)."""
    for m in reversed(list(_ANSWER_IS.finditer(text))):
        a = _clean(m.group(1))
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
    r"""The stated answer: "The answer is X" > "#### X" > \boxed{X} > last number (optional)."""
    if not text or not text.strip():
        return None
    for find in (answer_is, hashes):
        a = find(text)
        if a is not None:
            return a
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return _clean(boxed)
    if last_number_fallback:
        return last_number(text)
    return None


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
    if a is None or b is None or (a.denominator == 1 and b.denominator == 1):
        return False
    return abs(a - b) <= Fraction(REL_TOL) * max(abs(a), abs(b))


class NumericAnswers:
    """student_input/extract/canonical/equivalent for tasks whose answers are numbers: the
    question as the student input, and this module's extraction and equivalence."""

    def student_input(self, example: Any) -> str:
        return example.question

    def extract(self, text: str) -> str | None:
        return extract_answer(text)

    def canonical(self, answer: str) -> str:
        return canonical(answer)

    def equivalent(self, pred: str | None, gold: str) -> bool:
        return equivalent(pred, gold)
