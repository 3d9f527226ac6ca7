"""Power planning (harness/power.py): Connor's formula by hand, the exact McNemar power against
enumeration and simulation, the seed-variance model and t-test plan against simulation, and
`distillbench power` on predictions folders and MLflow runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from harness import power as pw
from harness.compare import mcnemar_exact

# ------------------------------------------------------------------ examples: formula by hand


def test_connor_worked_example() -> None:
    # ψ 0.2, δ 0.05, α 0.05 two-sided, power 0.8: z = 1.959964 and 0.841621 from the normal table
    by_hand = (1.959964 * math.sqrt(0.2) + 0.841621 * math.sqrt(0.2 - 0.05**2)) ** 2 / 0.05**2
    assert by_hand == pytest.approx(625.55, abs=0.01)
    assert pw.mcnemar_n(0.05, 0.2) == pytest.approx(by_hand, rel=1e-5)
    assert pw.examples_needed(0.05, 0.2) == 626
    assert pw.examples_needed(-0.05, 0.2) == 626  # the sign of the gap does not matter


def test_discordance_is_floored_at_the_gap() -> None:
    # identical runs (ψ 0) planned for a 10-point gap: ψ taken as 0.1, all discordant pairs one way
    by_hand = (1.959964 * math.sqrt(0.1) + 0.841621 * math.sqrt(0.1 - 0.01)) ** 2 / 0.01
    assert pw.mcnemar_n(0.1, 0.0) == pytest.approx(by_hand, rel=1e-5) == pytest.approx(76.09, abs=0.01)
    assert pw.mcnemar_n(0.1, 0.05) == pw.mcnemar_n(0.1, 0.0)


@pytest.mark.parametrize("gap, alpha, power", [(0.0, 0.05, 0.8), (1.0, 0.05, 0.8), (0.1, 0.0, 0.8), (0.1, 0.05, 1.0)])
def test_out_of_range_levels_are_refused(gap: float, alpha: float, power: float) -> None:
    with pytest.raises(ValueError):
        pw.mcnemar_n(gap, 0.2, alpha, power)


def test_discordance_of_hand_made_outcomes() -> None:
    a = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    b = np.array([1, 0, 1, 1, 1, 0, 0, 1])
    assert pw.discordance(a, b) == 5 / 8  # pairs 2, 3, 4, 7, 8 differ
    # two seeds of A: example 1 right in one seed, B always right there -> half discordant
    assert pw.discordance(np.array([[1, 0], [0, 0]]), np.array([[1, 1]])) == (0.5 + 1) / 2


# ------------------------------------------------------------------ properties

gaps = st.floats(0.005, 0.5)
psis = st.floats(0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(gaps, psis, st.floats(0.5, 0.9), st.floats(0.01, 0.09))
def test_more_power_needs_more_examples(gap: float, psi: float, power: float, more: float) -> None:
    assert pw.mcnemar_n(gap, psi, power=power + more) > pw.mcnemar_n(gap, psi, power=power)


@settings(max_examples=100, deadline=None)
@given(gaps, psis, st.floats(0.5, 0.99))
def test_a_smaller_gap_needs_more_examples(gap: float, psi: float, shrink: float) -> None:
    assert pw.mcnemar_n(gap * shrink, psi) > pw.mcnemar_n(gap, psi)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.005, 0.9), psis, st.floats(0.05, 0.2), st.floats(0.6, 0.95))
def test_min_detectable_gap_inverts_the_formula(gap: float, psi: float, alpha: float, power: float) -> None:
    n = pw.mcnemar_n(gap, psi, alpha, power)
    assert pw.min_detectable_gap(n, psi, alpha, power) == pytest.approx(gap, rel=1e-6)
    assert pw.mcnemar_n(pw.min_detectable_gap(500, psi, alpha, power), psi, alpha, power) == pytest.approx(500, rel=1e-6)


def test_min_detectable_gap_when_nothing_is_resolvable() -> None:
    assert math.isnan(pw.min_detectable_gap(2, 0.3))  # below (z_a)² ~ 3.8 examples no gap will do
    assert math.isnan(pw.min_detectable_gap_exact(5, 0.3))  # 5 pairs all one way: p = 2/32 > 0.05


# ------------------------------------------------------------------ the exact McNemar power


def test_exact_power_by_hand() -> None:
    # ψ 1: every pair discordant, B's side with probability (1 + 0.5) / 2 = 0.75. Over 6 pairs the
    # exact test rejects only at 6-0 or 0-6 (p 2/64); over 5 pairs never (p >= 2/32).
    assert pw.mcnemar_exact_power(6, 0.5, 1.0) == pytest.approx(0.75**6 + 0.25**6)
    assert pw.mcnemar_exact_power(5, 0.5, 1.0) == 0.0


@pytest.mark.parametrize("n, gap, psi", [(12, 0.1, 0.4), (30, 0.2, 0.3), (25, 0.05, 0.05)])
def test_exact_power_equals_enumeration_of_the_harness_test(n: int, gap: float, psi: float) -> None:
    """Every table (only A, only B, agree) of n pairs, weighted by its multinomial probability."""
    probs = [(psi - gap) / 2, (psi + gap) / 2, 1 - psi]
    total = sum(
        stats.multinomial.pmf([x, y, n - x - y], n, probs)
        for x in range(n + 1)
        for y in range(n + 1 - x)
        if mcnemar_exact(x, y) <= 0.05
    )
    assert pw.mcnemar_exact_power(n, gap, psi) == pytest.approx(total, abs=1e-9)


def simulated_power(n: int, gap: float, psi: float, reps: int, seed: int) -> float:
    """Share of `reps` simulated paired samples of n examples that harness.compare's exact test rejects at 0.05."""
    counts = np.random.default_rng(seed).multinomial(n, [(psi - gap) / 2, (psi + gap) / 2, 1 - psi], size=reps)
    return float(np.mean([mcnemar_exact(int(x), int(y)) <= 0.05 for x, y, _ in counts]))


@pytest.mark.parametrize("psi, gap", [(0.2, 0.05), (0.3, 0.1), (0.08, 0.05)])
def test_planned_examples_reach_the_power_in_simulation(psi: float, gap: float) -> None:
    """At the planned n the exact test, simulated 3000 times, rejects 80% of the time; at
    Connor's n a little less (the exact test is conservative), still within 5 points.
    Monte Carlo standard error: sqrt(0.8 * 0.2 / 3000) = 0.007."""
    n = pw.examples_needed_exact(gap, psi)
    assert pw.mcnemar_exact_power(n, gap, psi) >= 0.8 > pw.mcnemar_exact_power(n - 1, gap, psi) - 0.01
    assert simulated_power(n, gap, psi, 3000, seed=1) == pytest.approx(0.8, abs=0.03)
    connor = pw.examples_needed(gap, psi)
    assert connor < n
    assert simulated_power(connor, gap, psi, 3000, seed=2) == pytest.approx(0.8, abs=0.05)
    # and the smallest gap at the planned n is (about) the one it was planned for
    assert pw.min_detectable_gap_exact(n, psi) == pytest.approx(gap, rel=0.05)


# ------------------------------------------------------------------ seeds


def seeds_outcomes(rng: np.random.Generator, p: np.ndarray, tau: float, seeds: int, shift: float = 0.0) -> np.ndarray:
    """[seeds, examples] outcomes: example i right with p_i + shift + u_s, u_s ~ N(0, tau²) per seed."""
    u = rng.normal(0.0, tau, size=(seeds, 1))
    return (rng.random((seeds, p.size)) < np.clip(p + shift + u, 0, 1)).astype(np.float64)


def test_seed_variance_of_hand_made_seeds() -> None:
    x = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])  # accuracies 0.5, 0.25, 0.75
    v = pw.seed_variance(x)
    assert v is not None
    # per example p̂ = 1, 2/3, 1/3, 0: within = mean(0, 2/9, 2/9, 0) * 3/2 = 1/6
    assert v.within == pytest.approx(1 / 6)
    # s² of (0.5, 0.25, 0.75) = 1/16; between = 1/16 - (1/6) / 4 = 1/48
    assert v.between == pytest.approx(1 / 48) and v.at(4) == pytest.approx(1 / 16)
    assert pw.seed_variance(x[:1]) is None


def test_seed_variance_model_predicts_the_spread_at_another_n() -> None:
    """τ² and w estimated from 400 seeds on 300 examples predict the seed-to-seed variance on
    1200 examples of the same kind (the relative error of a variance from 400 draws is ~7%)."""
    rng = np.random.default_rng(3)
    tau = 0.02
    small = seeds_outcomes(rng, rng.uniform(0.2, 0.8, 300), tau, 400)
    v = pw.seed_variance(small)
    assert v is not None and v.between == pytest.approx(tau**2, rel=0.35)
    large = seeds_outcomes(rng, rng.uniform(0.2, 0.8, 1200), tau, 400)
    assert v.at(1200) == pytest.approx(np.var(large.mean(axis=1), ddof=1), rel=0.25)


def test_t_test_power_and_its_inverse() -> None:
    # noncentral t by hand at 5 seeds a side, σ² 1e-4 each: ncp = 0.02 / sqrt(2e-4 / 5) = sqrt(10)
    crit = stats.t.ppf(0.975, 8)
    by_hand = stats.nct.sf(crit, 8, math.sqrt(10)) + stats.nct.cdf(-crit, 8, math.sqrt(10))
    assert pw.t_test_power(0.02, 1e-4, 1e-4, 5) == pytest.approx(by_hand)
    m = pw.seeds_needed(0.02, 1e-4, 1e-4)
    assert m is not None and pw.t_test_power(0.02, 1e-4, 1e-4, m) >= 0.8 > pw.t_test_power(0.02, 1e-4, 1e-4, m - 1)
    g = pw.min_detectable_gap_seeds(m, 1e-4, 1e-4)
    assert g <= 0.02 and pw.t_test_power(g, 1e-4, 1e-4, m) == pytest.approx(0.8)
    assert pw.seeds_needed(0.001, 0.25, 0.25) is None  # ncp 0.14 even at MAX_SEEDS


@settings(max_examples=50, deadline=None)
@given(st.floats(0.005, 0.1), st.floats(1e-5, 1e-3), st.floats(0.5, 0.95))
def test_fewer_seeds_for_a_larger_gap(gap: float, var: float, power: float) -> None:
    small, large = pw.seeds_needed(gap, var, var, power=power), pw.seeds_needed(2 * gap, var, var, power=power)
    assert small is not None and large is not None and large <= small


def test_planned_seeds_reach_the_power_in_simulation() -> None:
    """Seeds planned from the variance model (true τ², w) at n examples: 2000 simulated
    experiments, each m seeds a side with per-example outcomes, tested with scipy's two-sample
    t-test, reject about 80% of the time (Monte Carlo standard error 0.009)."""
    rng = np.random.default_rng(4)
    n, tau, gap = 400, 0.01, 0.04
    p = rng.uniform(0.3, 0.7, n)
    # the model's w for this p and τ: mean of E[(p + u)(1 - p - u)] = p(1 - p) - τ²
    var = pw.SeedVariance(between=tau**2, within=float(np.mean(p * (1 - p))) - tau**2, seeds=0).at(n)
    m = pw.seeds_needed(gap, var, var)
    assert m is not None and 4 <= m <= 20  # a case where seeds matter, not a degenerate one
    reps = 2000
    acc_a = seeds_outcomes(rng, np.tile(p, reps), 0.0, m).reshape(m, reps, n).mean(axis=2)
    acc_b = seeds_outcomes(rng, np.tile(p, reps), 0.0, m, shift=gap).reshape(m, reps, n).mean(axis=2)
    # the seed effect u_s, one per seed and experiment, added to each seed's accuracy
    acc_a += rng.normal(0, tau, acc_a.shape)
    acc_b += rng.normal(0, tau, acc_b.shape)
    rejected = stats.ttest_ind(acc_b, acc_a, axis=0).pvalue <= 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.04)


def test_plan_of_hand_made_runs() -> None:
    a = np.array([[1, 1, 0, 0, 1, 0, 1, 0] * 10])
    b = np.array([[1, 0, 1, 1, 1, 0, 0, 1] * 10])
    p = pw.plan(a, b, gap=0.1)
    assert (p.n, p.seeds_a, p.acc_a, p.acc_b, p.discordance) == (80, 1, 0.5, 0.625, 5 / 8)
    assert p.observed_gap == pytest.approx(0.125)
    assert p.examples_needed == pw.examples_needed_exact(0.1, 5 / 8) and p.planned_n == p.examples_needed > 80
    assert p.min_gap_now == pw.min_detectable_gap_exact(80, 5 / 8) and p.min_gap_now > 0.1
    assert p.var_a is None and p.seeds_needed is None and math.isnan(p.min_gap_seeds)
    two = pw.plan(np.vstack([a, b]), np.vstack([b, b]), gap=0.1)  # two seeds a side
    assert two.var_a is not None and two.var_b is not None and two.seeds_needed is not None
    with pytest.raises(ValueError, match="same, non-empty examples"):
        pw.plan(a, b[:, :10], 0.1)


# ------------------------------------------------------------------ the command


def folder(path: Path, right: list[bool], prefix: str = "math") -> Path:
    """A predictions folder whose greedy chain is right exactly where `right` says."""
    from harness.evaluate import write_predictions
    from harness.types import Chain, Example

    examples = [Example(f"{prefix}-{i}", "", str(i)) for i in range(len(right))]
    chains = [Chain(ex.id, "student:x", "", ex.answer if r else "999", logprob=-1.0, n_tokens=1, meta={"temperature": 0.0, "sample": 0}) for ex, r in zip(examples, right)]
    write_predictions(path, {"name": "math500", "options": {}, "version": "x", "prompt_version": "x"}, examples, chains)
    return path


PATTERN_A = [True, True, False, False, True, False, True, False] * 25  # 200 examples, 50%
PATTERN_B = [True, False, True, True, True, False, False, True] * 25  # 62.5%, ψ 5/8


def test_power_command_on_two_folders(tmp_path: Path) -> None:
    from tests.test_cli import cli

    a, b = folder(tmp_path / "a", PATTERN_A), folder(tmp_path / "b", PATTERN_B)
    r = cli("power", str(a), str(b), "--gap", "0.1", "--store", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    p = pw.plan(np.array(PATTERN_A, dtype=float), np.array(PATTERN_B, dtype=float), 0.1)
    row = next(line for line in r.stdout.splitlines() if "test examples needed" in line)
    assert f"{p.examples_needed:,} ({p.examples_needed_approx:,}) / 200" in row
    assert f"{100 * p.min_gap_now:.2f}" in r.stdout and "+12.50" in r.stdout and "62.50%" in r.stdout
    assert "one seed per side" in r.stdout
    assert f"too few test examples for a 10.00-point gap: {p.examples_needed:,} needed, 200 at hand" in r.stdout


def test_power_command_bad_input_is_one_line(tmp_path: Path) -> None:
    from tests.test_cli import cli

    a = folder(tmp_path / "a", PATTERN_A)
    other = folder(tmp_path / "o", PATTERN_A, prefix="gsm")
    for args, message in (
        (["--gap", "0"], "--gap must be between 0 and 1"),
        (["--alpha", "1"], "--alpha must be between 0 and 1"),
        (["--power", "0"], "--power must be between 0 and 1"),
    ):
        r = cli("power", str(a), str(a), *args)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cli("power", str(a), str(other), "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and "different test examples" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cli("power", str(a), "no-such-run", "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and "neither a predictions folder nor an MLflow run id" in r.stderr, r.stderr


def test_power_command_over_seeds_in_mlflow(tmp_path: Path) -> None:
    """Three seeds a side as MLflow runs, named by run ids (ID1,ID2,ID3) and as GRID/CELL."""
    from harness.store import Store
    from harness.tracking import Tracker
    from tests.test_cli import cli

    store = Store(tmp_path / "s")
    tracker = Tracker(store, "exp")
    rng = np.random.default_rng(5)
    p = rng.uniform(0.2, 0.8, 200)
    outcomes: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    ids: dict[str, list[str]] = {"a": [], "b": []}
    for method, shift in (("a", 0.0), ("b", 0.05)):
        for seed in range(3):
            right = seeds_outcomes(rng, p, 0.02, 1, shift)[0]
            outcomes[method].append(right)
            tags = {"cell_hash": f"{method}{seed}", "cell": f"method={method},seed={seed}", "task": "math500", "method": method}
            with tracker.run(f"method={method},seed={seed}", {"seed": seed, "method.name": method}, tags) as log:
                log.artifact(folder(tmp_path / f"{method}{seed}", [bool(x) for x in right]), "predictions")
                ids[method].append(log.run_id)
    expected = pw.plan(np.array(outcomes["a"]), np.array(outcomes["b"]), 0.05)
    assert expected.seeds_needed is not None
    by_ids = cli("power", ",".join(ids["a"]), ",".join(ids["b"]), "--gap", "0.05", "--store", str(store.root))
    by_cell = cli("power", "exp/method=a", "exp/method=b,seed=1", "--gap", "0.05", "--store", str(store.root))
    for r in (by_ids, by_cell):
        assert r.returncode == 0, r.stderr
        assert "seeds A / B" in r.stdout and "3 / 3" in r.stdout
        row = next(line for line in r.stdout.splitlines() if "seeds needed per side" in line)
        assert row.split("│")[2].strip() == str(expected.seeds_needed), row
        assert f"{100 * expected.min_gap_seeds:.2f}" in r.stdout
    r = cli("power", "exp/method=c", "exp/method=b", "--store", str(store.root))
    assert r.returncode == 2 and "no finished cell 'method=c' in grid 'exp'" in r.stderr, r.stderr
