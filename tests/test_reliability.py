"""Hostile-user checks (issue 20), one test per class; RELIABILITY.md lists each guarantee with its test.

Every user mistake is one line (usage errors: the usage text and one "Error:" line) with exit
code 2, found before any work; names cannot put files outside the store; a diverging run stops
at its first non-finite loss."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import UserError
from tests.test_cli import ROOT, cli


def _one_line_error(r, message: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and message in r.stderr, r.stderr
    assert len([line for line in r.stderr.strip().splitlines() if line.startswith(("error:", "Error:"))]) == 1, r.stderr


# 1. usage errors and unreadable inputs -----------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "No such option: --bogus"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["grid"], "Missing argument 'spec'"),
        (["export", "lm-eval", "--out", "x", "--k", "abc"], "Invalid value for '--k'"),
        (["export", "lm-eval", "--out", "x", "--k", "0"], "--k must be at least 1"),
        (["results", "--tracking-uri", "foo://bar"], "unknown scheme 'foo'"),
    ],
)
def test_usage_errors_are_one_line(args, message):
    _one_line_error(cli(*args), message)


def test_no_arguments_prints_help_with_exit_2():
    r = cli()
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout and "grid" in r.stdout + r.stderr


def test_unreadable_inputs_are_one_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_bytes(b"name: x\n\xff\xfe: 1\n")
    _one_line_error(cli("grid", str(spec), "--store", str(tmp_path / "s")), "line 2: not UTF-8 text")
    a_file = tmp_path / "afile"
    a_file.write_text("")
    _one_line_error(cli("results", "--store", str(a_file)), "is a file, not a directory")


# 7. an MLflow server that is not there: found up front, in one line --------------------------------

def test_an_unreachable_tracking_server_is_found_before_any_work(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli("grid", "runs/demo.yaml", "--store", str(tmp_path / "s"), "--tracking-uri", f"http://127.0.0.1:{port}")
    _one_line_error(r, "is unreachable")
    assert not (tmp_path / "s" / "banks").exists()  # nothing was built


# 2. values that would fail after hours, models that cannot load: rejected before any work ---------

@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=.inf", "train.lr: Input should be a finite number"),
        ("train.lr=nan", "train.lr: Input should be a finite number"),
        ("teacher.k=1000000000", "teacher.k: Input should be less than or equal to 1024"),
        ("decode.k=1000000000", "decode.k: Input should be less than or equal to 1024"),
        ("eval.bootstrap=1000000000", "eval.bootstrap: Input should be less than or equal to 100000"),
        ("student.tiny.d_model=100000000", "student.tiny.d_model: Input should be less than or equal to 8192"),
        ("student.model=/no/such/model", "model directory does not exist"),
        ("student.model=someorg/not-in-the-cache", "not in the Hugging Face cache"),
    ],
)
def test_bad_values_fail_before_any_work(tmp_path, override, message):
    store = tmp_path / "s"
    _one_line_error(cli("grid", "runs/demo.yaml", override, "--store", str(store)), message)
    assert not (store / "banks").exists() and not (store / "mlflow.db").exists()  # no bank, no run


def test_a_diverging_run_stops_at_its_first_non_finite_loss(student, tmp_path):
    from harness.training import TrainConfig, fit

    def nan_loss(s, batch):
        out = s.model(**s.tokenizer(["a"], return_tensors="pt"), labels=s.tokenizer(["b"], return_tensors="pt").input_ids)
        return out.loss * torch.tensor(float("nan")), {}

    with pytest.raises(UserError, match=r"training diverged: the loss at step 1 is nan"):
        fit(student, list(range(8)), nan_loss, TrainConfig(steps=5, batch_size=2), None, tmp_path, show_progress=False)


# 3. empty or degenerate data ----------------------------------------------------------------------

def _finished_runs(store: Path) -> list:
    from mlflow.tracking import MlflowClient

    if not (store / "mlflow.db").exists():
        return []
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.info.status == "FINISHED"]


def _cell_failed_as_user_error(r, message: str) -> None:
    """A grid records a cell's mistake in that cell (a FAILED run with the error, issue 17) and
    exits 2 when every failure is a user mistake; never a traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout and message in r.stderr + r.stdout, r.stderr


def test_an_empty_split_is_an_error_not_a_finished_run(tmp_path):
    store = tmp_path / "s"
    r = cli("grid", "runs/demo.yaml", "task.n_test=0", "grid.seed=[0]", "grid.method.name=[finetune]", "--store", str(store))
    _cell_failed_as_user_error(r, "the test split is empty")
    assert _finished_runs(store) == []
    r = cli("grid", "runs/demo.yaml", "task.n_test=0", "grid.seed=[0]", "grid.method.name=[finetune]", "--store", str(store))
    _cell_failed_as_user_error(r, "the test split is empty")  # retried, not skipped as done


def test_a_bank_without_positives_for_a_method_that_needs_them(tmp_path):
    store = tmp_path / "s"
    r = cli("grid", "runs/demo.yaml", "grid.method.name=[dss]", "grid.seed=[0]", "teacher.wrong_rate=1.0",
            "task.n_train=40", "task.n_valid=8", "task.n_test=8", "--store", str(store))
    _cell_failed_as_user_error(r, "has none (40 chains, all wrong)")
    assert _finished_runs(store) == [] and not (store / "checkpoints").exists()  # nothing trained


# 4. names cannot escape the store -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../escape", "/abs/path", "a/b", "", ".hidden", "x" * 101])
def test_names_that_would_leave_the_store_are_rejected(tmp_path, name):
    spec = tmp_path / "g.yaml"
    spec.write_text(f"name: {name!r}\nbase:\n  task: {{name: arith}}\n  method: {{name: finetune}}\n")
    before = set(tmp_path.parent.rglob("*"))
    _one_line_error(cli("grid", str(spec), "--store", str(tmp_path / "s")), "use 1-100 letters, digits")
    after = set(tmp_path.parent.rglob("*"))
    assert {p for p in after - before if tmp_path not in p.parents and p != tmp_path} == set()


def test_check_name_accepts_the_names_in_use():
    from harness.errors import check_name

    for name in ("demo", "paper-fdd-gsm8k", "server-demo", "v1.2_x"):
        assert check_name(name) == name


# fuzz: the command line never shows a traceback ---------------------------------------------------

_WORDS = ["tasks", "methods", "results", "status", "aggregate", "compare", "diagnose", "export", "lm-eval",
          "eval-lm-eval", "teacher", "stats", "sync", "nosuch", "--store", "--tracking-uri", "foo://x", "--bogus",
          "--k", "0", "-1", "abc", "--limit", "--schemes", "majorty", "--out", "x.yaml", "", "--run", "--family", "rnn"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=6))
def test_fuzz_the_command_line_never_shows_a_traceback(tmp_path, monkeypatch, words):
    from harness import cli as cli_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTILLBENCH_HOME", str(tmp_path / "home"))
    args = list(words)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "argv", ["distillbench", *args])
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_module.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    assert code in (0, 2), (args, code, err.getvalue())
    assert "Traceback" not in err.getvalue() + out.getvalue(), args


def test_reliability_table_names_existing_tests():
    table = (ROOT / "RELIABILITY.md").read_text()
    here = Path(__file__).read_text()
    for line in table.splitlines():
        if line.startswith("| ") and "`tests/test_reliability.py::" in line:
            name = line.split("`tests/test_reliability.py::", 1)[1].split("`", 1)[0]
            assert f"def {name}(" in here, name
    assert os.path.basename(__file__) in table


# 8. stores and caches --------------------------------------------------------------------------------

def test_a_live_run_is_never_marked_killed_by_another_process(tmp_path):
    import subprocess

    from harness.store import Store
    from harness.tracking import Tracker, owner_id

    tracker = Tracker(Store(tmp_path / "s"), "live")
    live = tracker.client.create_run(tracker.experiment_id, tags={"cell_hash": "c", "owner": owner_id()})
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = owner_id().rpartition(":")[0]
    dead = tracker.client.create_run(tracker.experiment_id, tags={"cell_hash": "c", "owner": f"{host}:{done.stdout.strip()}"})
    legacy = tracker.client.create_run(tracker.experiment_id, tags={"cell_hash": "c"})
    remote = tracker.client.create_run(tracker.experiment_id, tags={"cell_hash": "c", "owner": "another-host:1"})
    assert tracker.close_stale("c") == 2
    status = {r: tracker.client.get_run(r.info.run_id).info.status for r in (live, dead, legacy, remote)}
    assert [status[r] for r in (live, dead, legacy, remote)] == ["RUNNING", "KILLED", "KILLED", "RUNNING"]


def test_checkpoint_keys_follow_selection_not_location(tmp_path):
    from harness.config import load_grid
    from harness.run import prepare, student_key

    def key(overrides, store):
        [(_, spec)] = load_grid(ROOT / "runs" / "demo.yaml", ["grid.method.name=[finetune]", "grid.seed=[0]", *overrides]).cells()
        return student_key(prepare(spec), str(store / "models" / "abc123"), "bank")

    a, b = tmp_path / "store-a", tmp_path / "moved" / "store-b"
    assert key([], a) == key([], b)  # a tiny model by its content key: a moved store keeps its checkpoints
    assert key(["decode.max_new_tokens=7"], a) != key([], a)  # selection decodes greedily with these
    assert key(["eval.bootstrap=500"], a) == key([], a)  # scoring only: the checkpoint is the same


# 5. stored files are verified before they are used ---------------------------------------------------

def test_a_damaged_folder_is_moved_aside_not_used(tmp_path, capsys):
    from harness.store import CHECKSUMS, intact, write_checksums

    folder = tmp_path / "ckpt"
    (folder / "best").mkdir(parents=True)
    (folder / "best" / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (folder / "result.json").write_text("{}")
    write_checksums(folder)
    assert (folder / CHECKSUMS).is_file() and intact(folder, "checkpoint")
    data = bytearray((folder / "best" / "model.safetensors").read_bytes())
    data[100] ^= 1  # one bit
    (folder / "best" / "model.safetensors").write_bytes(bytes(data))
    assert not intact(folder, "checkpoint") and not folder.exists()
    err = capsys.readouterr().err
    assert "best/model.safetensors does not match its checksum" in err and len(err.strip().splitlines()) == 1
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt.damaged-")]
    assert len(aside) == 1  # kept for a look
    # a truncated file
    write_checksums(aside[0])
    with open(aside[0] / "result.json", "w") as f:
        f.write("")
    assert not intact(aside[0], "checkpoint") and "has 0 bytes, not 2" in capsys.readouterr().err


def test_damaged_or_truncated_resume_state_starts_over(tmp_path, student):
    from harness.training import TrainState

    params = student.trainable_parameters()
    opt = torch.optim.AdamW(list(params.values()))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    path = tmp_path / "last.pt"
    TrainState(step=3).save(path, {"f": 1}, params, opt, sched)
    assert TrainState.load(path, {"f": 1}, params, opt, sched).step == 3
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert TrainState.load(path, {"f": 1}, params, opt, sched) is None
    path.write_bytes(bytes(data[: len(data) // 3]))
    (tmp_path / "last.pt.sha256").unlink()  # no checksum (older state): the truncation is still found
    with pytest.warns(UserWarning, match="cannot be read"):
        assert TrainState.load(path, {"f": 1}, params, opt, sched) is None


@pytest.mark.slow
def test_a_damaged_checkpoint_is_retrained_with_a_warning(tmp_path, capsys):
    from harness.config import load_grid
    from harness.grid import run_grid
    from harness.store import Store
    from tests.test_e2e import SHORT

    store = Store(tmp_path / "store")
    grid = load_grid(ROOT / "runs" / "demo.yaml", [*SHORT, "grid.method.name=[finetune]", "grid.seed=[0]", "eval.untrained=false"])
    [first] = run_grid(grid, "a", store, show_progress=False)
    [ckpt] = [p for p in (store.root / "checkpoints").iterdir() if not p.name.startswith(".")]
    weights = next((ckpt / "best").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 1
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    [again] = run_grid(grid, "a", store, tracking_uri=f"sqlite:///{tmp_path / 'other.db'}", show_progress=False)
    assert "is damaged" in capsys.readouterr().err
    assert again.scores["greedy"].acc == first.scores["greedy"].acc  # retrained: the same, deterministic result
    assert weights.read_bytes() != bytes(data)  # the damaged weights were not used or kept in place


def test_bad_predictions_files_name_file_and_line(tmp_path):
    from harness.evaluate import read_predictions
    from tests.test_cli_aggregate import predictions

    folder = predictions(tmp_path / "p", skill=0.5)
    lines = (folder / "chains.jsonl").read_text().splitlines()
    bad = lines[:2] + [lines[2].replace('"logprob": ', '"logprob": "abc", "x": ', 1)] + lines[3:]
    (folder / "chains.jsonl").write_text("\n".join(bad) + "\n")
    with pytest.raises(UserError, match=r"chains.jsonl:3: logprob must be a finite number"):
        read_predictions(folder)
    (folder / "chains.jsonl").write_bytes(("\n".join(lines[:4]) + "\n").encode() + b"\xff\xfe{}\n")
    with pytest.raises(UserError, match=r"chains.jsonl:5: not UTF-8 text"):
        read_predictions(folder)
    (folder / "chains.jsonl").write_text("\n".join(lines[:1]) + '\n{"logprob": 1e999, "example_id": "x"}\n')
    with pytest.raises(UserError, match=r"chains.jsonl:2: logprob must be a finite number"):
        read_predictions(folder)


def test_a_damaged_bank_line_drops_its_chunk_and_the_next_build_regenerates_it(tmp_path, capsys):
    from harness.config import TeacherSpec
    from harness.store import Store
    from harness.teacher import build_bank
    from tasks import get_task

    task = get_task("arith", n_train=12, n_valid=4, n_test=4)
    examples = [*task.load("train"), *task.load("valid")]
    spec = TeacherSpec(name="oracle", k=2, wrong_rate=0.3, chunk_size=4)
    bank, report = build_bank(task, examples, spec, Store(tmp_path))
    original = [c.to_dict() for c in bank.chains()]
    lines = bank.chains_file.read_bytes().split(b"\n")
    assert report.chunks_generated == 4
    # one chain of chunk 1 edited in place (still valid JSON), one byte of chunk 2 not UTF-8
    i = next(k for k, line in enumerate(lines) if b'"kind": "chunk", "chunk": 0' in line) + 1
    lines[i] = lines[i].replace(b"The answer is", b"The answer was", 1)
    j = next(k for k, line in enumerate(lines) if b'"kind": "chunk", "chunk": 1' in line) + 2
    lines[j] = lines[j][:10] + b"\xff" + lines[j][11:]
    bank.chains_file.write_bytes(b"\n".join(lines))
    assert sorted(bank.chunks()) == [0, 3]
    err = capsys.readouterr().err
    assert "chunk 1 is damaged (its chains do not match their checksum)" in err and "chunk 2 is damaged" in err
    again, report = build_bank(task, examples, spec, Store(tmp_path))
    assert report.chunks_generated == 2
    capsys.readouterr()
    assert [c.to_dict() for c in again.chains()] == original  # the same chains, regenerated
    assert "damaged" not in capsys.readouterr().err  # and no more warnings


_yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["name", "base", "grid", "task", "method", "train", "steps", "lr", "k", "teacher", "decode", "eval", "seed",
         "schemes", "x", "student", "model", "n_test"]), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(_yaml_values, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_fuzz_the_spec_loader_gives_a_valid_grid_or_one_user_error(tmp_path, data):
    import yaml

    from harness.config import load_grid

    path = tmp_path / "fuzz.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    try:
        grid = load_grid(path)
        grid.cells()
    except UserError as e:
        assert str(e) and "\n" not in str(e).strip()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.sampled_from(["chains.jsonl", "examples.jsonl", "task.json"]))
def test_fuzz_the_predictions_reader_gives_a_one_line_error(tmp_path, garbage, which):
    from harness.evaluate import read_predictions
    from tests.test_cli_aggregate import predictions

    folder = tmp_path / "p"
    if not folder.exists():
        predictions(folder, skill=0.5)
    saved = (folder / which).read_bytes()
    (folder / which).write_bytes(garbage)
    try:
        read_predictions(folder)
    except UserError as e:
        assert "\n" not in str(e).strip()
    finally:
        (folder / which).write_bytes(saved)
