"""Tracking that survives its server (harness/tracking.py): a real MLflow server on 127.0.0.1,
stopped in the middle of a grid and started again; the outbox keeps what it missed, `sync`
uploads it once, and a second sync of the same journals changes nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import harness.run as pipeline
from harness.grid import run_grid
from harness.store import Store
from harness.tracking import OUTBOX, outbox_journals, sync
from tests.mlflow_server import MlflowServer
from tests.test_grid_scale import cell

ROOT = Path(__file__).resolve().parents[2]


def histories(client: MlflowClient, run) -> dict[str, list[tuple[int, float, int]]]:
    return {k: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics}


@pytest.mark.slow
def test_a_server_that_goes_away_mid_grid_loses_nothing_and_duplicates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # find the server away at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    server = MlflowServer(tmp_path)
    server.start()
    try:
        cells = [cell("a", grid="outbox"), cell("b", grid="outbox", method={"name": "single_task"}), cell("c", grid="outbox", method={"name": "dss"})]
        store = Store(tmp_path / "store")
        # the server stops in the middle of cell b: after its run was created and its training
        # logged, at its first evaluation (cell a evaluates valid and test)
        calls = {"n": 0}
        evaluate = pipeline.evaluate

        def stopping(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                server.stop()
            return evaluate(*args, **kwargs)

        monkeypatch.setattr(pipeline, "evaluate", stopping)
        results = run_grid(cells, "outbox", store, tracking_uri=server.url, show_progress=False)
        assert all(r.error is None for r in results)
        a, b, c = results
        assert not a.run_id.startswith(OUTBOX) and not b.run_id.startswith(OUTBOX) and c.run_id.startswith(OUTBOX)
        assert len(outbox_journals(store)) == 2  # the rest of b, all of c

        # while the server is away, a rerun finds every cell finished (the store's markers)
        again = run_grid(cells, "outbox", store, tracking_uri=server.url, show_progress=False)
        assert all(r.skipped for r in again)

        server.start()
        # back, not yet synced: cells b and c still count as finished (their results wait in the outbox)
        assert all(r.skipped for r in run_grid(cells, "outbox", store, tracking_uri=server.url, show_progress=False))
        saved = tmp_path / "outbox-copy"
        shutil.copytree(store.root / "outbox", saved)
        counts = sync(store, out=lambda line: None)
        assert counts["runs"] == 2 and counts["created"] == 1 and counts["points"] > 0 and not outbox_journals(store)

        client = MlflowClient(server.url)
        exp = client.get_experiment_by_name("outbox")
        runs = client.search_runs([exp.experiment_id])
        by_cell = {r.data.tags["cell"]: r for r in runs}
        assert len(runs) == 3 and set(by_cell) == {"a", "b", "c"}  # one run per cell, never two
        assert all(r.info.status == "FINISHED" for r in runs)
        assert by_cell["b"].info.run_id == b.run_id  # the run begun before the outage, completed
        for name, r in by_cell.items():
            h = histories(client, r)
            for key, points in h.items():
                assert len(points) == len(set(points)), (name, key)  # no point twice
            assert len(h["train/loss"]) == 2 and "test/acc/greedy" in h and "valid" in h and "time/train" in h, name
            assert "versions" in r.data.tags and "git_revision" in r.data.tags
            assert set(r.data.params) == set(by_cell["a"].data.params), name  # every param, once
            assert client.list_artifacts(r.info.run_id, "predictions"), name
        before = {name: histories(client, r) for name, r in by_cell.items()}

        # the same journals again (a sync cut short and rerun): nothing new, nothing created
        shutil.copytree(saved, store.root / "outbox", dirs_exist_ok=True)
        out = subprocess.run([sys.executable, "-m", "harness.cli", "sync", "--store", str(store.root), "--tracking-uri", server.url],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "0 metric points uploaded" in out.stdout and "(0 created)" in out.stdout
        runs = client.search_runs([exp.experiment_id])
        assert len(runs) == 3 and {r.data.tags["cell"]: histories(client, r) for r in runs} == before
    finally:
        server.stop()
