"""Near-duplicate questions: what keeps a generated (or imported) problem out of training when it
is a valid or test question in disguise.

Two texts are compared after `normalise` (NFKC, lower case, numbers in one spelling: "1,000.50"
-> "1000.5", "$3" -> "3"; punctuation other than arithmetic signs dropped; whitespace collapsed)
the Jaccard similarity of their character n-gram sets (`N` = 5 by default), among texts with the
same numbers. A near-duplicate is an exact duplicate after normalisation, or the same numbers
(as a multiset) in nearly the same words: Jaccard >= `THRESHOLD` (0.8), which a held-out word
problem keeps when a name is changed or a few words are reworded (a 300-character problem keeps
about 0.9 of its 5-grams). Numbers must agree because they are the problem: "calculate 12 + 7"
and "calculate 12 + 8" share 0.85 of their 5-grams but are different questions with different
answers, as are two problems of one gsm_symbolic template (a templated benchmark's train and
test splits share templates by construction).

`HeldOut` answers "which held-out question does this text nearly duplicate?" exactly (no
sampling), fast enough for a few thousand held-out questions against tens of thousands of
candidates: an inverted index over each set's rarest n-grams (prefix filtering: two sets with
Jaccard >= t share one of the first |A| - ceil(t |A|) + 1 n-grams of each, in any fixed order).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

N = 5
THRESHOLD = 0.8

_NUMBER = re.compile(r"(?<![\w.])[-+]?\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?|\$?\d+(?:\.\d+)?")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_NOISE = re.compile(r"[^\w+\-*/=<>^%.]+")


def _number(m: re.Match[str]) -> str:
    text = m[0].replace(",", "").replace("$", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    sign = text[0] if text[0] in "+-" else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    if digits.startswith("."):
        digits = "0" + digits
    return sign + digits


def normalise(text: str) -> str:
    """The comparison form of a question (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NUMBER.sub(_number, text)
    text = _NOISE.sub(" ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # a full stop, not a decimal point
    return " ".join(text.split())


def shingles(text: str, n: int = N) -> frozenset[str]:
    """The character n-grams of the normalised text (the whole text when shorter than n)."""
    t = normalise(text)
    if len(t) <= n:
        return frozenset([t])
    return frozenset(t[i : i + n] for i in range(len(t) - n + 1))


def numbers(text: str) -> tuple[str, ...]:
    """The numbers of the normalised text, sorted (a multiset)."""
    return tuple(sorted(_DIGITS.findall(normalise(text))))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Match:
    index: int  # position of the held-out question matched
    similarity: float  # Jaccard of the n-gram sets; 1.0 for an exact duplicate after normalisation
    exact: bool


class HeldOut:
    """An index of held-out questions (valid and test) to check candidates against."""

    def __init__(self, texts: Sequence[str], threshold: float = THRESHOLD, n: int = N) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold, self.n = threshold, n
        self.texts = list(texts)
        self.exact = {normalise(t): i for i, t in reversed(list(enumerate(self.texts)))}
        self.sets = [shingles(t, n) for t in self.texts]
        self.numbers = [numbers(t) for t in self.texts]
        freq = Counter(g for s in self.sets for g in s)
        self._rank = {g: (c, g) for g, c in freq.items()}
        self.index: dict[str, list[int]] = {}
        for i, s in enumerate(self.sets):
            for g in self._prefix(s):
                self.index.setdefault(g, []).append(i)

    def _order(self, s: frozenset[str]) -> list[str]:
        # rarest first; an n-gram no held-out set has sorts first and can never be shared
        return sorted(s, key=lambda g: self._rank.get(g, (0, g)))

    def _prefix(self, s: frozenset[str]) -> list[str]:
        return self._order(s)[: len(s) - math.ceil(self.threshold * len(s)) + 1]

    def match(self, text: str) -> Match | None:
        """The most similar held-out question at or above the threshold, or None."""
        if (i := self.exact.get(normalise(text))) is not None:
            return Match(i, 1.0, True)
        a, nums = shingles(text, self.n), numbers(text)
        lo, hi = self.threshold * len(a), len(a) / self.threshold
        best: Match | None = None
        for i in {i for g in self._prefix(a) for i in self.index.get(g, ())}:
            b = self.sets[i]
            if not lo <= len(b) <= hi or self.numbers[i] != nums:
                continue
            sim = jaccard(a, b)
            if sim >= self.threshold and (best is None or sim > best.similarity or (sim == best.similarity and i < best.index)):
                best = Match(i, sim, False)
        return best
