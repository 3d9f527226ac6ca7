"""leaderboard/reported.yaml: the papers' numbers, each traceable to ../shared/REPORTED.md, each
row naming a method (or QCRD ablation cell) and a task that exist here."""

import re
from pathlib import Path

import pytest

from leaderboard import reported as rep

SHARED = Path(__file__).resolve().parents[3] / "shared" / "REPORTED.md"


def test_every_row_has_its_source_and_resolves():
    from methods import METHODS, make_config
    from tasks import TASKS

    rows = rep.load()
    assert len(rows) == 13 + 5 * 4 * 2 + 21
    for r in rows:
        assert r.paper and r.source and r.student and r.teacher and r.split and 0 < r.acc < 100
        assert r.task in TASKS
        if r.method is None:
            continue
        name, _, opts = r.method.partition("[")
        assert name in METHODS, r.method
        if opts:  # an ablation cell's label: its options make a valid config of the method
            options = dict(kv.split("=", 1) for kv in opts.rstrip("]").split(","))
            typed = {k: (v == "True" if v in ("True", "False") else float(v) if "." in v else int(v) if v.isdigit() else v) for k, v in options.items()}
            make_config(METHODS[name], typed)
    tdg = [r for r in rows if r.table == "tdg-table2"]
    assert all(sum(r.subjects.values()) > 0 and len(r.subjects) == 7 for r in tdg)
    assert {r.label for r in tdg if r.paper_method == "NAT"} == {"reported: NAT (GPT-3.5-Turbo)", "reported: NAT (GPT-4)"}


def test_ablation_labels_are_the_grid_cells():
    """The QCRD ablation rows carry exactly the cell names runs/paper-qcrd-ablation.yaml gives."""
    from harness.config import load_grid

    root = Path(__file__).resolve().parents[2]
    cells = {c.split("=", 1)[1] for c, _ in load_grid(root / "runs" / "paper-qcrd-ablation.yaml").cells()}
    labels = {r.method for r in rep.load() if r.table == "qcrd-ablations"}
    assert labels <= cells and len(labels) == 21  # every reported setting has its cell (m=5/k=1... is the full method)


@pytest.mark.skipif(not SHARED.is_file(), reason="needs ../shared/REPORTED.md beside the checkout")
def test_every_number_is_in_reported_md():
    text = SHARED.read_text(encoding="utf-8")
    numbers = set(re.findall(r"\d+\.\d+", text))
    for r in rep.load():
        for v in [r.acc, *r.subjects.values()]:
            assert any(f"{v:.{d}f}" in numbers for d in (1, 2)), (r.table, r.paper_method, v)


def test_a_bad_file_is_one_clear_error(tmp_path):
    from harness.errors import UserError

    bad = tmp_path / "r.yaml"
    bad.write_text("tables:\n  - {id: x, paper: p, source: s, student: st, teacher: t, split: test, rows: [{method: dss, paper_method: D, acc: 1.0}]}\n")
    with pytest.raises(UserError, match="gives acc but the table names no task"):
        rep.load(bad)
