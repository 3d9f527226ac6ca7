"""Tests for harness.scoring: accuracy, bootstrap CI, most-frequent baseline, Score."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.scoring import Score, accuracy, bootstrap_ci, most_frequent_baseline, score


def test_accuracy_hand_computed() -> None:
    assert accuracy([True, False, True, True]) == 0.75
    assert accuracy([False]) == 0.0
    assert math.isnan(accuracy([]))


def test_none_is_rejected() -> None:
    with pytest.raises(ValueError, match="None"):
        accuracy([True, None])  # type: ignore[list-item]


def test_bootstrap_empty_is_nan() -> None:
    lo, hi = bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)


def test_bootstrap_constant_input_is_a_point() -> None:
    assert bootstrap_ci([True] * 7) == (1.0, 1.0)
    assert bootstrap_ci([False] * 7) == (0.0, 0.0)


def test_bootstrap_bad_arguments() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([True], alpha=0)
    with pytest.raises(ValueError):
        bootstrap_ci([True], n_resamples=0)


def test_bootstrap_matches_normal_approximation() -> None:
    # p = 0.5, n = 400: the 95% interval is about 0.5 +- 1.96 * 0.025 = [0.451, 0.549].
    lo, hi = bootstrap_ci([True, False] * 200)
    assert lo == pytest.approx(0.451, abs=0.01)
    assert hi == pytest.approx(0.549, abs=0.01)


def test_bootstrap_chunked_path_equals_an_unchunked_reference(monkeypatch) -> None:
    """Resampling in chunks (bounded memory) draws exactly the resamples of one big index matrix."""
    import numpy as np

    import harness.scoring as scoring

    x = np.array([i % 3 == 0 for i in range(101)], dtype=np.float64)
    rng = np.random.default_rng(7)
    reference = x[rng.integers(0, x.size, size=(1000, x.size))].sum(axis=1) / x.size  # one matrix
    monkeypatch.setattr(scoring, "_MAX_CELLS", x.size * 7)  # 7 resamples per chunk: 143 chunks
    chunked = scoring.bootstrap_means(x, 1000, 7)
    assert np.array_equal(chunked, reference)
    lo, hi = np.quantile(reference, [0.025, 0.975])
    assert bootstrap_ci(list(x.astype(bool)), n_resamples=1000, seed=7) == (float(lo), float(hi))
    monkeypatch.setattr(scoring, "_MAX_CELLS", 10**9)  # one chunk
    assert np.array_equal(scoring.bootstrap_means(x, 1000, 7), reference)


def test_bootstrap_large_input_is_chunked_and_deterministic() -> None:
    data = [i % 3 == 0 for i in range(30_000)]
    assert bootstrap_ci(data, n_resamples=300) == bootstrap_ci(data, n_resamples=300)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300), st.integers(0, 2**32 - 1))
def test_bootstrap_contains_mean_and_is_deterministic(correct: list[bool], seed: int) -> None:
    lo, hi = bootstrap_ci(correct, seed=seed)
    assert lo <= accuracy(correct) <= hi
    assert 0.0 <= lo <= hi <= 1.0
    assert bootstrap_ci(correct, seed=seed) == (lo, hi)


def test_bootstrap_seed_matters() -> None:
    data = [True, False, False] * 30
    assert bootstrap_ci(data, seed=1) != bootstrap_ci(data, seed=2)


@given(st.integers(1, 4))
def test_bootstrap_narrows_with_n(pattern: int) -> None:
    # Same accuracy, 16x more items -> roughly 4x narrower; ask only for clearly narrower.
    base = [True] * pattern + [False] * 3
    lo_s, hi_s = bootstrap_ci(base * 10)
    lo_l, hi_l = bootstrap_ci(base * 160)
    assert hi_l - lo_l < 0.5 * (hi_s - lo_s)


def test_most_frequent_baseline_example() -> None:
    train = ["0.5", "3", "1/2", "3", "7"]
    test = ["2/4", "3", "1/2", "9"]

    def key(a: str) -> str:
        return str(Fraction(a))

    # "0.5" and "1/2" are one canonical answer (2 votes), tied with "3"; 1/2 appears first.
    assert most_frequent_baseline(train, test, key) == ("1/2", 0.5)
    # Without the key "3" is the unique most frequent string.
    assert most_frequent_baseline(train, test) == ("3", 0.25)


def test_most_frequent_baseline_edge_cases() -> None:
    answer, acc = most_frequent_baseline(["a"], [])
    assert answer == "a" and math.isnan(acc)
    with pytest.raises(ValueError):
        most_frequent_baseline([], ["a"])


def test_score() -> None:
    s = score([True, True, False, True])
    assert isinstance(s, Score)
    assert (s.acc, s.n) == (0.75, 4)
    assert s.lo <= s.acc <= s.hi
    assert (s.lo, s.hi) == bootstrap_ci([True, True, False, True])
