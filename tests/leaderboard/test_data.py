import math

import pytest

from leaderboard.data import SeedStats, Verdict, best_cell, cell_row, group_by_seed, group_label, separated, table_rows

METRICS = {
    "test/acc/greedy": 0.40, "test/lo/greedy": 0.35, "test/hi/greedy": 0.45,
    "test/acc/majority_k8": 0.50, "test/lo/majority_k8": 0.45, "test/hi/majority_k8": 0.55,
    "untrained/acc/greedy": 0.0, "untrained/lo/greedy": 0.0, "untrained/hi/greedy": 0.0,
    "untrained/acc/majority_k8": 0.01, "untrained/lo/majority_k8": 0.0, "untrained/hi/majority_k8": 0.02,
    "baseline/most_frequent": 0.02, "train/seconds": 61.5,
}
TAGS = {"cell": "method=dss,family=t5", "task": "arith", "method": "dss", "student": "tiny-t5", "cell_hash": "x"}
PARAMS = {"eval.schemes": "['greedy', 'majority@8']"}


def test_cell_row_reads_schemes_back_from_metric_names():
    r = cell_row("demo", "run1", TAGS, PARAMS, METRICS)
    assert r.schemes == ["greedy", "majority@8"]
    assert r.acc == {"greedy": (0.40, 0.35, 0.45), "majority@8": (0.50, 0.45, 0.55)}
    assert r.untrained["majority@8"] == (0.01, 0.0, 0.02)
    assert r.baseline == 0.02 and r.train_seconds == 61.5 and r.method == "dss"


def test_missing_metrics_are_absent_not_zero():
    r = cell_row("demo", "run1", TAGS, PARAMS, {"test/acc/greedy": 0.3})
    acc, lo, hi = r.acc["greedy"]
    assert acc == 0.3 and math.isnan(lo) and math.isnan(hi)
    assert "majority@8" not in r.acc and math.isnan(r.baseline)
    assert cell_row("demo", "r", TAGS, {"eval.schemes": "not a list"}, METRICS).schemes == []


def test_best_cell_and_verdict():
    a = cell_row("demo", "a", TAGS, PARAMS, METRICS)
    worse = {**METRICS, "test/acc/majority_k8": 0.3, "test/lo/majority_k8": 0.25}
    b = cell_row("demo", "b", {**TAGS, "cell": "other"}, PARAMS, worse)
    v = best_cell([b, a])
    assert v is not None and v.cell == "method=dss,family=t5" and v.scheme == "majority@8" and v.learned
    # the interval must clear both references, not just the point estimate
    assert not Verdict("c", "greedy", (0.05, 0.01, 0.09), 0.0, 0.02).learned
    assert not Verdict("c", "greedy", (0.05, 0.03, 0.09), 0.04, 0.0).learned
    assert best_cell([]) is None
    assert Verdict("c", "greedy", (0.05, 0.03, 0.09), math.nan, 0.02).learned  # untrained not measured
    assert not Verdict("c", "greedy", (0.05, 0.01, 0.09), math.nan, 0.02).learned


def test_table_rows_one_column_per_scheme():
    header, rows = table_rows([cell_row("demo", "a", TAGS, PARAMS, METRICS)])
    assert header == ["cell", "greedy", "majority@8", "untrained greedy", "untrained majority@8", "most-frequent", "train s"]
    assert rows[0][0] == "method=dss,family=t5" and rows[0][2] == (0.5, 0.45, 0.55) and rows[0][-1] == 61.5


def _metrics(test: float, valid: float | None) -> dict[str, float]:
    m = {**METRICS, "test/acc/greedy": test, "test/lo/greedy": test - 0.04, "test/hi/greedy": test + 0.04}
    m = {k: v for k, v in m.items() if "majority" not in k}
    if valid is not None:
        m.update({"valid/acc/greedy": valid, "valid/lo/greedy": valid - 0.05, "valid/hi/greedy": valid + 0.05})
    return m


def _cell(cell: str, test: float, valid: float | None, seed: int = 0, method: str = "dss") -> object:
    tags = {**TAGS, "cell": cell, "method": method}
    params = {"eval.schemes": "['greedy']", "method.name": method, "seed": str(seed)}
    return cell_row("demo", f"{cell}-{seed}", tags, params, _metrics(test, valid))


def test_best_cell_is_picked_on_valid_and_reports_its_test_interval():
    """Test-best and valid-best differ: the verdict follows valid and reports that cell's test score."""
    test_best = _cell("method=finetune", test=0.60, valid=0.40, method="finetune")
    valid_best = _cell("method=dss", test=0.50, valid=0.55)
    v = best_cell([test_best, valid_best])
    assert v is not None and v.selected_on == "valid"
    assert v.cell == "method=dss" and v.scheme == "greedy"
    assert v.acc == (0.50, 0.50 - 0.04, 0.50 + 0.04) and v.valid == 0.55
    # the comparison lists the chosen cell first, then the others by test mean
    assert [c[0] for c in v.comparison] == ["method=dss", "method=finetune"]
    # the scheme is chosen on valid too
    a = cell_row("demo", "a", TAGS, PARAMS, {**METRICS, "valid/acc/greedy": 0.6, "valid/acc/majority_k8": 0.5})
    assert best_cell([a]).scheme == "greedy"  # although majority@8 is higher on test
    # runs without valid accuracy per scheme (older runs): selected on test, and the verdict says so
    old = best_cell([_cell("x", 0.3, None), _cell("y", 0.4, None)])
    assert old is not None and old.cell == "y" and old.selected_on == "test" and math.isnan(old.valid)


def test_seeds_group_into_mean_and_std():
    rows = [_cell(f"method=dss,seed={s}", test=t, valid=v, seed=s) for s, t, v in [(0, 0.50, 0.52), (1, 0.60, 0.58), (2, 0.55, 0.57)]]
    rows += [_cell(f"method=finetune,seed={s}", test=t, valid=v, seed=s, method="finetune") for s, t, v in [(0, 0.30, 0.31), (1, 0.35, 0.36), (2, 0.40, 0.42)]]
    groups = group_by_seed(rows)
    assert [(g.label, g.n) for g in groups] == [("method=dss", 3), ("method=finetune", 3)]
    st = groups[0].stats("greedy")
    assert st.n == 3 and st.mean == pytest.approx(0.55) and st.std == pytest.approx(0.05)

    header, body = table_rows(rows)
    # three seed rows, then the group's mean ± std row, for each group
    assert [r[0] for r in body] == [
        "method=dss,seed=0", "method=dss,seed=1", "method=dss,seed=2", "method=dss: mean ± std, n=3",
        "method=finetune,seed=0", "method=finetune,seed=1", "method=finetune,seed=2", "method=finetune: mean ± std, n=3",
    ]
    summary = body[3][header.index("greedy")]
    assert isinstance(summary, SeedStats) and summary.mean == pytest.approx(0.55) and summary.n == 3
    assert body[0][header.index("greedy")] == (0.50, 0.46, 0.54)  # each seed keeps its own interval

    v = best_cell(rows)
    assert v is not None and v.cell == "method=dss" and v.n == 3
    assert v.valid == pytest.approx((0.52 + 0.58 + 0.57) / 3)
    assert v.acc[0] == pytest.approx(0.55) and v.acc[1] == pytest.approx(0.46) and v.std == pytest.approx(0.05)
    assert [c[0] for c in v.comparison] == ["method=dss", "method=finetune"]
    assert separated(v.comparison[0][2], v.comparison[1][2])  # 0.50 > 0.40
    assert v.learned
    # one seed whose interval does not clear the baseline: not learned
    low = _cell("method=dss,seed=3", test=0.03, valid=0.9, seed=3)
    assert not best_cell([*rows, low]).learned


def test_single_seed_tables_have_no_summary_rows():
    header, body = table_rows([_cell("method=dss", 0.5, 0.5), _cell("method=finetune", 0.4, 0.4, method="finetune")])
    assert [r[0] for r in body] == ["method=dss", "method=finetune"]
    assert SeedStats.of([0.5]).n == 1 and math.isnan(SeedStats.of([0.5]).std)
    assert SeedStats.of([]).n == 0 and group_label("seed=3") == "seed=3" and group_label("a=1,seed=3,b=2") == "a=1,b=2"


def test_load_cells_pages_through_every_run(tmp_path, monkeypatch):
    """More finished runs than one search returns: every one is read (pages of PAGE runs)."""
    import leaderboard.data as data
    from harness.store import Store
    from harness.tracking import Tracker

    store = Store(tmp_path)
    tracker = Tracker(store, "many")
    for i in range(5):
        with tracker.run(f"cell{i}", {"eval.schemes": "['greedy']"}, {"cell_hash": f"h{i}", "cell": f"cell{i}", "task": "arith"}) as log:
            log.metrics({"test/acc/greedy": i / 10})
    monkeypatch.setattr(data, "PAGE", 2)
    cells = data.load_cells(store.tracking_uri, "many")
    assert sorted(c.cell for c in cells) == [f"cell{i}" for i in range(5)]


def test_the_verdict_never_compares_across_tasks():
    import dataclasses

    rows = [_cell("method=dss", 0.6, 0.6), _cell("method=finetune", 0.3, 0.3, method="finetune")]
    other_task = dataclasses.replace(_cell("method=dss,task=b", 0.9, 0.1), task="other")
    v = best_cell([*rows, other_task])
    assert v is not None and v.cell == "method=dss"
    assert [label for label, _, _ in v.comparison] == ["method=dss", "method=finetune"]


# ---------------------------------------------------------------- negative-data diagnostics


def test_solved_overlap_by_hand():
    from leaderboard.data import solved_overlap

    a = {"1": True, "2": True, "3": False, "4": False, "5": True}
    b = {"1": True, "2": False, "3": True, "4": False, "5": True}
    groups = {"1": "Algebra", "2": "Algebra", "3": "Geometry", "4": "Geometry", "5": "Geometry"}
    rows = {o.group: o for o in solved_overlap(a, b, groups)}
    assert (rows["overall"].solved_a, rows["overall"].solved_b, rows["overall"].both, rows["overall"].union) == (3, 3, 2, 4)
    assert rows["overall"].iou == 0.5
    assert (rows["Algebra"].both, rows["Algebra"].iou) == (1, 0.5)
    assert (rows["Geometry"].examples, rows["Geometry"].both, rows["Geometry"].iou) == (3, 1, 0.5)
    nothing = solved_overlap({"1": False}, {"1": False})
    assert [(o.group, o.iou) for o in nothing] == [("overall", 0.0)]


def test_solved_overlap_reproduces_tdg_table1_iou():
    """TDG Table 1's overall counts (29 both, 253 by the positive model, 166 by the negative one)
    give its printed IoU 0.074."""
    from leaderboard.data import Overlap

    assert round(Overlap("overall", 5000, 253, 166, 29).iou, 3) == 0.074


def test_solved_overlap_needs_the_same_examples():
    import pytest

    from harness.errors import UserError
    from leaderboard.data import solved_overlap

    with pytest.raises(UserError, match="different test examples"):
        solved_overlap({"1": True}, {"2": True})


def test_pareto_front_by_hand():
    from leaderboard.data import pareto_front

    nan = float("nan")
    # (cost, accuracy): on the front unless another is no costlier and no worse, one strictly;
    # two equal points do not dominate each other; a NaN is never on it
    points = [(1, 10), (2, 20), (2, 15), (3, 20), (4, 30), (nan, 99), (0.5, 5), (4, 30)]
    assert pareto_front(points) == [True, True, False, False, True, False, True, True]
    assert pareto_front([]) == []
