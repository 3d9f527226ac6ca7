"""--tracking-uri: the same grid logged to a real MLflow server over HTTP on 127.0.0.1."""

from pathlib import Path

import pytest

from harness.config import load_grid
from harness.grid import run_grid
from harness.store import Store
from leaderboard.data import load_cells
from tests.mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    try:
        yield server.url, server.artifacts
    finally:
        server.stop()


@pytest.mark.slow
def test_grid_logs_to_a_tracking_server(tmp_path, mlflow_server):
    url, artifacts = mlflow_server
    store = Store(tmp_path / "store")
    grid = load_grid(ROOT / "runs" / "demo.yaml", [
        "task.n_train=60", "task.n_valid=8", "task.n_test=8", "train.steps=2", "train.eval_every=1",
        "train.batch_size=4", "decode.max_new_tokens=4", "grid.method.name=[dss]", "grid.seed=[0]", "student.family=t5",
    ])
    [res] = run_grid(grid, "server-demo", store, tracking_uri=url, show_progress=False)
    [row] = load_cells(url, "server-demo")
    assert row.run_id == res.run_id and set(row.acc) == {"greedy", "majority@8"}
    # the server stored the predictions; the local store's database was never created
    assert list(artifacts.rglob("*.jsonl")) and not (store.root / "mlflow.db").exists()
    # resuming against the server skips the finished cell
    [again] = run_grid(grid, "server-demo", store, tracking_uri=url, show_progress=False)
    assert again.skipped
