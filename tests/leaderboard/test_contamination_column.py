"""The main table's `contam.` column (leaderboard/data.py contamination_column)."""

from __future__ import annotations

from leaderboard import data

TAGS = {"task": "arith", "student": "tiny-t5", "cell_hash": "x"}
PARAMS = {"eval.schemes": "['greedy']"}


def run(run_id: str, method: str, seed: str, **contamination: float) -> data.CellRow:
    metrics = {"test/acc/greedy": 0.5, "test/lo/greedy": 0.4, "test/hi/greedy": 0.6}
    metrics |= {f"data/contamination/{k}": v for k, v in contamination.items()}
    return data.cell_row("g", run_id, {**TAGS, "method": method, "cell": f"method={method},seed={seed}"}, {**PARAMS, "seed": seed}, metrics)


def test_the_column_shows_the_worst_run_of_each_row_and_flags_it():
    rows = [
        run("a0", "dss", "0", test_total=0.0, test_total_share=0.0),
        run("a1", "dss", "1", test_total=3.0, test_total_share=0.006),  # one seed's bank leaked
        run("b0", "finetune", "0", test_total=0.0, test_total_share=0.0),
        run("c0", "mi", "0"),  # logged before the check
    ]
    table = data.main_table(rows, "greedy", resamples=100)
    column = dict(zip([r.label for r in table.rows], data.contamination_column(table, rows), strict=True))
    assert column == {"dss": "3 (0.6%) !", "finetune": "0", "mi": "-"}
