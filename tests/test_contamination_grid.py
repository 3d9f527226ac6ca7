"""The contamination check end to end, offline: the command on the demo grid, the metrics and the
report a grid logs per cell, and --strict refusing a grid contaminated on purpose before training
(README: Contamination check)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from harness.cli import app
from harness.config import GridSpec, validate
from harness.errors import UserError
from harness.grid import run_grid
from harness.store import Store
from harness.types import Example
from tasks import TASKS
from tasks.base import TaskDefaults
from tasks.checking import NumericAnswers

SMALL = ["task.n_train=200", "task.n_valid=20", "task.n_test=40"]


class LeakyTask(NumericAnswers, TaskDefaults):
    """Sums of two 2-digit numbers whose test split repeats `leak` train questions (new ids, one
    of them reworded), so the check must find them."""

    name = "leaky"
    version = "1"
    prompt_version = "1"

    def __init__(self, leak: int = 3) -> None:
        self.leak = leak

    def options(self) -> dict[str, Any]:
        return {"leak": self.leak}

    def _pairs(self, split: str, n: int) -> list[tuple[int, int]]:
        rnd = random.Random(split)
        return [(rnd.randint(10, 99), rnd.randint(10, 99)) for _ in range(n)]

    def load(self, split: str) -> list[Example]:
        ex = lambda i, a, b, text="Calculate {a} + {b}.": Example(f"leaky-{split}-{i}", text.format(a=a, b=b), str(a + b))  # noqa: E731
        if split != "test":
            return [ex(i, a, b) for i, (a, b) in enumerate(self._pairs(split, 40 if split == "train" else 6))]
        train = self._pairs("train", 40)[: self.leak]
        return [ex(i, a, b) for i, (a, b) in enumerate([*train, *self._pairs("test", 6)])]

    def prompt(self, example: Example) -> str:
        return f"Q: {example.question}\nA:"

    def write_chain(self, example: Example, slip_rng: random.Random | None = None) -> tuple[str, str]:
        a, b = (int(x) for x in example.question.removeprefix("Calculate ").rstrip(".").split(" + "))
        return f"{a} + {b} = {a + b}. The answer is {a + b}.", str(a + b)


def leaky_grid(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base": {
            "task": {"name": "leaky"},
            "teacher": {"name": "oracle", "k": 1},
            "student": {"model": "tiny", "family": "llama", "tiny": {"vocab_size": 300, "n_layers": 1, "d_model": 64, "n_heads": 2, "d_ff": 64}},
            "method": {"name": "finetune"},
            "train": {"steps": 1, "batch_size": 8, "eval_every": 1},
            "decode": {"max_new_tokens": 4},
            "eval": {"schemes": ["greedy"], "untrained": False, "bootstrap": 100},
        },
        **extra,
    }


def test_the_command_reports_the_demo_grid_clean(tmp_path):
    store = str(tmp_path / "store")
    r = CliRunner().invoke(app, ["contamination", "runs/demo.yaml", *SMALL, "--store", store])
    assert r.exit_code == 0, r.output
    assert "train_vs_test" in r.output and "chains_vs_test" in r.output
    assert "arith: no test question duplicated" in r.output
    r = CliRunner().invoke(app, ["contamination", "runs/demo.yaml", *SMALL, "--store", store, "--json"])
    (report,) = json.loads(r.output)  # one task and bank for the grid's six cells, read from the cache
    assert report["sizes"] == {"train": 200, "chains": 200, "valid": 20, "test": 40}
    assert all(c["exact"] == c["near"] == 0 for c in report["comparisons"].values())


def test_a_grid_logs_the_check_per_cell_and_strict_refuses_a_contaminated_one(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "leaky", LeakyTask)
    store = Store(tmp_path / "store")
    # --strict (or the spec's contamination.strict): refused in the shared pass, before any training
    spec = tmp_path / "leaky.yaml"
    spec.write_text(yaml.safe_dump(leaky_grid("leaky-strict")))
    r = CliRunner().invoke(app, ["grid", str(spec), "--store", str(store.root), "--strict", "-q"])
    assert isinstance(r.exception, UserError), r.output
    line = str(r.exception)
    assert "\n" not in line and "3 test question(s) duplicated" in line and "leaky-train-0" in line and "'Calculate" in line
    spec.write_text(yaml.safe_dump(leaky_grid("leaky-strict", contamination={"strict": True})))
    r = CliRunner().invoke(app, ["grid", str(spec), "--store", str(store.root), "-q"])
    assert isinstance(r.exception, UserError) and "--strict refuses it" in str(r.exception)
    assert not (store.root / "checkpoints").exists()

    # without it: a warning line, and every cell logs the counts, the shares and the pairs
    console = Console(record=True, width=300)
    grid = validate(GridSpec, leaky_grid("leaky", grid={"seed": [0, 1]}), where="test grid")
    results = run_grid(grid, "leaky", store, console=console, show_progress=False)
    assert not any(r.error for r in results)
    assert "warning: contaminated: leaky: 3 test question(s) duplicated" in console.export_text()
    assert len(list((store.root / "contamination").glob("*/report.json"))) == 1  # computed once for both cells
    client = MlflowClient(store.tracking_uri)
    for res in results:
        m = client.get_run(res.run_id).data.metrics
        assert m["data/contamination/train_vs_test_exact"] == 3 and m["data/contamination/train_vs_test_near"] == 0
        assert m["data/contamination/test_total"] == 3 and m["data/contamination/test_total_share"] == pytest.approx(3 / 9)
        assert m["data/contamination/train_vs_valid_exact"] == 0 and "data/contamination/chains_vs_test_near" in m
        local = client.download_artifacts(res.run_id, "contamination/report.json", str(tmp_path / res.run_id))
        pairs = json.load(open(local))["comparisons"]["train_vs_test"]["pairs"]
        assert {(p["source"], p["target"]) for p in pairs} == {(f"leaky-train-{i}", f"leaky-test-{i}") for i in range(3)}
