"""`distillbench export lm-eval` and `distillbench eval-lm-eval RUN_ID` through the console script."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.config import load_grid
from harness.grid import run_grid
from harness.store import Store
from tests.test_cli import ROOT, cli
from tests.test_e2e import SHORT


def test_export_writes_tasks_groups_and_utils(tmp_path: Path) -> None:
    out = tmp_path / "lm"
    r = cli("export", "lm-eval", "--out", str(out), "--tasks", "arith,math500", "--option", "arith.n_test=5",
            "--family", "seq2seq", "--k", "4")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["distillbench_arith.yaml", "distillbench_arith_greedy.yaml", "distillbench_arith_majority.yaml",
                     "distillbench_arith_sc.yaml", "distillbench_math.yaml", "distillbench_math500_greedy.yaml",
                     "distillbench_math500_sc.yaml", "distillbench_math_majority.yaml", "utils.py"]
    sc = (out / "distillbench_arith_sc.yaml").read_text()
    assert "repeats: 4" in sc and "name: maj@4" in sc and '"n_test": 5' in sc and "family: seq2seq" in sc
    for args, message in (
        (["--option", "n_test=5"], "give TASK.key=value"),
        (["--family", "rnn"], "--family: one of"),
        (["--tasks", "arth"], "unknown task 'arth' (did you mean 'arith'"),
    ):
        r = cli("export", "lm-eval", "--out", str(tmp_path / "bad"), *args)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_eval_lm_eval_on_a_run_logs_parity(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    grid = load_grid(ROOT / "runs" / "demo.yaml", [*SHORT, "grid.method.name=[finetune]", "grid.seed=[0]"])
    (result,) = run_grid(grid, "demo", store, show_progress=False)
    r = cli("eval-lm-eval", result.run_id, "--limit", "12", "--tasks", "gsm_symbolic", "--store", str(store.root))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "same verdict" in r.stdout and "12/12" in r.stdout
    client = MlflowClient(store.tracking_uri)
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics["lm_eval/parity"] == 1.0 and metrics["lm_eval/same_text"] == 1.0 and "lm_eval/arith/acc" in metrics
    assert "lm_eval/gsm_symbolic/acc" in metrics and "gsm_symbolic: lm-eval accuracy" in r.stdout
    assert sorted(a.path for a in client.list_artifacts(result.run_id, "lm_eval")) == [
        "lm_eval/parity.json", "lm_eval/results-gsm_symbolic.json", "lm_eval/results.json", "lm_eval/samples.jsonl"]
    r = cli("eval-lm-eval", result.run_id, "--store", str(tmp_path / "elsewhere"))
    assert r.returncode == 2 and "is neither a predictions folder nor an MLflow run id" in r.stderr
