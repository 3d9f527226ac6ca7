"""End to end: a shortened runs/qcrd-offline.yaml (DSS, QCRD with self-adversarial negatives and
QCRD with a fixed DSS generator) through the real pipeline, read back from MLflow."""

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
    "train.steps=4", "train.eval_every=2", "train.log_every=1", "train.batch_size=8",
    "decode.max_new_tokens=6", "student.tiny.vocab_size=300", "student.tiny.n_layers=1",
    "eval.schemes=[greedy]",
    "grid.method=[{name: dss}, {name: qcrd, iteration_steps: 2, j: 1, judge_pretrain_steps: 2, negative_max_new_tokens: 6},"
    " {name: qcrd, negatives: fixed, judge: false, negative_max_new_tokens: 6}]",
]


@pytest.mark.slow
def test_qcrd_grid_samples_its_own_negatives_and_reuses_the_dss_cell_as_fixed_generator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    grid = load_grid(ROOT / "runs" / "qcrd-offline.yaml", SHORT)
    results = run_grid(grid, "qcrd", store, show_progress=False)
    assert len(results) == 3 and not any(r.skipped for r in results)
    client = MlflowClient(store.tracking_uri)
    runs = {c.cell: client.get_run(c.run_id) for c in load_cells(store.tracking_uri, "qcrd")}
    dss = runs["method=dss"]
    own = runs["method=qcrd[iteration_steps=2,j=1,judge_pretrain_steps=2,negative_max_new_tokens=6]"]
    fixed = runs["method=qcrd[negatives=fixed,judge=False,negative_max_new_tokens=6]"]

    # QCRD read the majority-labelled bank and logged every part of its loss
    m = own.data.metrics
    assert m["data/with_positive"] + m["data/without_positive"] == 40
    assert {"train/qcrd/pred", "train/qcrd/cl", "train/qcrd/judge", "train/qcrd/a3", "train/qcrd/l_neg", "test/acc/greedy"} <= set(m)
    assert [x.value for x in client.get_metric_history(own.info.run_id, "train/qcrd/a3")] == pytest.approx([0.5, 0.5, 0.45, 0.45])
    assert client.get_metric_history(own.info.run_id, "qcrd_judge/train/loss")  # the judge's pretraining
    assert len(list((store.root / "stages").glob("qcrd-judge-*"))) == 1
    # per-example correctness rides in the tags (the leaderboard's paired tests need no download)
    from harness.evaluate import decode_bits

    assert len(decode_bits(own.data.tags["test/correct/greedy"])) == 8 and own.data.tags["test/ids"] == dss.data.tags["test/ids"]
    assert sum(decode_bits(own.data.tags["test/correct/greedy"])) == round(8 * m["test/acc/greedy"])
    ckpt = store.root / "checkpoints" / own.data.tags["checkpoint"]
    assert not (ckpt / "snapshots").exists() and (ckpt / "best").is_dir()

    # the fixed generator is the DSS cell's checkpoint, not a second DSS training
    assert fixed.data.tags["stage/dss_checkpoint"] == dss.data.tags["checkpoint"]
    assert fixed.data.tags["stage/dss_run"] == dss.info.run_id
    assert "train/qcrd/judge" not in fixed.data.metrics and "train/qcrd/l_neg" in fixed.data.metrics
    assert len([p for p in (store.root / "checkpoints").iterdir() if not p.name.startswith(".")]) == 3
