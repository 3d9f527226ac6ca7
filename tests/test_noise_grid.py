"""End to end: a shortened demo grid over a teacher-noise axis (teacher.noise.rate on the oracle's
bank), offline, then `distillbench noise-curve` on it."""

from __future__ import annotations

import json
import os
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
OVERRIDES = [
    "task.n_train=40", "task.n_valid=8", "task.n_test=16",
    "train.steps=2", "train.eval_every=2", "train.log_every=2", "train.batch_size=8",
    "decode.max_new_tokens=6", "student.tiny.vocab_size=300", "eval.schemes=[greedy]", "eval.untrained=false",
    # two chains per example, a quarter slipped: negatives for the noise to swap in, from any
    # example (most examples have no negative of their own: `own` would keep their positives)
    "teacher.k=2", "teacher.wrong_rate=0.25", "teacher.noise.swap=other",
    "grid.method.name=[single_task,ul]", "grid.seed=[0]", "grid.teacher.noise.rate=[0,0.5]",
]  # fmt: skip


@pytest.mark.slow
def test_noise_grid_then_noise_curve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    grid = load_grid(ROOT / "runs" / "demo.yaml", OVERRIDES)
    results = run_grid(grid, "demo", store, show_progress=False)
    assert [r.cell for r in results] == [
        "method=single_task,seed=0,noise.rate=0", "method=single_task,seed=0,noise.rate=0.5",
        "method=ul,seed=0,noise.rate=0", "method=ul,seed=0,noise.rate=0.5",
    ]  # fmt: skip
    assert not any(r.error for r in results), [r.error for r in results]
    # the teacher generated once: one bank and one tiny student for every rate
    assert len(list((store.root / "banks").iterdir())) == 1 and len(list((store.root / "models").iterdir())) == 1
    client = MlflowClient(store.tracking_uri)
    runs = {r.cell: client.get_run(r.run_id).data for r in results}
    clean, noisy = runs["method=ul,seed=0,noise.rate=0"], runs["method=ul,seed=0,noise.rate=0.5"]
    generated = next((store.root / "banks").iterdir()).name
    assert clean.tags["teacher_bank"] == generated == clean.tags["teacher_bank_generated"] == noisy.tags["teacher_bank_generated"]
    assert noisy.tags["teacher_bank"] != generated and noisy.params["teacher.noise.rate"] == "0.5"
    m0, m1 = clean.metrics, noisy.metrics
    assert m0["teacher/noise/swapped"] == 0 and m1["teacher/noise/swapped"] > 0
    assert m1["teacher/noise/target"] == m1["teacher/noise/swapped"] and m1["teacher/noise/unswappable"] == 0
    assert m1["teacher/wrong_share"] == pytest.approx(m1["teacher/noise/wrong_share"])
    assert m1["teacher/wrong_share"] > m0["teacher/wrong_share"] == m0["teacher/noise/wrong_share_before"]
    # the wrong share rises by what was swapped in, out of K = 2 chains per train example
    assert m1["teacher/wrong_share"] - m0["teacher/wrong_share"] == pytest.approx(m1["teacher/noise/swapped"] / (2 * 40))
    assert len(load_cells(store.tracking_uri, "demo")) == 4

    env = {k: v for k, v in os.environ.items() if k != "DISTILLBENCH_DATA"} | {"HF_HUB_OFFLINE": "1"}
    chart = tmp_path / "curve.json"
    r = subprocess.run(
        [sys.executable, "-m", "harness.cli", "noise-curve", str(ROOT / "runs" / "demo.yaml"), *OVERRIDES,
         "--store", str(store.root), "--out", str(chart)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "against teacher.noise.rate" in r.stdout and "4 of 4 cells finished" in r.stdout
    lines = r.stdout.splitlines()
    for method in ("single_task", "ul"):
        line = next(x for x in lines if x.strip("│ ").startswith(method))
        assert line.count("[") >= 2  # an interval at each rate
    assert "drop 0%→50%" in r.stdout
    data = next(iter(json.loads(chart.read_text())["datasets"].values()))
    assert sorted((d["method"], d["rate"]) for d in data) == [("single_task", 0), ("single_task", 50), ("ul", 0), ("ul", 50)]
    # by name too, and a grid without a noise axis is a one-line error (in this process: quicker)
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.errors import UserError

    r = CliRunner().invoke(app, ["noise-curve", "demo", "--store", str(store.root)])
    assert r.exit_code == 0 and "ul" in r.stdout, r.stdout
    r = CliRunner().invoke(app, ["noise-curve", str(ROOT / "runs" / "demo.yaml"), "--store", str(store.root)])
    assert isinstance(r.exception, UserError) and "has no noise axis" in str(r.exception)
