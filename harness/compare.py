"""Is a difference between two runs real? Paired tests on the same test examples.

* paired bootstrap (Koehn 2004; Berg-Kirkpatrick et al. 2012): resample examples with
  replacement, recompute the accuracy difference; the 95% interval is the percentile interval of
  the resampled differences, and the two-sided p-value is the share of resampled differences at
  least as far from the observed one as the observed one is from 0 (the shifted-null form:
  ``mean(|d* - d| >= |d|)``).
* McNemar's exact test: under H0 the discordant examples (right in one run, wrong in the other)
  fall either way with probability 1/2; p = 2 * P(Binomial(b + c, 1/2) <= min(b, c)), capped at 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from harness.errors import UserError
from harness.scoring import bootstrap_means


@dataclass(frozen=True)
class Comparison:
    n: int  # paired examples
    acc_a: float
    acc_b: float
    diff: float  # acc_b - acc_a
    lo: float  # 95% paired-bootstrap interval of diff
    hi: float
    p_bootstrap: float
    only_a: int  # right in a, wrong in b
    only_b: int  # right in b, wrong in a
    p_mcnemar: float


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_resamples: int = 10_000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(lo, hi, p) of mean(b) - mean(a) over paired 0/1 outcomes."""
    d = b.astype(np.float64) - a.astype(np.float64)
    observed = d.sum() / d.size
    diffs = bootstrap_means(d, n_resamples, seed)  # resampling the paired differences
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    # |d* - d| >= |d| with a little slack so that equal floats computed two ways count as equal
    p = float(np.mean(np.abs(diffs - observed) >= abs(observed) - 1e-12)) if observed != 0 else 1.0
    return float(lo), float(hi), p


def compare(correct_a: Mapping[str, bool], correct_b: Mapping[str, bool], n_resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Paired comparison of two runs' per-example correctness (same example ids required)."""
    ids_a, ids_b = set(correct_a), set(correct_b)
    if ids_a != ids_b:
        only = sorted(ids_a ^ ids_b)
        raise UserError(
            f"the two runs were scored on different examples ({len(ids_a)} vs {len(ids_b)}, "
            f"{len(only)} not in both, e.g. {only[0]!r}): a paired test needs the same test set"
        )
    if not ids_a:
        raise UserError("nothing to compare: no scored examples")
    ids = sorted(ids_a)
    a = np.array([bool(correct_a[i]) for i in ids])
    b = np.array([bool(correct_b[i]) for i in ids])
    lo, hi, p = paired_bootstrap(a, b, n_resamples, seed=seed)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    return Comparison(
        n=len(ids),
        acc_a=float(a.mean()),
        acc_b=float(b.mean()),
        diff=float(b.mean() - a.mean()),
        lo=lo,
        hi=hi,
        p_bootstrap=p,
        only_a=only_a,
        only_b=only_b,
        p_mcnemar=mcnemar_exact(only_a, only_b),
    )
