"""The method contract (harness/contract.py) on every registered method, and on broken methods
that each fail one clause: the suite is what makes "add a method in one file" safe."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from harness import contract
from harness.config import GridSpec, validate
from harness.dryrun import contract_state
from harness.errors import UserError
from harness.grid import run_grid
from harness.store import Store
from harness.student import Student
from harness.training import TrainContext, TrainResult, fit
from methods import METHODS, finetune
from methods.base import MethodDef
from methods.common import chain_items, item_nll


@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_method_passes_its_contract(name):
    report = contract.check(name)
    failed = report.failure
    assert report.ok, f"{name}: clause {failed.name!r}: {failed.detail}"
    assert [c.name for c in report.clauses] == list(contract.CLAUSES)


# --- broken methods, one clause each ----------------------------------------------------------------


@dataclass(frozen=True)
class Nothing:
    pass


def _method(name: str, train: Any, inputs: set[str], **kw: Any) -> MethodDef:
    return MethodDef(name, Nothing, train, finetune.test_input, "test", "test", inputs=frozenset(inputs), **kw)


def reads_negatives(ctx: TrainContext, cfg: Any) -> TrainResult:
    return ctx.fit(chain_items(ctx, negatives=True), item_nll("sequence"))


def reads_gold(ctx: TrainContext, cfg: Any) -> TrainResult:
    items = [{"input": ctx.task.student_input(ex), "target": ex.answer} for ex in ctx.train]
    return ctx.fit(items, item_nll("sequence"))


def reads_test(ctx: TrainContext, cfg: Any) -> TrainResult:
    test = ctx.task.load("test")
    return ctx.fit([{"input": ctx.task.student_input(ex), "target": ex.answer} for ex in test], item_nll("sequence"))


def unseeded(ctx: TrainContext, cfg: Any) -> TrainResult:
    rng = random.SystemRandom()  # not the run's seed: every run draws other chains

    items = chain_items(ctx, negatives=False)
    return ctx.fit(rng.sample(items, len(items) // 2), item_nll("sequence"))


def forgets_its_state(ctx: TrainContext, cfg: Any) -> TrainResult:
    # a generator of its own, not saved with the loop's state: a resumed run restarts it, and
    # trains on other examples of each batch than the uninterrupted run did
    gen = torch.Generator().manual_seed(0)
    plain = item_nll("sequence")

    def loss(student: Student, batch: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, float]]:
        w = torch.rand(len(batch), generator=gen)
        return sum(w[i] * plain(student, [b])[0] for i, b in enumerate(batch)), {}

    return ctx.fit(chain_items(ctx, negatives=False), loss)


def counts_nothing(ctx: TrainContext, cfg: Any) -> TrainResult:
    # the bare loop, not ctx.fit: nothing says how much data it trained on
    items = [{"input": ctx.task.student_input(ex), "target": c.text} for ex in ctx.train for c in ctx.positives.get(ex.id, [])]
    return fit(ctx.student, items, item_nll("sequence"), ctx.config, ctx.evaluate, ctx.out_dir, ctx.log, False)


def diverges(ctx: TrainContext, cfg: Any) -> TrainResult:
    plain = item_nll("sequence")
    return ctx.fit(chain_items(ctx, negatives=False), lambda s, b: (plain(s, b)[0] * float("nan"), {}))


def untrained_on_reload(path: Any, device: str = "cpu", **lengths: int) -> Student:
    # loads the untrained tiny T5 the checkpoint was trained from, not the checkpoint
    models = path.parents[2] / "store" / "models"
    folder = next(f for f in models.iterdir() if (f / "config.json").is_file() and '"t5"' in (f / "config.json").read_text())
    return Student.load(str(folder), device, **lengths)


def plain_positives(ctx: TrainContext, cfg: Any) -> TrainResult:
    return ctx.fit(chain_items(ctx, negatives=False), item_nll("sequence"))


BROKEN = {
    "reads_negatives": (_method("reads_negatives", reads_negatives, {"positives"}), "declares its inputs", "negatives"),
    "reads_gold": (_method("reads_gold", reads_gold, {"positives"}), "declares its inputs", "gold answer"),
    "reads_test": (_method("reads_test", reads_test, {"gold"}), "never reads test", "test split"),
    "diverges": (_method("diverges", diverges, {"positives"}), "trains", "diverged"),
    "counts_nothing": (_method("counts_nothing", counts_nothing, {"positives"}), "reports data counts", "data/train_items"),
    "unseeded": (_method("unseeded", unseeded, {"positives"}), "deterministic", ""),
    "forgets_its_state": (_method("forgets_its_state", forgets_its_state, {"positives"}), "resumes", "differ"),
    "reload_untrained": (
        _method("reload_untrained", plain_positives, {"positives"}, load_student=untrained_on_reload),
        "reloads and decodes",
        "t5",
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_method_fails_its_clause(name, monkeypatch, tmp_path):
    method, clause, words = BROKEN[name]
    monkeypatch.setitem(METHODS, name, method)
    report = contract.check(name, work=tmp_path)
    assert not report.ok
    failed = report.failure
    assert failed.name == clause, f"{name}: expected {clause!r} to fail, got {failed.name!r}: {failed.detail}"
    assert words in failed.detail
    # no clause before it failed (those a failed training could not check are None)
    names = list(contract.CLAUSES)
    assert not any(c.ok is False for c in report.clauses[: names.index(clause)])


def test_a_method_declaring_what_it_reads_passes(monkeypatch, tmp_path):
    """The same training as reads_negatives, declared: the guard is what it reads, not who it is."""
    monkeypatch.setitem(METHODS, "declared", _method("declared", reads_negatives, {"positives", "negatives"}))
    assert contract.check("declared", work=tmp_path).ok


# --- the cache and the grid ------------------------------------------------------------------------


def tiny_grid(method: str) -> GridSpec:
    return validate(GridSpec, {
        "name": "contract-grid",
        "base": {
            "task": {"name": "arith", "n_train": 16, "n_valid": 4, "n_test": 4},
            "teacher": {"name": "oracle", "k": 1},
            "student": {"model": "tiny", "family": "llama", "tiny": {"d_model": 64, "n_heads": 2, "n_layers": 1, "d_ff": 64}},
            "method": {"name": method},
            "train": {"steps": 2, "batch_size": 4, "eval_every": 2},
            "decode": {"max_new_tokens": 4},
            "eval": {"schemes": ["greedy"]},
        },
    }, "grid")


def test_grid_refuses_a_method_that_fails_its_contract(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(METHODS, "reads_negatives", BROKEN["reads_negatives"][0])
    store = Store(tmp_path / "store")
    with pytest.raises(UserError, match=r"method 'reads_negatives' fails its contract, clause 'declares its inputs'.*negatives"):
        run_grid(tiny_grid("reads_negatives"), "contract-grid", store, show_progress=False)
    assert not (store.root / "checkpoints").exists() or not any((store.root / "checkpoints").iterdir())
    # the report is cached by the code's version: the second refusal reads it, and says the same
    cached = list((tmp_path / "cache" / "contracts").glob("reads_negatives-*.json"))
    assert len(cached) == 1
    with pytest.raises(UserError, match="clause 'declares its inputs'"):
        run_grid(tiny_grid("reads_negatives"), "contract-grid", store, show_progress=False)
    assert contract_state("reads_negatives").startswith("FAIL clause 'declares its inputs'")


def test_cached_report_is_reused_and_keyed_by_the_source(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILLBENCH_CACHE", str(tmp_path / "cache"))
    calls = []
    real = contract.check
    monkeypatch.setattr(contract, "check", lambda name, **kw: calls.append(name) or real(name, **kw))
    assert contract_state("finetune").startswith("not checked yet")  # what --dry-run says
    first = contract.cached("finetune")
    second = contract.cached("finetune")
    assert first.ok and second.to_dict() == first.to_dict() and calls == ["finetune"]
    assert contract_state("finetune") == "pass"
    # another version of the method's code is another key (the file's bytes are hashed)
    monkeypatch.setattr(contract, "VERSION", contract.VERSION + 1)
    assert contract.method_key("finetune") != first.key
