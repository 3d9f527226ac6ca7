"""Accuracy, bootstrap confidence intervals and the most-frequent-answer baseline."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Bound the (resamples x n) index matrix so large test sets don't need gigabytes.
_MAX_CELLS = 4_000_000


def _as_array(correct: Sequence[bool]) -> np.ndarray:
    # Unknown correctness must be resolved by the caller; silently counting it as wrong (or
    # as NaN) would skew every number downstream.
    if any(c is None for c in correct):
        raise ValueError("correct contains None; decide how unknown results count first")
    return np.asarray(correct, dtype=np.float64).reshape(-1)


def accuracy(correct: Sequence[bool]) -> float:
    """Fraction of True; nan for an empty input."""
    x = _as_array(correct)
    return float(x.sum() / x.size) if x.size else math.nan


def bootstrap_means(x: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples] means of x resampled with replacement (x non-empty); deterministic per seed."""
    n = x.size
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_CELLS // n)
    means = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        # sum / n (not .mean) matches accuracy() bit for bit, so a constant input gives
        # lo == hi == accuracy exactly.
        means[start:stop] = x[idx].sum(axis=1) / n
    return means


def bootstrap_ci(
    correct: Sequence[bool], n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) interval of the mean; (nan, nan) for an empty input.

    Deterministic for a given seed and input.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    x = _as_array(correct)
    n = x.size
    if n == 0:
        return math.nan, math.nan
    means = bootstrap_means(x, n_resamples, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def most_frequent_baseline(
    train_answers: Sequence[str],
    test_golds: Sequence[str],
    key: Callable[[str], str] | None = None,
) -> tuple[str, float]:
    """(most frequent canonical train answer, its accuracy on the test golds).

    Ties go to the answer seen first in train; test golds match when their key is equal.
    Test accuracy is nan when there are no test golds.
    """
    if not train_answers:
        raise ValueError("most_frequent_baseline needs at least one train answer")
    canon = key if key is not None else (lambda a: a)
    counts: dict[str, int] = {}  # insertion order = first appearance, used for ties
    for a in train_answers:
        k = canon(a)
        counts[k] = counts.get(k, 0) + 1
    best = max(counts, key=counts.__getitem__)  # max keeps the first of equal counts
    return best, accuracy([canon(g) == best for g in test_golds])


@dataclass(frozen=True)
class Score:
    """Accuracy with its bootstrap interval over n items."""

    acc: float
    lo: float
    hi: float
    n: int


def score(
    correct: Sequence[bool], n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Score:
    """Accuracy plus percentile-bootstrap interval of `correct`."""
    lo, hi = bootstrap_ci(correct, n_resamples=n_resamples, alpha=alpha, seed=seed)
    return Score(acc=accuracy(correct), lo=lo, hi=hi, n=len(correct))
