"""--tracking-uri: the same grid logged to a real MLflow server over HTTP on 127.0.0.1."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.config import load_grid
from harness.grid import run_grid
from harness.store import Store
from leaderboard.data import load_cells

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # bounded wait for start-up
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within 120 s")
        yield url, tmp_path / "server-artifacts"
    finally:
        proc.terminate()  # only the process this test started, by its handle
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


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
