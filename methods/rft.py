"""rft — rejection-sampling fine-tuning on the distinct right reasoning paths.

Yuan et al. 2023, "Scaling Relationship on Learning Mathematical Reasoning with Large Language
Models", arXiv 2308.01825, Sec. 4 (RFT): sample k reasoning paths per train question, reject the
ones with a wrong answer, keep one path per distinct *list of equations* ("different calculation
processes"), and fine-tune on the kept paths together with the supervised data (D_SFT: the
datasets' own solutions). Here the teacher bank is the sampler: its right chains are the
accepted paths. The paper compares equations written as GSM8K's calculator annotations
(<<48/2=24>>); chains without them are compared by the equations they state ("48 / 2 = 24"),
and a chain stating none by its normalised text.

Written with `distillbench new-method rft` (README: Adding a method walks through it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.training import TrainContext, TrainResult
from harness.types import Chain, Example
from methods.base import MethodDef
from methods.common import item_nll

__all__ = ["METHOD", "RftConfig", "equations", "distinct", "items", "test_input", "train"]

CITATION = "Yuan et al. 2023, arXiv 2308.01825 (RFT)"


@dataclass(frozen=True)
class RftConfig:
    """Defaults as the paper: distinct paths by their equation lists (Sec. 4), D_SFT included."""

    dedup: str = "equations"  # equations | text | none
    with_gold_rationale: bool = True  # D_SFT: the example's own solution, where the dataset has one
    max_chains: int | None = None  # distinct paths per example; None: all (the paper keeps all)

    def __post_init__(self) -> None:
        if self.dedup not in ("equations", "text", "none"):
            raise ValueError(f"dedup must be equations, text or none, got {self.dedup!r}")
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


# the loss is methods.common.item_nll: L = 1/B sum_b NLL(path_b | x_b), the paper's SFT loss

_CALCULATOR = re.compile(r"<<([^<>]*=[^<>]*)>>")
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_STATED = re.compile(rf"{_NUMBER}(?:\s*[-+*/×÷^]\s*\(?\s*{_NUMBER}\s*\)?)+\s*=\s*{_NUMBER}")


def equations(text: str) -> tuple[str, ...]:
    """The equations of a reasoning path, in order, without spaces or thousands separators: the
    calculator annotations when there are any, else the "a op b = c" it states."""
    found = _CALCULATOR.findall(text) or _STATED.findall(text)
    return tuple(re.sub(r"[\s,]", "", e) for e in found)


def distinct(chains: list[Chain], dedup: str) -> list[Chain]:
    """The first chain of each distinct calculation (or text), in bank order."""
    if dedup == "none":
        return chains
    seen, out = set(), []
    for c in chains:
        key = (equations(c.text) if dedup == "equations" else ()) or (" ".join(c.text.lower().split()),)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def test_input(task: Any, example: Example, cfg: RftConfig) -> str:
    return task.student_input(example)


def items(ctx: TrainContext, cfg: RftConfig) -> list[dict[str, Any]]:
    """(question, path) items: the distinct right chains of each train example, and its gold
    solution when the dataset has one (D_SFT ∪ D_RFT)."""
    out = []
    right = kept = gold = 0
    for ex in ctx.train:
        chains = [c for c in ctx.positives.get(ex.id, []) if c.text.strip()]
        paths = distinct(chains, cfg.dedup)[: cfg.max_chains]
        right, kept = right + len(chains), kept + len(paths)
        x = test_input(ctx.task, ex, cfg)
        out += [{"input": x, "target": c.text} for c in paths]
        if cfg.with_gold_rationale and ex.rationale:
            out.append({"input": x, "target": f"{ex.rationale.strip()} The answer is {ex.answer}."})
            gold += 1
    ctx.log({"data/right_chains": right, "data/distinct_paths": kept, "data/gold_solutions": gold}, 0)
    return out


def train(ctx: TrainContext, cfg: RftConfig) -> TrainResult:
    return ctx.fit(items(ctx, cfg), item_nll(ctx.config.loss_reduction))


METHOD = MethodDef(
    "rft", RftConfig, train, test_input, CITATION,
    "teacher positives, one per distinct list of equations, + the dataset's gold solutions",
    inputs=frozenset({"gold", "positives"}),
)
