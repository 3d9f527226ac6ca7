"""Tracker.run: a failing cell keeps what it logged before failing."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from harness.store import Store
from harness.tracking import Tracker


def test_a_failed_run_keeps_its_buffered_metrics(tmp_path):
    store = Store(tmp_path)
    tracker = Tracker(store, "t")
    with pytest.raises(RuntimeError, match="boom"):
        with tracker.run("cell", {"a": 1}, {"cell_hash": "h"}) as log:
            run_id = log.run_id
            log.metrics({"train/loss": 1.5}, 3)  # buffered: fewer than a batch
            raise RuntimeError("boom")
    client = MlflowClient(store.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == [(3, 1.5)]
