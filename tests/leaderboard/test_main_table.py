"""The main table (leaderboard/data.py main_table) on MLflow runs logged by the test: seeds, the
best cell, ties by the paired test on per-example correctness, fairness flags, test-set columns,
reported rows and the exports."""

from __future__ import annotations

import math
import random

import pytest

from harness.evaluate import decode_bits, encode_bits, ids_hash
from harness.store import Store
from harness.tracking import Tracker
from leaderboard import data
from leaderboard.reported import ReportedRow

N = 400  # test examples


def correct(rate: float, seed: int, n: int = N) -> list[bool]:
    rnd = random.Random(seed)
    return [rnd.random() < rate for _ in range(n)]


def log_run(tracker: Tracker, method: str, task: str, bits: list[bool], seed: int = 0, student: str = "tiny-t5", bank: str = "bank1",
            steps: int = 100, test_set: str = "ids1", options: dict | None = None) -> None:
    acc = sum(bits) / len(bits)
    params = {"seed": seed, "method.name": method, "eval.schemes": ["greedy"], "train.steps": steps, "train.batch_size": 8,
              "train.grad_accum": 1, "train.eval_every": 50, **{f"method.{k}": v for k, v in (options or {}).items()}}
    tags = {"cell_hash": f"{method}-{task}-{seed}-{student}-{bank}-{steps}-{test_set}-{options}", "cell": f"method={method},task={task},seed={seed}",
            "task": task, "method": method, "student": student, "teacher_bank": bank, "task_version": "1", "prompt_version": "1",
            "grid": "g", "test/ids": test_set, "test/correct/greedy": encode_bits(bits)}
    with tracker.run(tags["cell"], params, tags) as log:
        log.metrics({"test/acc/greedy": acc, "test/lo/greedy": acc - 0.05, "test/hi/greedy": acc + 0.05})


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def test_bits_round_trip_and_ids_hash():
    bits = correct(0.3, 1, 1000)
    assert decode_bits(encode_bits(bits)) == bits
    assert decode_bits(encode_bits([])) == [] and decode_bits("3:5") == [True, False, True]
    with pytest.raises(ValueError):
        decode_bits("2:ff")
    assert ids_hash(["b", "a"]) == ids_hash(["a", "b"]) != ids_hash(["a", "c"])


def test_seeds_best_ties_and_columns(store):
    t = Tracker(store, "g")
    strong = correct(0.70, 1)
    near = [b if i % 40 else not b for i, b in enumerate(strong)]  # 10 flips away from strong: a tie
    for seed in (0, 1):
        log_run(t, "qcrd", "svamp", strong, seed=seed)
        log_run(t, "dss", "svamp", near, seed=seed)
    log_run(t, "finetune", "svamp", correct(0.30, 3))  # far below: no tie
    log_run(t, "dss", "csqa", correct(0.5, 4), test_set="ids2")
    rows = data.load_cells(store.tracking_uri, "g")
    table = data.main_table(rows, "greedy")
    assert table.columns == ["svamp", "csqa"]
    cells = {r.label: r.cells for r in table.rows}
    q, d, f = cells["qcrd"]["svamp"], cells["dss"]["svamp"], cells["finetune"]["svamp"]
    assert q.n == 2 and q.std == 0.0 and q.mean == pytest.approx(100 * sum(strong) / N)
    assert q.best and not q.tie and d.tie and not d.best and not f.tie and not f.best
    assert q.lo < q.mean < q.hi  # the seed mean's paired-bootstrap interval
    assert cells["dss"]["csqa"].best and "csqa" not in cells["qcrd"]
    header, grid = data.table_grid(table)
    assert header == ["method", "svamp", "csqa", "average"]
    qrow = next(g for g in grid if g[0] == "qcrd")
    assert qrow[1].endswith("(n=2) *") and qrow[3].endswith("(1/2)")


def test_a_task_on_two_test_sets_gets_two_columns(store):
    t = Tracker(store, "g")
    log_run(t, "dss", "arith", correct(0.5, 1), test_set="aaaaaaaa")
    log_run(t, "finetune", "arith", correct(0.5, 2), test_set="bbbbbbbb")
    table = data.main_table(data.load_cells(store.tracking_uri), "greedy")
    assert table.columns == ["arith (v1, test aaaaaa)", "arith (v1, test bbbbbb)"]
    assert all(len(r.cells) == 1 and next(iter(r.cells.values())).best for r in table.rows)  # never compared


def test_fairness_flags_name_what_differs(store):
    t = Tracker(store, "g")
    for m in ("dss", "mi", "qcrd"):
        log_run(t, m, "svamp", correct(0.5, 1))
    log_run(t, "finetune", "svamp", correct(0.5, 2), student="t5-base", steps=200)
    log_run(t, "nce", "svamp", correct(0.5, 3), bank="bank2")
    cells = {r.label: r.cells["svamp"] for r in data.main_table(data.load_cells(store.tracking_uri), "greedy").rows}
    assert cells["dss"].flags == cells["mi"].flags == cells["qcrd"].flags == []
    assert cells["finetune"].flags == ["student differs: t5-base (column: tiny-t5)", "training budget differs: 200 steps x 8x1 (column: 100 steps x 8x1)"]
    assert cells["nce"].flags == ["teacher bank differs: bank2 (column: bank1)"]
    assert data.table_grid(data.main_table(data.load_cells(store.tracking_uri), "greedy"))[1][3][1].endswith("!")


def test_filters_and_their_options(store):
    t = Tracker(store, "g")
    log_run(t, "dss", "svamp", correct(0.5, 1))
    log_run(t, "dss", "svamp", correct(0.5, 2), student="t5-base")
    rows = data.load_cells(store.tracking_uri)
    assert data.options(rows)["student"] == ["tiny-t5", "t5-base"]
    assert [r.student for r in data.filter_rows(rows, student="t5-base")] == ["t5-base"]
    assert len(data.filter_rows(rows, student=None, grid="")) == 2
    with pytest.raises(ValueError, match="unknown filter"):
        data.filter_rows(rows, colour="red")


def test_method_options_name_rows_as_the_reported_ablations_do(store):
    t = Tracker(store, "g")
    log_run(t, "qcrd", "svamp", correct(0.5, 1), options={"k": 0, "judge": False})
    rows = data.load_cells(store.tracking_uri)
    assert rows[0].method_label == "qcrd[judge=False,k=0]"
    assert data.method_label(*data.parse_method_label("qcrd[k=0,judge=False]")) == rows[0].method_label


def test_reported_rows_sit_beside_measured_ones(store):
    t = Tracker(store, "g")
    log_run(t, "qcrd", "svamp", correct(0.5, 1))
    rep = [ReportedRow("qcrd-table1", "QCRD", "Table 1", "T5-base", "GPT-3.5-turbo", "svamp", "test", "qcrd", "Ours", 69.0),
           ReportedRow("tdg-table2", "TDG", "Table 2", "LLaMA-7B", "GPT-4", "math", "test", "nat", "NAT", 6.83)]
    table = data.main_table(data.load_cells(store.tracking_uri), "greedy", reported=rep)
    labels = [(r.label, r.kind) for r in table.rows]
    assert labels == [("qcrd", "measured"), ("reported: Ours (GPT-3.5-turbo) · T5-base", "reported")]  # no math column: no TDG row
    reported = table.rows[1].cells["svamp"]
    assert reported.mean == 69.0 and not reported.best and math.isnan(reported.lo)
    assert table.rows[0].cells["svamp"].best  # reported numbers are not candidates for best


def test_ablation_numbers_only_beside_their_measured_setting(store):
    from leaderboard.reported import reported

    t = Tracker(store, "g")
    log_run(t, "qcrd", "svamp", correct(0.5, 1), options={"k": 0})
    labels = [r.label for r in data.main_table(data.load_cells(store.tracking_uri), "greedy", reported=list(reported())).rows]
    assert "reported: Table 6: k 0 (GPT-3.5-turbo) · T5-base" in labels  # its cell is here
    assert not any("Table 5" in x for x in labels)  # no maxmin cell measured: no maxmin number
    assert "reported: Ours (GPT-3.5-turbo) · T5-base" in labels  # main-table numbers always


def test_exports_carry_the_same_numbers(store):
    t = Tracker(store, "g")
    log_run(t, "dss", "svamp", correct(0.6, 1))
    log_run(t, "finetune", "svamp", correct(0.2, 2))
    table = data.main_table(data.load_cells(store.tracking_uri), "greedy")
    header, grid = data.table_grid(table)
    csv_text = data.to_csv(table)
    assert csv_text.splitlines()[0] == ",".join(header) and all(g[1] in csv_text for g in grid)
    md = data.to_markdown(table)
    assert md.splitlines()[0] == "| method | svamp | average |" and all(g[1] in md for g in grid)
    tex = data.to_latex(table)
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{" + grid[0][1].removesuffix(" *") + "}" in tex


def test_runs_without_the_scheme_are_listed_as_skipped(store):
    t = Tracker(store, "g")
    log_run(t, "dss", "svamp", correct(0.6, 1))
    table = data.main_table(data.load_cells(store.tracking_uri), "majority@8")
    assert table.rows == [] and len(table.skipped) == 1 and "no test accuracy for majority@8" in table.skipped[0]
