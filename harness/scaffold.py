"""`distillbench new-method NAME`: a new method file and its test, from a commented template.

The method it writes trains and passes the method contract as written (harness/contract.py): it
is fine-tuning on the teacher's right chains with a per-chain weight, the smallest method that shows
every part (config with defaults and citation, a pure loss with its equation, items, `train` on
the shared loop, `test_input`, `METHOD`). Its author replaces the loss and the items. The file
is registered with one line in methods/__init__.py's METHODS, which the command adds.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from harness.errors import UserError

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

METHOD_TEMPLATE = '''"""{name} — <one line: what the method does>.

<Paper: authors year, "title", arXiv id; the section and equations this file implements. Say
where the paper is silent and what this file does there (the authors' code, or a choice of ours,
listed in the README methods table).>

Written by `distillbench new-method {name}` as a working starting point: it fine-tunes on the
teacher's right chains with a per-chain weight. Replace `loss` and `items` with the method's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.student import Student
from harness.training import TrainContext, TrainResult
from harness.types import Example
from methods.base import MethodDef
from methods.common import reduce_tokens

__all__ = ["METHOD", "{cls}", "items", "loss", "test_input", "train"]

CITATION = "<authors year, arXiv id>"


@dataclass(frozen=True)
class {cls}:
    """The paper's defaults (cite the table or section each comes from). Every field is an option
    of a run spec's `method:` section, and part of the checkpoint's key."""

    weight: float = 1.0  # <what it weights, where the paper sets it>
    max_chains: int | None = None  # teacher chains per example; None: all

    def __post_init__(self) -> None:
        # a bad option is a one-line error before any work (harness/errors.py makes it a UserError)
        if self.weight <= 0:
            raise ValueError(f"weight must be > 0, got {{self.weight}}")


def loss(token_nll: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, reduction: str = "sequence") -> torch.Tensor:
    """L = 1/B sum_b w_b * NLL(y_b | x_b)                                   (<paper, Eq. n>)

    token_nll [B, T]: -log p(y_b,t | y_b,<t, x_b); mask [B, T]: 1 on target tokens; weight [B].
    `reduction` is train.loss_reduction: "sequence" (mean over each sequence's tokens, then over
    the batch) or "token" (over all tokens of the batch).
    """
    return reduce_tokens(token_nll * weight[:, None], mask, reduction)


def test_input(task: Any, example: Example, cfg: {cls}) -> str:
    """The student's input at test time (and in valid selection): the task's own input here."""
    return task.student_input(example)


def items(ctx: TrainContext, cfg: {cls}) -> list[dict[str, Any]]:
    """Training items from what the method declares in METHOD.inputs (here: positives). Reading
    anything undeclared (ctx.negatives, or a train example's gold answer) is refused."""
    out = []
    for ex in ctx.train:
        chains = [c for c in ctx.positives.get(ex.id, []) if c.text.strip()][: cfg.max_chains]
        out += [{{"input": test_input(ctx.task, ex, cfg), "target": c.text, "weight": cfg.weight}} for c in chains]
    # data counts go to the run (the contract's "reports data counts"; ctx.fit adds data/train_items)
    ctx.log({{"data/examples": len(ctx.train), "data/chains": len(out)}}, 0)
    return out


def train(ctx: TrainContext, cfg: {cls}) -> TrainResult:
    reduction = ctx.config.loss_reduction

    def batch_loss(student: Student, batch: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, float]]:
        s = student.score([b["input"] for b in batch], [b["target"] for b in batch])
        token_nll = s.token_nll()  # [B, T], 0 off the target
        weight = torch.tensor([b["weight"] for b in batch], dtype=token_nll.dtype, device=token_nll.device)
        return loss(token_nll, s.mask, weight, reduction), {{}}

    # the shared loop: AdamW, schedule, accumulation, selection on valid, resumable after a kill
    return ctx.fit(items(ctx, cfg), batch_loss)


METHOD = MethodDef(
    "{name}", {cls}, train, test_input, CITATION,
    "teacher positives, weighted",  # what it trains on, in words (README table, `distillbench methods`)
    inputs=frozenset({{"positives"}}),  # gold, positives, negatives, model, teacher: only these are handed over
)
'''

TEST_TEMPLATE = '''"""{name}: its loss against hand-computed values and its properties. The method contract
(tests/methods/test_contract.py) trains it on tiny T5 and Llama, checks determinism, resume,
reload and what it reads: nothing to add here for that."""

from __future__ import annotations

import math

import pytest
import torch

from methods import METHODS, make_config
from methods.{name} import loss


def test_loss_by_hand():
    # two sequences: token NLLs (1, 3) and (2, pad); weights 1 and 0.5 (Student.score gives 0 on pads)
    nll = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    w = torch.tensor([1.0, 0.5])
    # sequence: (1 * (1 + 3) / 2 + 0.5 * 2 / 1) / 2 = (2 + 1) / 2
    assert loss(nll, mask, w, "sequence").item() == pytest.approx(1.5)
    # token: (1 + 3 + 0.5 * 2) / 3
    assert loss(nll, mask, w, "token").item() == pytest.approx(5 / 3)


def test_weight_one_is_plain_nll():
    nll, mask = torch.rand(3, 4), torch.ones(3, 4)
    assert loss(nll, mask, torch.ones(3)).item() == pytest.approx(nll.mean(dim=1).mean().item())
    assert math.isfinite(loss(nll, mask, torch.full((3,), 2.0)).item())


def test_registered_with_defaults():
    cfg = make_config(METHODS["{name}"], {{}})
    assert cfg.weight > 0
'''

REGISTRY = Path("methods") / "__init__.py"


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Config"


def check_new_name(name: str, root: Path) -> None:
    from methods import METHODS

    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise UserError(f"method name {name!r}: use lower case letters, digits and _ (a Python module name, at most 40)")
    if name in METHODS or (root / "methods" / f"{name}.py").exists():
        raise UserError(f"method {name!r} exists already (methods/{name}.py)")


def write(name: str, root: Path) -> list[Path]:
    """Write methods/<name>.py and tests/methods/test_<name>.py under `root` and register the
    method in methods/__init__.py; nothing is written when any step would fail."""
    check_new_name(name, root)
    registry = root / REGISTRY
    text = registry.read_text(encoding="utf-8") if registry.is_file() else ""
    if not re.search(r"^from methods import .+$", text, re.M) or "METHODS: dict[str, MethodDef] = {" not in text:
        raise UserError(f"{registry}: not the methods registry this command edits (no `from methods import ...` line or METHODS dict)")
    method_file = root / "methods" / f"{name}.py"
    test_file = root / "tests" / "methods" / f"test_{name}.py"
    if test_file.exists():
        raise UserError(f"{test_file} exists already")
    text = re.sub(r"^(from methods import )(.+)$", lambda m: m[1] + ", ".join(sorted({*m[2].split(", "), name})), text, count=1, flags=re.M)
    text = re.sub(r"(METHODS: dict\[str, MethodDef\] = \{\n(?:    .+\n)*)", lambda m: m[1] + f'    "{name}": {name}.METHOD,\n', text, count=1)
    fields = {"name": name, "cls": class_name(name)}
    test_file.parent.mkdir(parents=True, exist_ok=True)
    method_file.write_text(METHOD_TEMPLATE.format(**fields), encoding="utf-8")
    test_file.write_text(TEST_TEMPLATE.format(**fields), encoding="utf-8")
    registry.write_text(text, encoding="utf-8")
    return [method_file, test_file, registry]
