"""What every method file exports as `METHOD`: its definition, read by the grid, the dry run and
the scorer instead of special cases keyed by method name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.training import TrainContext, TrainResult

# What a method trains on: gold labels, teacher positive / negative chains, the model another
# method trained (a shared stage, e.g. NAT's stage-1 negative adapter for NCE), or the teacher
# itself, called while training (FDD: new problems written from the student's results).
Input = Literal["gold", "positives", "negatives", "model", "teacher"]
INPUTS: tuple[str, ...] = ("gold", "positives", "negatives", "model", "teacher")


@dataclass(frozen=True)
class MethodDef:
    name: str
    config: type  # a dataclass with the paper's defaults
    train: Callable[[TrainContext, Any], TrainResult]
    test_input: Callable[[Any, Any, Any], str]  # (task, example, config) -> student input at test time
    citation: str
    consumes: str  # what the method trains on, in words (README methods table, `distillbench methods`)
    inputs: frozenset[str] = frozenset({"gold"})  # the same as a set of INPUTS
    # sequences scored per training example (dss/mi: predict + explain), in forward+backward
    # equivalents: the dry run's cost estimate. Like `stages` and `plan`, either a value or a
    # function of the method's config (QCRD's depends on m, k, the scheme and the judge).
    passes: float | Callable[[Any], float] = 1
    scores_chains: bool = False  # writes ranker scores on its chains (what asc:1..3 vote with)
    # methods whose trained model this one builds on (NCE: ("nat",)): trained once (or reused from
    # that method's own cell) with the same student, bank, budget and seed, and handed to `train`
    # as ctx.models[name]; the options of each come from the config's field of the same name
    # (QCRD's: the DSS model a fixed negative generator samples from, only with `negatives: fixed`)
    stages: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()
    # how a saved checkpoint of this method loads (default Student.load), for methods whose
    # student is more than a model with an optional LoRA adapter (NAT's integrate units)
    load_student: Callable[..., Any] | None = None
    # what it trains, in order, one line each (shown by --dry-run); each trains the cell's budget
    plan: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()
    # methods that call the teacher while training: (config, train examples) -> the calls it will
    # make, one line (shown by --dry-run before any is made)
    teacher_calls: Callable[[Any, int], str] | None = None
    # options that make the method contract's check (harness/contract.py) quick without changing
    # what it checks, e.g. QCRD's 500-step judge pretraining cut to a few steps
    quick: dict[str, Any] = field(default_factory=dict)

    def stages_of(self, cfg: Any) -> tuple[str, ...]:
        """The methods whose trained model this one builds on, with these options."""
        return self.stages(cfg) if callable(self.stages) else self.stages

    def plan_of(self, cfg: Any) -> tuple[str, ...]:
        return self.plan(cfg) if callable(self.plan) else self.plan

    def passes_of(self, cfg: Any) -> float:
        return self.passes(cfg) if callable(self.passes) else self.passes

    def __post_init__(self) -> None:
        unknown = set(self.inputs) - set(INPUTS)
        if unknown or not self.inputs:
            raise ValueError(f"method {self.name!r}: inputs must be a non-empty subset of {INPUTS}, got {sorted(self.inputs)}")
        if not callable(self.passes) and self.passes < 1:
            raise ValueError(f"method {self.name!r}: passes must be >= 1, got {self.passes}")
