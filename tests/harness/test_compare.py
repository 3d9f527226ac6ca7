"""Paired comparison: McNemar's exact test by hand, the paired bootstrap's properties."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from harness.compare import compare, mcnemar_exact
from harness.errors import UserError


def test_mcnemar_hand_computed() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(5, 5) == 1.0


@pytest.mark.parametrize("b, c", [(3, 17), (10, 12), (0, 1), (40, 20)])
def test_mcnemar_equals_scipy_exact_binomial(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue)


def test_identical_runs_differ_by_nothing() -> None:
    a = {f"e{i}": i % 3 == 0 for i in range(50)}
    c = compare(a, dict(a), n_resamples=500)
    assert (c.diff, c.lo, c.hi, c.p_bootstrap, c.p_mcnemar) == (0.0, 0.0, 0.0, 1.0, 1.0)


def test_a_clear_difference_is_significant_and_its_interval_excludes_zero() -> None:
    a = {f"e{i}": i < 30 for i in range(200)}  # 15%
    b = {f"e{i}": i < 90 for i in range(200)}  # 45%, right wherever a is
    c = compare(a, b, n_resamples=2000)
    assert c.diff == pytest.approx(0.30) and c.only_a == 0 and c.only_b == 60
    assert 0 < c.lo < c.diff < c.hi
    assert c.p_bootstrap < 0.001 and c.p_mcnemar < 1e-15


def test_swapping_runs_negates_the_difference() -> None:
    a = {f"e{i}": i % 2 == 0 for i in range(100)}
    b = {f"e{i}": i % 3 == 0 for i in range(100)}
    ab, ba = compare(a, b, 1000, seed=1), compare(b, a, 1000, seed=1)
    assert ab.diff == -ba.diff and ab.p_mcnemar == ba.p_mcnemar
    assert ab.lo == pytest.approx(-ba.hi) and ab.hi == pytest.approx(-ba.lo)
    assert math.isclose(ab.p_bootstrap, ba.p_bootstrap)


def test_different_example_sets_are_refused() -> None:
    with pytest.raises(UserError, match="different examples"):
        compare({"a": True}, {"b": True})
