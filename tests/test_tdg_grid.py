"""End to end: a shortened runs/tdg-offline.yaml (NAT, NCE, the ASC ranker, an out-of-distribution
test set) through the real pipeline, read back from MLflow."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.config import load_grid
from harness.grid import run_grid
from harness.store import Store
from leaderboard.data import load_cells

ROOT = Path(__file__).resolve().parent.parent
SHORT = [
    "task.n_train=60", "task.n_valid=12", "task.n_test=12",
    "train.steps=4", "train.eval_every=2", "train.log_every=2", "train.batch_size=8",
    "decode.max_new_tokens=8", "student.tiny.vocab_size=300", "student.tiny.n_layers=1",
    "ranker.steps=4", "ranker.batch_size=4",
    "eval.schemes=[greedy, majority@4, 'asc:1@4', 'asc:3@4']",
    "eval.test_sets=[{name: arith, n_train: 4, n_valid: 4, n_test: 6, min_digits: 3, max_digits: 3}]",
]


@pytest.mark.slow
def test_tdg_grid_shares_stages_scores_chains_and_records_where_nce_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    grid = load_grid(ROOT / "runs" / "tdg-offline.yaml", SHORT + ["grid.method.name=[nat, nce]"])
    results = run_grid(grid, "tdg", store, show_progress=False)
    assert len(results) == 2 and not any(r.skipped for r in results)
    client = MlflowClient(store.tracking_uri)
    runs = {c.cell: client.get_run(c.run_id) for c in load_cells(store.tracking_uri, "tdg")}
    nat, nce = runs["method=nat"], runs["method=nce"]

    # one ranker for the bank, its held-out metrics in both runs, every chain scored
    assert len(list((store.root / "rankers").iterdir())) == 1
    for run in (nat, nce):
        m = run.data.metrics
        assert 0.0 <= m["ranker/auc"] <= 1.0 and 0.0 <= m["ranker/pair_accuracy"] <= 1.0
        assert m["ranker/train_pairs"] > 0 and m["ranker/too_long/test"] == 0
        assert {"test/acc/asc_1_k4", "test/acc/asc_3_k4", "valid/acc/asc_1_k4"} <= set(m)
        assert "ood/arith/acc/greedy" in m and m["data/ood/arith"] == 6
        assert run.data.tags["ranker"]
        curve = client.get_metric_history(run.info.run_id, "ranker/loss")  # replayed from the ranker's log
        assert [x.step for x in curve] == [4] and curve[0].value > 0
    scores = list((store.root / "ranker_scores").iterdir())
    assert len(scores) >= 4  # valid + test + ood per cell (untrained off)

    # NAT: its negative stage is cached once, its integration weights are logged
    assert len(list((store.root / "stages").glob("nat-neg-*"))) == 1
    a = client.get_metric_history(nat.info.run_id, "train/nat/a_mean")
    assert len(a) == 2 and all(abs(x.value) <= 0.5 for x in a)
    assert client.get_metric_history(nat.info.run_id, "nat_stage1/train/loss")

    # NCE built on the NAT cell's checkpoint (trained once: two checkpoints in all) and says so
    assert nce.data.tags["stage/nat_checkpoint"] == nat.data.tags["checkpoint"]
    assert nce.data.tags["stage/nat_run"] == nat.info.run_id
    assert len([p for p in (store.root / "checkpoints").iterdir() if not p.name.startswith(".")]) == 2
    assert client.get_metric_history(nce.info.run_id, "train/nce/w")
