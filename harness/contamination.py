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
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # datasketch takes 2 s to import (scipy): only the contamination check loads it
    from datasketch import MinHash

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


# --- the contamination check over whole sets -------------------------------------------------------
#
# HeldOut above answers one candidate at a time; the grid's contamination check compares whole sets
# (8,000 train questions, 60,000 teacher chains) with the valid and test questions.
#
# - Question against question (`near_duplicates`): candidate pairs from MinHash LSH (datasketch),
#   each verified with the true Jaccard of the two n-gram sets, so a reported pair is never an LSH
#   false positive; the only approximation left is a missed pair (measured against brute force in
#   the tests). Near = Jaccard >= THRESHOLD (0.8) with the same numbers, as HeldOut (problems that
#   differ in a number have different answers: a template shared by train and test is not a leaked
#   test question); exact = equal normal forms, counted separately.
# - n-grams: `char` 5-grams of the normal form (as HeldOut: robust to a renamed person, a changed
#   word, other spacing or punctuation) or `word` 3-grams.
# - MinHash: NUM_PERM = 128 permutations, seed SEED, n-grams hashed with zlib.crc32 (the same in
#   every process, unlike hash(); 3x faster than datasketch's default sha1 on 1M n-grams), so the
#   same inputs give the same pairs on every run. LSH bands: for a threshold t, the most rows per
#   band r (b = NUM_PERM // r bands) that still make a pair at exactly t a candidate with
#   probability >= RECALL (0.995); more similar pairs more surely (t = 0.8: r = 6, b = 21; a pair at
#   J = 0.85 is a candidate with probability 0.9998).
# - Chain against question (`contained`): a chain is much longer than a question, so their Jaccard
#   says nothing; what counts is the share of the question's n-grams found in the chain (its
#   containment) >= CONTAINMENT (0.8), with every number of the question in the chain; exact = the
#   question's normal form is a substring of the chain's. This search is exact, by prefix filtering
#   over the questions' rarest n-grams as HeldOut (a chain holding >= c of a question's n-grams holds
#   one of its first |Q| - c + 1; rarest in the chains first): datasketch's LSH Ensemble, the MinHash index for containment,
#   took 25 s to index 8,000 one-line demo chains here (16 LSH tables per partition), the exact
#   index a fraction of a second.

NUM_PERM = 128
SEED = 1
RECALL = 0.995
CONTAINMENT = 0.8
# questions shorter than this (normal form) are not searched inside chains: "compute cos 180"
# turns up in long chains by coincidence (47 of the 79 MATH test questions TDG's chains "held")
MIN_CONTAINED_CHARS = 60
ORDER_SAMPLE = 2000  # chains whose n-gram frequencies order the containment index
KINDS = {"char": N, "word": 3}  # n-gram kind -> n

Texts = Sequence[tuple[str, str]]  # (id, text)


def grams(text: str, kind: str = "char") -> frozenset[str]:
    """The n-grams of the normalised text: character 5-grams (`char`) or word 3-grams (`word`);
    the whole normal form when it is shorter than one n-gram."""
    _check_kind(kind)
    return grams_of_normal(normalise(text), kind)


def grams_of_normal(t: str, kind: str = "char") -> frozenset[str]:
    """`grams` of a text already in its normal form (one `normalise` per text, not two)."""
    if kind == "char":
        n = KINDS["char"]
        return frozenset([t]) if len(t) <= n else frozenset(t[i : i + n] for i in range(len(t) - n + 1))
    words, n = t.split(), KINDS["word"]
    if len(words) <= n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"n-gram kind must be one of {sorted(KINDS)}, got {kind!r}")


def containment(query: frozenset[str], within: frozenset[str]) -> float:
    """The share of `query`'s n-grams that are in `within` (1.0 for an empty query)."""
    return len(query & within) / len(query) if query else 1.0


def lsh_bands(threshold: float, num_perm: int = NUM_PERM, recall: float = RECALL) -> tuple[int, int]:
    """(bands, rows): the most rows per band that keep P(candidate | Jaccard = threshold) >= recall."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b >= recall:
            best = (b, r)
    return best


def _crc32(data: bytes) -> int:
    return zlib.crc32(data)


def minhashes(sets: Sequence[frozenset[str]], num_perm: int = NUM_PERM, seed: int = SEED) -> list[MinHash]:
    """One MinHash per n-gram set (datasketch; sorted first, so set order never matters)."""
    from datasketch import MinHash

    return MinHash.bulk([[g.encode() for g in sorted(s)] for s in sets], num_perm=num_perm, seed=seed, hashfunc=_crc32)


@dataclass(frozen=True)
class Pair:
    """A training-side text (question or chain) that duplicates a held-out question."""

    source: str  # id of the training-side text (an example id; a chain: "<example id>#<i>")
    target: str  # id of the held-out question
    similarity: float  # Jaccard (question pairs) or containment (chain pairs); 1.0 when exact
    exact: bool
    source_text: str
    target_text: str

    def to_dict(self, width: int = 300) -> dict[str, Any]:
        """The pair for a report, both texts cut to `width` characters."""
        return {"source": self.source, "target": self.target, "similarity": round(self.similarity, 4), "exact": self.exact,
                "source_text": self.source_text[:width], "target_text": self.target_text[:width]}


def _pairs(found: list[tuple[int, int, float, bool]], sources: Texts, targets: Texts) -> list[Pair]:
    out = [Pair(sources[i][0], targets[j][0], sim, exact, sources[i][1], targets[j][1]) for i, j, sim, exact in found]
    return sorted(out, key=lambda p: (p.target, p.source))


def near_duplicates(sources: Texts, targets: Texts, threshold: float = THRESHOLD, kind: str = "char",
                    num_perm: int = NUM_PERM, seed: int = SEED) -> list[Pair]:
    """Every (source, target) pair of questions equal after `normalise` (exact), or with the same
    numbers and an n-gram Jaccard >= threshold (near; MinHash LSH candidates, verified exactly)."""
    from datasketch import MinHashLSH

    bands = lsh_bands(threshold, num_perm)  # checks the threshold, with no data too
    _check_kind(kind)
    exact_of: dict[str, list[int]] = {}
    for j, (_, t) in enumerate(targets):
        exact_of.setdefault(normalise(t), []).append(j)
    found = [(i, j, 1.0, True) for i, (_, s) in enumerate(sources) for j in exact_of.get(normalise(s), ())]
    if not sources or not targets:
        return _pairs(found, sources, targets)
    done = {(i, j) for i, j, _, _ in found}
    t_sets, s_sets = [grams(t, kind) for _, t in targets], [grams(s, kind) for _, s in sources]
    t_nums, s_nums = [numbers(t) for _, t in targets], [numbers(s) for _, s in sources]
    lsh = MinHashLSH(num_perm=num_perm, params=bands)
    for j, m in enumerate(minhashes(t_sets, num_perm, seed)):
        lsh.insert(j, m)
    for i, m in enumerate(minhashes(s_sets, num_perm, seed)):
        for j in lsh.query(m):
            if (i, j) not in done and s_nums[i] == t_nums[j] and (sim := jaccard(s_sets[i], t_sets[j])) >= threshold:
                found.append((i, j, sim, False))
    return _pairs(found, sources, targets)


def contained(chains: Texts, targets: Texts, threshold: float = CONTAINMENT, kind: str = "char",
              min_chars: int = MIN_CONTAINED_CHARS) -> list[Pair]:
    """Every (chain, target question) pair where the chain holds the question: its normal form as a
    substring (exact), or >= threshold of its n-grams and every one of its numbers (near); only
    questions of at least `min_chars` normalised characters. Exact search (see the notes above)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"containment threshold must be in (0, 1], got {threshold}")
    _check_kind(kind)
    t_norm = [normalise(t) for _, t in targets]
    t_sets = [grams_of_normal(t, kind) for t in t_norm]
    t_nums = [Counter(_DIGITS.findall(t)) for t in t_norm]
    c_norm = [normalise(c) for _, c in chains]
    c_sets = [grams_of_normal(c, kind) for c in c_norm]
    # any fixed order of n-grams keeps the prefix filter exact; rarest *in chains* first keeps the
    # prefixes out of the chains' common phrases (rarest among the questions alone: 10x more
    # candidates per chain on TDG's MATH chains). Chain frequencies from an evenly spaced sample.
    step = max(1, len(c_sets) // ORDER_SAMPLE)
    in_chains = Counter(g for s in c_sets[::step] for g in s)
    in_questions = Counter(g for s in t_sets for g in s)
    index: dict[str, list[int]] = {}
    for j, s in enumerate(t_sets):  # a chain that holds >= c of a question's n-grams holds one of its first |s| - c + 1
        if len(t_norm[j]) < min_chars:
            continue
        for g in sorted(s, key=lambda g: (in_chains[g], in_questions[g], g))[: len(s) - math.ceil(threshold * len(s)) + 1]:
            index.setdefault(g, []).append(j)
    found: list[tuple[int, int, float, bool]] = []
    for i, c_set in enumerate(c_sets):
        c_nums: Counter[str] | None = None
        for j in sorted({j for g in c_set for j in index.get(g, ())}):
            if t_norm[j] and t_norm[j] in c_norm[i]:
                found.append((i, j, 1.0, True))
            elif (sim := containment(t_sets[j], c_set)) >= threshold:  # the cheap test first, numbers after
                c_nums = c_nums if c_nums is not None else Counter(_DIGITS.findall(c_norm[i]))
                if not t_nums[j] - c_nums:
                    found.append((i, j, sim, False))
    return _pairs(found, chains, targets)


def summary(pairs: Sequence[Pair], n_targets: int) -> dict[str, float]:
    """Held-out questions with an exact duplicate, with only a near one, and their share of all."""
    exact = {p.target for p in pairs if p.exact}
    near = {p.target for p in pairs} - exact
    return {"exact": len(exact), "near": len(near), "share": (len(exact) + len(near)) / n_targets if n_targets else 0.0}
