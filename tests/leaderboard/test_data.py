import math

from leaderboard.data import Verdict, best_cell, cell_row, table_rows

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
