"""Extending is the easy path: a new scheme, task and method, each one definition registered in
its public registry, run in a tiny grid with no edit anywhere else (README: Extending)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from harness.aggregate import AGGREGATORS, Decision, Groups, SchemeDef
from harness.config import GridSpec, validate
from harness.grid import run_grid
from harness.store import Store
from harness.training import TrainContext, TrainResult
from harness.types import Chain, Example
from leaderboard.data import load_cells
from methods import METHODS
from methods.base import MethodDef
from methods.common import item_nll
from tasks import TASKS
from tasks.base import TaskDefaults
from tasks.checking import NumericAnswers

# --- a scheme: the first parsed answer ------------------------------------------------------------


def first_parsed(chains: Sequence[Chain], groups: Groups, arg: int | None = None) -> Decision:
    for i, g in enumerate(groups.ids):
        if g >= 0:
            return Decision(groups.answer(g), i + 1)
    return Decision(None, len(chains))


FIRST = SchemeDef("first", first_parsed, "the first parsed answer", reports_used=True)


# --- a task: sums of two digits, a plain class (not a dataclass) ------------------------------------


class PlusTask(NumericAnswers, TaskDefaults):
    name = "plus"
    version = "1"
    prompt_version = "1"

    def __init__(self, n: int = 60, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def options(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed}

    def load(self, split: str) -> list[Example]:
        rnd = random.Random(f"{self.seed}:{split}")
        size = {"train": self.n, "valid": 8, "test": 8}[split]
        pairs = [(rnd.randint(0, 9), rnd.randint(0, 9)) for _ in range(size)]
        return [Example(f"plus-{split}-{i}", f"Calculate {a} + {b}.", str(a + b)) for i, (a, b) in enumerate(pairs)]

    def prompt(self, example: Example) -> str:
        return f"Q: {example.question}\nA:"

    def write_chain(self, example: Example, slip_rng: random.Random | None = None) -> tuple[str, str]:
        a, b = (int(x) for x in example.question.removeprefix("Calculate ").rstrip(".").split(" + "))
        total = a + b + (1 if slip_rng is not None else 0)
        return f"{a} + {b} = {total}. The answer is {total}.", str(total)


# --- a method: finetune on the statement of each positive chain -------------------------------------


@dataclass(frozen=True)
class StatementConfig:
    """Trains "input -> the teacher's answer statement" (a toy, for this test only)."""


def statement_train(ctx: TrainContext, cfg: StatementConfig) -> TrainResult:
    items = [
        {"input": ctx.task.student_input(ex), "target": c.statement}
        for ex in ctx.train
        for c in ctx.positives.get(ex.id, [])[:1]
    ]
    return ctx.fit(items, item_nll(ctx.config.loss_reduction))


STATEMENT = MethodDef(
    "statement",
    StatementConfig,
    statement_train,
    lambda task, example, cfg: task.student_input(example),
    "a test",
    "teacher positives' answer statements",
    inputs=frozenset({"positives"}),
)


@pytest.mark.slow
def test_a_new_scheme_task_and_method_run_in_a_grid(tmp_path, monkeypatch):
    monkeypatch.setitem(AGGREGATORS, "first", FIRST)
    monkeypatch.setitem(TASKS, "plus", PlusTask)
    monkeypatch.setitem(METHODS, "statement", STATEMENT)
    grid = validate(
        GridSpec,
        {
            "name": "ext",
            "base": {
                "task": {"name": "plus", "n": 40},
                "teacher": {"name": "oracle", "k": 2, "wrong_rate": 0.3},
                "student": {"model": "tiny", "family": "llama", "tiny": {"vocab_size": 300}},
                "train": {"steps": 2, "batch_size": 8, "eval_every": 2, "log_every": 1},
                "decode": {"max_new_tokens": 6, "k": 3},
                "eval": {"schemes": ["greedy", "first", "majority@3"], "untrained": False, "bootstrap": 100, "subsamples": 3},
            },
            "grid": {"method.name": ["statement", "finetune"]},
        },
        where="test grid",
    )
    store = Store(tmp_path / "store")
    results = run_grid(grid, "ext", store, show_progress=False)
    assert len(results) == 2 and not any(r.skipped for r in results)
    for r in results:
        assert set(r.scores) == {"greedy", "first", "majority@3"}
        assert 0.0 <= r.scores["first"].acc <= 1.0
    cells = load_cells(store.tracking_uri, "ext")
    assert sorted(c.method for c in cells) == ["finetune", "statement"]
    # the task's options reach the cache keys: another seed (same example ids, other numbers) is
    # another bank, although the task is not a dataclass
    again = validate(GridSpec, {**grid.model_dump(), "base": {**grid.base, "task": {"name": "plus", "n": 40, "seed": 1}}}, where="g")
    before = {p.name for p in (store.root / "banks").iterdir()}
    run_grid(again, "ext2", store, show_progress=False)
    assert len({p.name for p in (store.root / "banks").iterdir()} - before) == 1
