"""Shared stages are built once, even by concurrent workers (Store.lock), and a grid hands its
cells to an executor after building them (harness/grid.py, harness/executors.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.config import GridSpec, validate
from harness.executors import EXECUTORS, Sequential, get_executor
from harness.grid import run_grid
from harness.store import Store

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from harness.config import TeacherSpec
    from harness.store import Store
    from harness.teacher import build_bank, oracle_chains
    from tasks import get_task

    store, calls = Store(sys.argv[1]), sys.argv[2]
    task = get_task("arith", n_train=40, n_valid=8, n_test=8)
    examples = task.load("train")

    def generate(part, seed):
        with open(calls, "a") as f:  # one line per chunk generated, from whichever process
            f.write("chunk\\n")
        time.sleep(0.5)  # long enough for the other worker to arrive while this one builds
        chains = oracle_chains(task, list(part), k=1, wrong_rate=0.0, seed=0)
        return [[c for c in chains if c.example_id == e.id] for e in part]

    bank, report = build_bank(task, examples, TeacherSpec(name="oracle", chunk_size=20), store, generate=generate)
    print(json.dumps({"key": bank.key, "generated": report.chunks_generated, "chains": len(bank.chains())}))
    """
)


def test_two_workers_building_one_bank_generate_each_chunk_once(tmp_path):
    calls = tmp_path / "calls.txt"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "store"), str(calls)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0]["key"] == outs[1]["key"] and outs[0]["chains"] == outs[1]["chains"] == 40
    assert sorted(o["generated"] for o in outs) == [0, 2]  # one built both chunks, the other reused them
    assert calls.read_text().count("chunk") == 2


def test_store_lock_is_exclusive_across_processes(tmp_path):
    store = Store(tmp_path)
    code = "import sys; from harness.store import Store\nwith Store(sys.argv[1]).lock('banks', 'k'):\n    print('got it')"
    with store.lock("banks", "k"):
        p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            p.communicate(timeout=3)
            raise AssertionError("the second process took a held lock")
        except subprocess.TimeoutExpired:
            pass  # still waiting: the lock is held here
    assert p.communicate(timeout=60)[0].strip() == "got it"


class Recording(Sequential):
    """An executor that runs the cells in reverse and records what it was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def run(self, jobs, report, fail_fast):
        from harness.grid import execute

        self.seen = [job.cell for job in jobs]
        done = {job.cell: execute(job, report) for job in reversed(jobs)}
        return [done[job.cell] for job in jobs]


def test_a_grid_builds_shared_stages_once_then_hands_cells_to_its_executor(tmp_path, capsys):
    from rich.console import Console

    grid = validate(
        GridSpec,
        {
            "name": "stages",
            "base": {
                "task": {"name": "arith", "n_train": 60, "n_valid": 8, "n_test": 8},
                "teacher": {"name": "oracle", "k": 1},
                "student": {"model": "tiny", "family": "llama", "tiny": {"vocab_size": 300, "seed": 0}},
                "train": {"steps": 1, "batch_size": 8, "eval_every": 1, "log_every": 1},
                "decode": {"max_new_tokens": 4},
                "eval": {"schemes": ["greedy"], "untrained": False, "bootstrap": 100},
            },
            "grid": {"method.name": ["finetune", "dss", "single_task"]},
        },
        where="test",
    )
    store = Store(tmp_path / "store")
    ex = Recording()
    console = Console(file=open(tmp_path / "log.txt", "w"), width=200)  # noqa: SIM115
    results = run_grid(grid, "stages", store, console=console, show_progress=False, executor=ex)
    console.file.close()
    log = (tmp_path / "log.txt").read_text()
    # three cells share one bank and one tiny student: one shared-stage step, before any cell
    assert log.count("shared stages") == 1 and log.index("shared stages") < log.index("cell 1/3")
    assert len(list((store.root / "banks").iterdir())) == 1 and len(list((store.root / "models").iterdir())) == 1
    assert ex.seen == [c for c, _ in grid.cells()]
    assert [r.cell for r in results] == ex.seen and not any(r.skipped for r in results)
    # a rerun skips every cell, and plans no shared stage for finished cells
    again = run_grid(grid, "stages", store, console=Console(file=open(tmp_path / "log2.txt", "w")), show_progress=False)  # noqa: SIM115
    assert all(r.skipped for r in again) and "shared stages" not in (tmp_path / "log2.txt").read_text()


def test_executors_registry():
    assert set(EXECUTORS) == {"sequential", "local", "ray"} and isinstance(get_executor("sequential"), Sequential)
    import pytest

    from harness.errors import UserError

    with pytest.raises(UserError, match="did you mean 'sequential'"):
        get_executor("sequentail")
