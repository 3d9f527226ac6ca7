"""The console script: exit status 2 and one line for bad input, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=ROOT):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["grid", "runs/demo.yaml", "train.stpes=3"], "unknown spec key 'train.stpes' (did you mean 'train.steps'"),
        (["grid", "runs/demo.yaml", "grid.method.name=[dsss]"], "unknown method 'dsss' (did you mean 'dss'"),
        (["grid", "runs/demo.yaml", "task.name=arth"], "unknown task 'arth' (did you mean 'arith'"),
        (["grid", "runs/demo.yaml", "task.name=zzz"], "unknown task 'zzz' (choose from: addsub, anli, arith, csqa, esnli, gsm8k"),
        (["grid", "runs/demo.yaml", "eval.schemes=[majorty@8]"], "unknown aggregation scheme 'majorty' (did you mean 'majority'"),
        (["grid", "runs/nope.yaml"], "spec file 'runs/nope.yaml' not found"),
        (["tiny-model", "--family", "gpt", "--task", "arith", "--out", "/tmp/x"], "unknown model family 'gpt'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_dry_run_lists_cells():
    r = cli("grid", "runs/demo.yaml", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "4 cells" in r.stdout and "method=dss,family=llama" in r.stdout
    assert "(8000/200/500 train/valid/test)" in r.stdout


def test_dry_run_reports_missing_data():
    r = cli("grid", "runs/demo.yaml", "--dry-run", "grid.method.name=[finetune]", "grid.student.family=[t5]", "task={name: gsm8k}")
    assert r.returncode == 0, r.stderr
    assert "MISSING: task 'gsm8k' needs data_dir" in r.stdout and "1 cells, 1 with missing data" in r.stdout


def test_listings():
    r = cli("tasks")
    assert r.returncode == 0 and "arith" in r.stdout and "gsm_symbolic" in r.stdout
    r = cli("methods")
    assert r.returncode == 0 and "finetune" in r.stdout and "dss" in r.stdout and "2305.02301" in r.stdout


def test_tiny_model_command_writes_a_loadable_model(tmp_path):
    r = cli("tiny-model", "--family", "llama", "--task", "arith", "--out", str(tmp_path / "m"), "--option", "n_train=50", "--option", "n_valid=5", "--option", "n_test=5")
    assert r.returncode == 0, r.stderr
    from harness.models import load_model

    _, _, family = load_model(tmp_path / "m")
    assert family == "llama"


@pytest.mark.slow
def test_run_command_prints_the_table(tmp_path):
    r = cli("run", "runs/smoke.yaml", "--store", str(tmp_path / "s"), "--quiet",
            "task.n_train=100", "task.n_valid=10", "task.n_test=20", "train.steps=2", "train.eval_every=1", "train.batch_size=8")
    assert r.returncode == 0, r.stderr
    assert "smoke: test accuracy on arith" in r.stdout and "majority@4" in r.stdout and "best cell: smoke" in r.stdout
    assert (tmp_path / "s" / "mlflow.db").exists()
