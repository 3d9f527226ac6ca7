"""Grids at scale (harness/executors.py, harness/grid.py, harness/cells.py, harness/status.py):
cells in worker processes give the sequential results, a failing cell stays in its cell, a grid
killed with SIGKILL at several points finishes as an uninterrupted one, and status reads it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from harness.config import GridSpec, RunSpec, validate
from harness.evaluate import read_predictions
from harness.executors import Local, Sequential
from harness.grid import run_grid
from harness.run import cell_hash
from harness.status import grid_status
from harness.store import Store

ROOT = Path(__file__).resolve().parent.parent
BASE = {
    "task": {"name": "arith", "n_train": 60, "n_valid": 8, "n_test": 8},
    "teacher": {"name": "oracle", "k": 1},
    "student": {"model": "tiny", "family": "llama", "tiny": {"vocab_size": 300, "n_layers": 1, "seed": 0}},
    "train": {"steps": 2, "batch_size": 8, "eval_every": 2, "log_every": 1},
    "decode": {"max_new_tokens": 6},
    "eval": {"schemes": ["greedy"], "untrained": False, "bootstrap": 100},
}
# an out-of-distribution test set that cannot load (100 distinct one-digit sums, 500 asked for):
# the cell fails at its last stage, after training, inside its MLflow run
BAD_OOD = [{"name": "arith", "max_digits": 1, "operators": ["+"], "n_train": 0, "n_valid": 0, "n_test": 500}]


def cell(name: str, grid: str = "scale", **over) -> tuple[str, RunSpec]:
    data = json.loads(json.dumps({**BASE, "name": grid, "method": {"name": "finetune"}}))
    for key, value in over.items():
        head, _, rest = key.partition("__")
        if rest:
            data[head] = {**data.get(head, {}), rest: value}
        else:
            data[head] = value
    return name, validate(RunSpec, data, where=name)


def runs_by_cell(store: Store, experiment: str) -> dict[str, list]:
    client = MlflowClient(store.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    out: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id]):
        out.setdefault(r.data.tags["cell"], []).append(r)
    return out


def test_cells_in_worker_processes_give_the_sequential_results_and_a_failing_cell_stays_in_its_cell(tmp_path):
    cells = [cell("finetune"), cell("single_task", method={"name": "single_task"}), cell("bad", eval__test_sets=BAD_OOD)]
    store = Store(tmp_path / "parallel")
    results = run_grid(cells, "scale", store, show_progress=False, executor=Local(workers=2, threads=1))
    assert [r.cell for r in results] == ["finetune", "single_task", "bad"]
    good, bad = results[:2], results[2]
    assert all(r.error is None and not r.skipped for r in good)
    assert bad.error and "not enough distinct questions" in bad.error

    # the same two cells one after another in this process, on one thread: the same results
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = run_grid(cells[:2], "scale", Store(tmp_path / "sequential"), show_progress=False, executor=Sequential())
    finally:
        torch.set_num_threads(threads)
    for r, q in zip(good, ref, strict=True):
        assert r.scores["greedy"] == q.scores["greedy"]
    for pred in (tmp_path / "sequential" / "predictions").iterdir():
        mine = read_predictions(store.root / "predictions" / pred.name).chains
        assert [c.text for c in mine] == [c.text for c in read_predictions(pred).chains]

    # the failure: a FAILED run with its traceback, a marker with the error; one FINISHED run per good cell
    runs = runs_by_cell(store, "scale")
    assert [r.info.status for r in runs["finetune"]] == ["FINISHED"] and [r.info.status for r in runs["single_task"]] == ["FINISHED"]
    [failed] = runs["bad"]
    assert failed.info.status == "FAILED" and failed.info.run_id == bad.run_id
    tb = Path(MlflowClient(store.tracking_uri).download_artifacts(bad.run_id, "error/traceback.txt", str(tmp_path)))
    assert "Traceback" in tb.read_text() and "not enough distinct questions" in tb.read_text()
    marker = json.loads((store.root / "cells" / f"{cell_hash(cells[2][1])}.json").read_text())
    assert marker["state"] == "failed" and "not enough distinct questions" in marker["error"]
    # its out-of-distribution set is first loaded by the contamination check, before any cell
    # trains: the cell fails there, its FAILED run opened for it with nothing measured
    assert failed.data.metrics == {} and marker["error"].startswith("shared stage: ")

    # status reads it all without running anything
    rows, stages, note = grid_status(cells, "scale", store)
    assert [r.state for r in rows] == ["done", "done", "failed"] and "not enough distinct" in rows[2].detail and note == ""
    assert any(s.startswith("teacher bank") and state.startswith("done") for s, state in stages)

    # a rerun retries only the failed cell
    again = run_grid(cells, "scale", store, show_progress=False, executor=Local(workers=2, threads=1))
    assert [r.skipped for r in again] == [True, True, False] and again[2].error
    runs = runs_by_cell(store, "scale")
    assert len(runs["finetune"]) == 1 and [r.info.status for r in runs["bad"]] == ["FAILED", "FAILED"]


def test_a_shared_stage_that_fails_fails_its_cells_only_and_fail_fast_stops(tmp_path):
    # teacher gold: arith has no reference rationales, so its bank cannot be built
    cells = [cell("no-bank", teacher={"name": "gold"}), cell("fine", task__n_train=40)]
    store = Store(tmp_path / "store")
    results = run_grid(cells, "shared", store, show_progress=False, fail_fast=True)
    assert results[0].error.startswith("shared stage: UserError: teacher 'gold'")
    assert results[1].error == "not run (--fail-fast)" and not (store.root / "checkpoints").exists()
    runs = runs_by_cell(store, "shared")
    assert [r.info.status for r in runs["no-bank"]] == ["FAILED"] and "fine" not in runs
    rows, _, _ = grid_status(cells, "shared", store)
    assert [r.state for r in rows] == ["failed", "pending"]
    # a cell that fails inside its run stops the rest too
    cells = [cell("bad", eval__test_sets=BAD_OOD, train__steps=1), cell("after", task__n_train=40), cell("later", task__n_train=50)]
    results = run_grid(cells, "shared", store, show_progress=False, fail_fast=True)
    assert "not enough distinct questions" in results[0].error and [r.error for r in results[1:]] == ["not run (--fail-fast)"] * 2


def test_status_tells_a_killed_cell_from_a_running_one(tmp_path):
    from harness import cells as markers

    cells = [cell("a"), cell("b", task__n_train=40)]
    store = Store(tmp_path / "store")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    markers.mark(store, cell_hash(cells[0][1]), "running", cell="a")
    path = store.root / "cells" / f"{cell_hash(cells[1][1])}.json"
    markers.mark(store, cell_hash(cells[1][1]), "running", cell="b")
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": int(dead)}))
    rows, stages, _ = grid_status(cells, "status", store)
    assert [r.state for r in rows] == ["running", "stale"] and f"pid {os.getpid()}" in rows[0].detail
    assert [state for _, state in stages] == ["missing"] * 4  # two banks, two tiny students
    out = subprocess.run([sys.executable, "-m", "harness.cli", "status", "--store", str(store.root), "runs/demo.yaml"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "pending" in out.stdout and "shared stage" in out.stdout


# ---------------------------------------------------------------- SIGKILL at several points


GRID = {
    "name": "killed",
    "base": {**BASE, "train": {"steps": 12, "batch_size": 8, "eval_every": 3, "log_every": 1}, "method": {"name": "finetune"}},
    "grid": {"method.name": ["finetune", "dss", "single_task"]},
}


def grid_cli(spec: Path, store: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "grid", str(spec), "--store", str(store), "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> bool:
    """SIGKILL the grid's whole process group (the grid and its workers) once `ready()`; False
    when the grid ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("the grid neither reached the kill point nor ended")


@pytest.mark.slow
def test_a_grid_killed_at_several_points_ends_as_an_uninterrupted_one(tmp_path):
    import yaml

    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump(GRID))
    ref_store, store = tmp_path / "reference", tmp_path / "killed"
    # the uninterrupted reference: the same cells one after another in this process, on the
    # workers' one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert not any(r.error for r in run_grid(validate(GridSpec, GRID, where="test"), "killed", Store(ref_store), show_progress=False))
    finally:
        torch.set_num_threads(threads)

    partial = lambda: list((store / "checkpoints").glob(".*.partial/last.pt"))  # noqa: E731
    points = [
        ("in the shared stages", lambda: (store / "banks").is_dir()),
        ("mid-training", lambda: bool(partial())),
        ("while decoding", lambda: (store / "predictions").is_dir() and any((store / "predictions").iterdir())),
    ]
    killed = 0
    for _, ready in points:
        killed += kill_when(grid_cli(spec, store, "--workers", "2", "--threads", "1"), ready)
    assert killed == 3
    last = grid_cli(spec, store, "--workers", "2", "--threads", "1")
    assert last.wait(timeout=600) == 0, last.stdout.read().decode()[-3000:]

    a, b = Store(ref_store), Store(store)
    ref_runs, runs = runs_by_cell(a, "killed"), runs_by_cell(b, "killed")
    assert set(runs) == set(ref_runs) == {"method=finetune", "method=dss", "method=single_task"}
    for name, rs in runs.items():
        finished = [r for r in rs if r.info.status == "FINISHED"]
        assert len(finished) == 1, name  # exactly one FINISHED run; the killed ones are marked KILLED
        assert all(r.info.status == "KILLED" for r in rs if r not in finished)
        want = ref_runs[name][0].data.metrics
        assert finished[0].data.metrics["test/acc/greedy"] == want["test/acc/greedy"]
        assert finished[0].data.metrics["train/best_valid"] == want["train/best_valid"]
    # (a kill in the middle of writing leaves a hidden temp folder, never a half-written result)
    done = sorted(p.name for p in (store / "predictions").iterdir() if not p.name.startswith("."))
    assert done == sorted(p.name for p in (ref_store / "predictions").iterdir())
    for pred in (ref_store / "predictions").iterdir():
        assert [c.text for c in read_predictions(store / "predictions" / pred.name).chains] == [c.text for c in read_predictions(pred).chains]
    # every shared stage once: one bank (each chunk once), one tiny model
    [bank] = [p for p in (store / "banks").iterdir()]
    chunks = [json.loads(line)["chunk"] for line in (bank / "chains.jsonl").read_text().splitlines() if '"kind": "chunk"' in line]
    assert sorted(chunks) == sorted(set(chunks))
    assert len([p for p in (store / "models").iterdir() if not p.name.startswith(".")]) == 1


def test_the_command_line_lists_failed_cells_and_exits_non_zero(tmp_path):
    import yaml

    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump({"name": "cli-fail", "base": {**BASE, "method": {"name": "finetune"}}, "grid": {"teacher.name": ["gold"]}}))
    proc = grid_cli(spec, tmp_path / "store")
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 2, out  # a mistake in the input (no rationales): the usage code
    assert "1 of 1 cells failed (rerunning the grid retries only them):" in out
    assert "teacher=gold: shared stage: UserError: teacher 'gold': task 'arith' has no reference rationales" in out
    assert "Traceback" not in out  # the traceback is in the run's artifact and the store, not on screen
