"""What every method file exports as `METHOD`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.training import TrainContext, TrainResult


@dataclass(frozen=True)
class MethodDef:
    name: str
    config: type  # a dataclass with the paper's defaults
    train: Callable[[TrainContext, Any], TrainResult]
    test_input: Callable[[Any, Any, Any], str]  # (task, example, config) -> student input at test time
    citation: str
    consumes: str  # what the method trains on: gold labels, teacher positives, negatives
