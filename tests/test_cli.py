"""The console script: exit status 2 and one line for bad input, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if k != "DISTILLBENCH_DATA"} | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["grid", "runs/demo.yaml", "train.stpes=3"], "unknown spec key 'train.stpes' (did you mean 'train.steps'"),
        (["grid", "runs/demo.yaml", "grid.method.name=[dsss]"], "unknown method 'dsss' (did you mean 'dss'"),
        (["grid", "runs/demo.yaml", "task.name=arth"], "unknown task 'arth' (did you mean 'arith'"),
        (["grid", "runs/demo.yaml", "task.name=zzz"], "unknown task 'zzz' (choose from: addsub, anli, arith, "),
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
    assert "6 cells" in r.stdout and "method=dss,seed=2" in r.stdout  # 2 methods x 3 seeds
    assert "(8000/200/500 train/valid/test)" in r.stdout


def test_dry_run_reports_missing_data():
    r = cli("grid", "runs/demo.yaml", "--dry-run", "grid.method.name=[finetune]", "grid.seed=[0]", "student.family=t5", "task={name: gsm8k}")
    assert r.returncode == 0, r.stderr
    assert "MISSING: task 'gsm8k' needs data_dir" in r.stdout and "1 cells, 1 with missing data" in r.stdout


def _gsm8k_root(tmp_path: Path, bad_line: bool) -> Path:
    """A data root laid out like ../shared/data holding a 3+2-row gsm8k/ folder."""
    folder = tmp_path / "data" / "gsm8k"
    folder.mkdir(parents=True)
    row = '{"question": "q%d", "answer": "2 + 2 = 4\\n#### %d"}'
    train = [row % (i, i) for i in range(3)]
    if bad_line:
        train[1] = '{"question": "q1", "answer": broken'
    (folder / "train.jsonl").write_text("\n".join(train) + "\n")
    (folder / "test.jsonl").write_text("\n".join(row % (i, i) for i in range(2)) + "\n")
    return tmp_path / "data"


GSM8K_CELL = ("grid.method.name=[finetune]", "grid.seed=[0]", "student.family=t5", "task={name: gsm8k}")


def test_data_dir_is_a_root_of_dataset_folders(tmp_path):
    root = _gsm8k_root(tmp_path, bad_line=False)
    r = cli("grid", "runs/demo.yaml", "--dry-run", "--data-dir", str(root), *GSM8K_CELL)
    assert r.returncode == 0, r.stderr
    valid = r.stdout.split("(")[1].split("/")[1]
    assert f"(3-{valid}/" not in r.stdout and "/2 train/valid/test)" in r.stdout
    env_r = subprocess.run(
        [sys.executable, "-m", "harness.cli", "grid", "runs/demo.yaml", "--dry-run", *GSM8K_CELL],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "DISTILLBENCH_DATA": str(root)}, timeout=300,
    )
    assert env_r.returncode == 0 and "/2 train/valid/test)" in env_r.stdout, env_r.stderr


def test_bad_row_stops_with_file_and_line_unless_skip_bad(tmp_path):
    root = _gsm8k_root(tmp_path, bad_line=True)
    r = cli("run", "runs/smoke.yaml", "--data-dir", str(root), "task={name: gsm8k}", "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{root / 'gsm8k' / 'train.jsonl'}:2: invalid JSON" in r.stderr
    r = cli("grid", "runs/demo.yaml", "--dry-run", "--data-dir", str(root), "--skip-bad", *GSM8K_CELL)
    assert r.returncode == 0, r.stderr
    assert "1 bad rows skipped" in r.stdout and "/2 train/valid/test" in r.stdout
    assert "train.jsonl:2: invalid JSON" in r.stderr  # where, not only how many


def test_tasks_data_check_counts_each_split_and_says_what_is_missing(tmp_path):
    root = _gsm8k_root(tmp_path, bad_line=True)
    r = cli("tasks", "--data-dir", str(root), "--skip-bad")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if " gsm8k " in x)
    assert "1 bad rows skipped" in line and "│ 2 " in line
    line = next(x for x in r.stdout.splitlines() if " csqa " in x)
    assert "not found" in line
    r = cli("tasks", "--data-dir", str(root))  # without --skip-bad the bad row is the reason
    line = next(x for x in r.stdout.splitlines() if " gsm8k " in x)
    assert "train.jsonl:2" in r.stdout and "│ -" in line


def test_data_dir_must_exist(tmp_path):
    r = cli("grid", "runs/demo.yaml", "--dry-run", "--data-dir", str(tmp_path / "nope"))
    assert r.returncode == 2 and "--data-dir" in r.stderr and "is not a folder" in r.stderr


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
    assert "smoke: test accuracy on arith" in r.stdout and "majority@4" in r.stdout
    assert "best cell (picked on valid accuracy" in r.stdout and "): smoke (" in r.stdout
    assert (tmp_path / "s" / "mlflow.db").exists()


def test_teacher_build_with_a_tiny_hf_teacher_resumes_and_reports_stats(tmp_path):
    model = tmp_path / "teacher"
    opts = ("--option", "n_train=20", "--option", "n_valid=4", "--option", "n_test=4")
    assert cli("tiny-model", "--family", "llama", "--task", "arith", "--out", str(model), *opts).returncode == 0
    args = (
        "teacher", "build", "runs/smoke.yaml", "--store", str(tmp_path / "s"),
        "task={name: arith, n_train: 20, n_valid: 4, n_test: 4}",
        "teacher={name: hf, k: 3, max_new_tokens: 8, chunk_size: 10, label: majority, model: " + str(model) + "}",
    )
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "3 chunks generated, 0 already there" in r.stdout  # 24 examples in chunks of 10
    assert "│ chains" in r.stdout and "72" in r.stdout and "majority agreement" in r.stdout
    r = cli(*args)
    assert r.returncode == 0 and "0 chunks generated, 3 already there" in r.stdout, r.stderr
    bank = next((tmp_path / "s" / "banks").iterdir())
    r = cli("teacher", "stats", str(bank))
    assert r.returncode == 0 and "examples with only negatives" in r.stdout


def test_teacher_openai_without_its_key_fails_before_any_request(tmp_path):
    env_var = "DISTILLBENCH_TEST_NO_SUCH_KEY"
    r = cli(
        "teacher", "build", "runs/smoke.yaml", "--store", str(tmp_path / "s"),
        "task={name: arith, n_train: 20, n_valid: 4, n_test: 4}",
        "teacher={name: openai, model: m, openai: {base_url: 'http://127.0.0.1:9/v1', api_key_env: " + env_var + "}}",
    )
    assert r.returncode == 2 and env_var in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "dss").is_dir(), reason="needs ../shared/data/dss (the DSS release) beside the checkout")
def test_teacher_import_dss_reports_the_palm_agreement_and_stores_a_bank(tmp_path):
    args = ("teacher", "import", "dss", "--task", "anli", "--split", "test", "--data-dir", str(SHARED), "--store", str(tmp_path))
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "agreement: 0.656" in r.stdout and "│ chains" in r.stdout
    r = cli(*args)  # importing again reuses the bank
    assert r.returncode == 0 and len(list((tmp_path / "banks").iterdir())) == 1


@pytest.mark.skipif(not (SHARED / "dss").is_dir(), reason="needs ../shared/data/dss (the DSS release) beside the checkout")
@pytest.mark.parametrize(
    ("spec", "students", "methods", "batch", "lr"),
    [
        ("runs/paper-qcrd-t5.yaml", ["google/t5-v1_1-base", "google/t5-v1_1-small"], ["finetune", "single_task", "dss", "mi", "qcrd"], "8x1", "1e-05"),
        ("runs/paper-dss-t5.yaml", ["google/t5-v1_1-base"], ["finetune", "single_task", "dss"], "64x1", "5e-05"),
    ],
)
def test_paper_grids_dry_run_lists_every_cell(spec, students, methods, batch, lr):
    """Each paper grid: every student x task x method cell, with the data counts, the teacher and
    the papers' training form (fp32, token-mean loss, SVAMP equation labels)."""
    r = cli("grid", spec, "--dry-run", "--data-dir", str(SHARED))
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if " task=" in line]
    assert len(lines) == len(students) * 4 * len(methods)
    counts = {
        "svamp[split_source=dss,label=equation]": "(702/98/200 train/valid/test)",
        "csqa[source=dss]": "(8773/968/1221 train/valid/test)",
        "anli": "(-/1000/1000 train/valid/test; MISSING train",
        "esnli[source=dss]": "(-/9842/9824 train/valid/test; MISSING train",
    }
    for student in students:
        for task, count in counts.items():
            for method in methods:
                hits = [
                    line for line in lines
                    if f" task={task} {count}" in line and f" method={method} " in line and f"student={student}/t5 " in line
                ]
                assert len(hits) == 1, (student, task, method)
                line = hits[0]
                assert "teacher=dss(k=1, label=gold)" in line
                assert f"batch={batch} lr={lr} bf16=False loss=token" in line and "steps=10000" in line
    assert f"{len(lines)} cells, {len(lines) // 2} with missing data" in r.stdout
