"""End to end: a shortened runs/fdd-offline.yaml (single_task and a 2-round FDD on tiny Llama)
through the real pipeline, read back from MLflow, the store and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.config import load_grid
from harness.grid import run_grid
from harness.store import Store
from leaderboard.data import load_cells

ROOT = Path(__file__).resolve().parent.parent
SHORT = [
    "task.n_train=40", "task.n_valid=8", "task.n_test=8",
    "train.steps=6", "train.eval_every=3", "train.log_every=1", "train.batch_size=8",
    "decode.max_new_tokens=12", "student.family=llama", "student.tiny.vocab_size=300", "student.tiny.n_layers=1",
    "grid.method=[{name: single_task}, {name: fdd, rounds: 2, k: 3, teacher: {wrong_rate: 0.4}}]",
]


@pytest.mark.slow
def test_two_rounds_of_fdd_add_problems_with_complete_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    grid = load_grid(ROOT / "runs" / "fdd-offline.yaml", SHORT)
    results = run_grid(grid, "fdd", store, show_progress=False)
    assert len(results) == 2 and not any(r.skipped for r in results)
    client = MlflowClient(store.tracking_uri)
    runs = {c.cell: client.get_run(c.run_id) for c in load_cells(store.tracking_uri, "fdd")}
    single, run = runs["method=single_task"], runs["method=fdd"]
    rid = run.info.run_id

    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(rid, key)]

    # per round: valid accuracy, data size, steps (the budget split: 3 + 3 = single_task's 6)
    assert [s for s, _ in history("fdd/valid")] == [0, 1]
    assert sum(v for _, v in history("fdd/steps")) == 6 == single.data.metrics["train/total_steps"]
    items = dict(history("fdd/train_items"))
    # per generation round: the easy/hard split, written / kept / rejected per kind, teacher tokens
    m = {k: dict(history(k)) for k in ("fdd/easy", "fdd/hard", "fdd/written/harder", "fdd/written/similar", "fdd/kept/harder",
                                       "fdd/kept/similar", "fdd/rejected/similar", "fdd/rejection_rate/similar", "fdd/teacher_tokens")}
    assert m["fdd/easy"][1] + m["fdd/hard"][1] == 40
    assert m["fdd/written/harder"][1] + m["fdd/written/similar"][1] == 40 and m["fdd/teacher_tokens"][1] > 0
    kept = m["fdd/kept/harder"][1] + m["fdd/kept/similar"][1]
    assert 0 < kept and items[1] == items[0] + kept  # round 1 trained on D_0 + exactly the kept problems

    # provenance: every problem, in the run's artifacts and in its own bank in the store
    local = client.download_artifacts(rid, "method/fdd/round-1.jsonl", str(tmp_path))
    rows = [json.loads(line) for line in Path(local).read_text().splitlines()]
    assert len(rows) == len({r["parent"] for r in rows}) == 40  # one problem per train problem
    assert sum(r["verdict"] == "kept" for r in rows) == kept
    for r in rows:
        assert r["round"] == 1 and r["kind"] in ("harder", "similar") and r["parent_question"].startswith("Calculate")
        assert r["verdict"] in ("kept", "contaminated", "tie", "disagree", "no_answer", "duplicate", "unparsed")
        if "answers" in r:
            assert len(r["answers"]) == 3 and r["problem"]["question"] and r["truth"]
    bank = store.root / "banks" / rows[0]["bank"]
    manifest = json.loads((bank / "manifest.json").read_text())
    assert manifest["kind"] == "fdd-problems" and manifest["round"] == 1 and manifest["k"] == 3
    out = subprocess.run([sys.executable, "-m", "harness.cli", "teacher", "stats", rows[0]["bank"], "--store", str(store.root)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "FDD generation round" in out.stdout and "similar: written / kept / rejected" in out.stdout

    # a rerun reuses everything: the finished cells are skipped, no teacher call
    again = run_grid(grid, "fdd", store, show_progress=False)
    assert all(r.skipped for r in again)
