"""How many test examples, and how many seeds, resolve a given accuracy gap? Power planning for
the paired tests of harness/compare.py.

Examples (one run per side, the paired test `distillbench compare` runs: McNemar). With ψ the
rate of discordant pairs (right in one run, wrong in the other) and δ the gap (a difference of
accuracies, = the difference of the two discordant rates), the normal approximation of Connor
(1987, Biometrics 43:207, eq. 3; also Lachin 1992, Stat Med 11:1239) gives the examples needed
by a two-sided test at level α with power 1 - β:

    n = (z_{1-α/2} sqrt(ψ) + z_{1-β} sqrt(ψ - δ²))² / δ²

ψ is estimated from the runs at hand, kept when planning another gap (the discordance of two
runs is mostly set by how differently they fail, not by the gap between them), but never below
|δ|: a gap δ needs at least |δ| discordant pairs, all one way. The exact McNemar test the harness
runs is a little conservative against this approximation (at Connor's n its power is about 0.77
to 0.79 for a target of 0.8), so the plan's examples come from the exact power
(mcnemar_exact_power: binomial sums, no approximation), found by bisection from Connor's n;
tests/harness/test_power.py checks both against simulated exact tests. The smallest resolvable
gap is likewise the exact power inverted (min_detectable_gap: Connor's formula inverted).

Seeds (several runs per side). A seed's accuracy on n test examples varies from seed to seed by

    σ²(n) = τ² + w / n

τ² the between-seed variance (a seed makes the whole model better or worse) and w / n the
per-example sampling variance of a mean over n examples (each example is right with its own
probability p_i over seeds; w = mean_i p_i (1 - p_i)). From m seeds on n0 examples:
ŵ = mean_i m/(m-1) p̂_i (1 - p̂_i) (unbiased per example) and τ̂² = max(0, s² - ŵ / n0), s² the
sample variance of the seeds' accuracies. The seeds needed per side are those of a two-sample
t-test on the seeds' accuracies (df 2m - 2), its power from the noncentral t distribution
(Cohen 1988, ch. 2): ncp = δ / sqrt((σ_A²(n) + σ_B²(n)) / m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

MAX_SEEDS = 10_000  # past this, "seeds needed" is reported as not reachable


def _z(alpha: float, power: float) -> tuple[float, float]:
    _check_levels(alpha, power)
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def _check_levels(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")


def mcnemar_n(gap: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Connor (1987) / Lachin (1992): paired examples (real-valued) for a two-sided McNemar test
    at level `alpha` to detect `gap` with `power`; `discordance` (ψ) is floored at |gap|."""
    d = abs(gap)
    if not 0 < d < 1:
        raise ValueError(f"gap must be in (0, 1) in absolute value, got {gap}")
    za, zb = _z(alpha, power)
    psi = min(1.0, max(discordance, d))
    return (za * math.sqrt(psi) + zb * math.sqrt(max(0.0, psi - d * d))) ** 2 / (d * d)


def examples_needed(gap: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """mcnemar_n rounded up to whole examples."""
    # the 1e-9 keeps a float that is an integer up to rounding from gaining an example
    return math.ceil(mcnemar_n(gap, discordance, alpha, power) - 1e-9)


def min_detectable_gap(n: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest gap that `n` paired examples resolve: mcnemar_n inverted in the gap (it falls
    strictly as the gap grows); nan when not even a gap near 1 is resolvable."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    _check_levels(alpha, power)
    lo, hi = 1e-9, 1 - 1e-9
    if mcnemar_n(hi, discordance, alpha, power) > n:
        return math.nan
    if mcnemar_n(lo, discordance, alpha, power) <= n:
        return lo
    return float(optimize.brentq(lambda g: mcnemar_n(g, discordance, alpha, power) - n, lo, hi, xtol=1e-12))


def mcnemar_exact_power(n: int, gap: float, discordance: float, alpha: float = 0.05) -> float:
    """Power of harness.compare.mcnemar_exact at level `alpha` over n paired examples, exactly:
    the discordant count D ~ Binomial(n, ψ), and given D = d the pairs right only in B
    ~ Binomial(d, (ψ + δ) / 2ψ); the test rejects when 2 P(Binomial(d, 1/2) <= min(b, d - b)) <= α
    (ψ floored at |δ| as in mcnemar_n)."""
    d_gap = abs(gap)
    psi = min(1.0, max(discordance, d_gap))
    if n < 1 or psi == 0:
        return 0.0
    # only discordant counts with a probability above 1e-12 (either tail) count: at tens of
    # thousands of examples that is a few percent of 0..n
    d = np.arange(int(stats.binom.ppf(1e-12, n, psi)), int(stats.binom.isf(1e-12, n, psi)) + 1)
    # k_d: the largest count with 2 P(Bin(d, 1/2) <= k) <= alpha (-1 when none)
    k = stats.binom.ppf(alpha / 2, d, 0.5).astype(np.int64)
    k = np.where(stats.binom.cdf(k, d, 0.5) <= alpha / 2, k, k - 1)
    q = (psi + d_gap) / (2 * psi)
    reject = stats.binom.cdf(k, d, q) + stats.binom.sf(d - k - 1, d, q)
    reject = np.where(k >= 0, reject, 0.0)
    return float(np.sum(stats.binom.pmf(d, n, psi) * reject))


def examples_needed_exact(gap: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Examples at which the exact test reaches `power`, by bisection from mcnemar_n up. The exact
    power zigzags a little in n (the binomial's discreteness), so this is the first n of the
    bisection, not of a scan: a neighbour may fall a fraction of a point short."""
    lo = max(1, examples_needed(gap, discordance, alpha, power) - 1)
    hi = 2 * lo + 10
    while mcnemar_exact_power(hi, gap, discordance, alpha) < power:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: power(hi) >= target
        mid = (lo + hi) // 2
        if mcnemar_exact_power(mid, gap, discordance, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def min_detectable_gap_exact(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest gap at which the exact test over n examples reaches `power`
    (mcnemar_exact_power, continuous and rising in the gap, inverted); nan when none below 1."""
    _check_levels(alpha, power)
    hi = 1 - 1e-9
    if mcnemar_exact_power(n, hi, discordance, alpha) < power:
        return math.nan
    return float(optimize.brentq(lambda g: mcnemar_exact_power(n, g, discordance, alpha) - power, 1e-9, hi, xtol=1e-10))


def discordance(a: np.ndarray, b: np.ndarray) -> float:
    """ψ: the rate of discordant pairs between a run of A and a run of B, averaged over every
    (seed of A, seed of B) pair. `a`, `b`: [seeds, examples] 0/1 outcomes on the same examples."""
    pa, pb = _rows(a).mean(axis=0), _rows(b).mean(axis=0)
    return float(np.mean(pa * (1 - pb) + pb * (1 - pa)))


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(1, -1) if x.ndim == 1 else x


@dataclass(frozen=True)
class SeedVariance:
    """σ²(n) = between + within / n: the seed-to-seed variance of accuracy on n examples."""

    between: float  # τ²: whole-model variation from seed to seed
    within: float  # w: mean per-example Bernoulli variance over seeds
    seeds: int

    def at(self, n: float) -> float:
        """Variance of one seed's accuracy over n test examples."""
        return self.between + self.within / n


def seed_variance(outcomes: np.ndarray) -> SeedVariance | None:
    """τ² and w (see the module docstring) from [seeds, examples] 0/1 outcomes; None for < 2 seeds."""
    x = _rows(outcomes)
    m, n0 = x.shape
    if m < 2:
        return None
    p = x.mean(axis=0)
    within = float(np.mean(p * (1 - p)) * m / (m - 1))
    s2 = float(np.var(x.mean(axis=1), ddof=1))
    return SeedVariance(between=max(0.0, s2 - within / n0), within=within, seeds=m)


def t_test_power(gap: float, var_a: float, var_b: float, seeds: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test (pooled, `seeds` per side) on seed accuracies
    whose variances are var_a and var_b: noncentral t with ncp = gap / sqrt((var_a + var_b) / m)."""
    if seeds < 2:
        raise ValueError(f"a t-test needs at least 2 seeds per side, got {seeds}")
    if var_a + var_b <= 0:
        return 1.0 if gap else alpha
    df = 2 * seeds - 2
    ncp = abs(gap) / math.sqrt((var_a + var_b) / seeds)
    crit = stats.t.ppf(1 - alpha / 2, df)
    # the far tail is negligible and scipy's nct returns nan for it at large ncp
    return float(stats.nct.sf(crit, df, ncp) + np.nan_to_num(stats.nct.cdf(-crit, df, ncp)))


def seeds_needed(gap: float, var_a: float, var_b: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Fewest seeds per side (>= 2) at which t_test_power reaches `power`; None past MAX_SEEDS."""
    _check_levels(alpha, power)
    if t_test_power(gap, var_a, var_b, MAX_SEEDS, alpha) < power:
        return None
    lo, hi = 2, MAX_SEEDS  # power grows with the seeds: bisect for the first that is enough
    while lo < hi:
        mid = (lo + hi) // 2
        if t_test_power(gap, var_a, var_b, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def min_detectable_gap_seeds(seeds: int, var_a: float, var_b: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest gap a t-test over `seeds` per side resolves with `power` (t_test_power inverted)."""
    _check_levels(alpha, power)
    if var_a + var_b <= 0:
        return 0.0
    # power rises from alpha (gap 0) towards 1; at 20 standard errors (ncp 20) it is 1 - 1e-8 or
    # more even for 2 seeds a side
    se = math.sqrt((var_a + var_b) / seeds)
    return float(optimize.brentq(lambda g: t_test_power(g, var_a, var_b, seeds, alpha) - power, 0.0, 20 * se, xtol=1e-14))


@dataclass(frozen=True)
class Plan:
    """What two runs (or two sets of seeds) can resolve, and what a requested gap needs."""

    gap: float  # requested
    alpha: float
    power: float
    n: int  # test examples at hand
    seeds_a: int
    seeds_b: int
    acc_a: float  # mean over seeds
    acc_b: float
    observed_gap: float  # acc_b - acc_a
    discordance: float  # ψ observed
    examples_needed: int  # exact McNemar test, one run per side (examples_needed_exact)
    examples_needed_approx: int  # Connor's formula (mcnemar_n)
    min_gap_now: float  # exact McNemar at n (min_detectable_gap_exact)
    planned_n: int  # max(n, examples_needed): the examples the seeds are planned for
    var_a: SeedVariance | None
    var_b: SeedVariance | None
    seeds_needed: int | None  # per side at planned_n; None: not estimable or beyond MAX_SEEDS
    min_gap_seeds: float  # t-test with min(seeds_a, seeds_b) seeds at n; nan without seed variance


def seed_variances(var_a: SeedVariance | None, var_b: SeedVariance | None) -> tuple[SeedVariance, SeedVariance] | None:
    """Both sides' variances; a side with one seed borrows the other side's (equal variances
    assumed); None when neither side has two seeds."""
    if var_a is None and var_b is None:
        return None
    return (var_a or var_b, var_b or var_a)  # type: ignore[return-value]


def plan(a: np.ndarray, b: np.ndarray, gap: float, alpha: float = 0.05, power: float = 0.8) -> Plan:
    """The whole plan from [seeds, examples] 0/1 outcomes of A and B on the same examples."""
    a, b = _rows(a), _rows(b)
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"A and B need the same, non-empty examples ({a.shape[1]} vs {b.shape[1]})")
    n = a.shape[1]
    psi = discordance(a, b)
    need = examples_needed_exact(gap, psi, alpha, power)
    planned = max(n, need)
    va, vb = seed_variance(a), seed_variance(b)
    both = seed_variances(va, vb)
    seeds = mdg_seeds = None
    if both is not None:
        seeds = seeds_needed(gap, both[0].at(planned), both[1].at(planned), alpha, power)
        m = min(len(a), len(b))
        mdg_seeds = min_detectable_gap_seeds(m, both[0].at(n), both[1].at(n), alpha, power) if m >= 2 else None
    acc_a, acc_b = float(a.mean()), float(b.mean())
    return Plan(
        gap=gap,
        alpha=alpha,
        power=power,
        n=n,
        seeds_a=len(a),
        seeds_b=len(b),
        acc_a=acc_a,
        acc_b=acc_b,
        observed_gap=acc_b - acc_a,
        discordance=psi,
        examples_needed=need,
        examples_needed_approx=examples_needed(gap, psi, alpha, power),
        min_gap_now=min_detectable_gap_exact(n, psi, alpha, power),
        planned_n=planned,
        var_a=va,
        var_b=vb,
        seeds_needed=seeds,
        min_gap_seeds=math.nan if mdg_seeds is None else mdg_seeds,
    )
