"""Executors: how a grid's cells are run once its shared stages exist (harness/grid.py).

An executor gets the cells and a function that runs one cell in the current process, and returns
their results in cell order. Adding one (processes on one machine, a Ray cluster) is one class
here plus an entry in `EXECUTORS`: shared stages are already built and locked in the store, and a
finished cell is skipped by `run_cell` itself, so an executor only decides where and when cells run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from harness.config import RunSpec
from harness.registry import lookup
from harness.run import CellResult

Cell = tuple[str, RunSpec]  # (cell name, its run spec)
RunOne = Callable[[int, str, RunSpec], CellResult]  # (1-based position, name, spec) -> result


class Executor(Protocol):
    def run(self, cells: Sequence[Cell], run_one: RunOne) -> list[CellResult]:
        """Run every cell (through `run_one`, or its equivalent elsewhere); results in cell order."""
        ...


class Sequential:
    """One cell after another in this process (the default)."""

    def run(self, cells: Sequence[Cell], run_one: RunOne) -> list[CellResult]:
        return [run_one(i, cell, spec) for i, (cell, spec) in enumerate(cells, 1)]


EXECUTORS: dict[str, Callable[[], Executor]] = {"sequential": Sequential}


def get_executor(name: str) -> Executor:
    return lookup(EXECUTORS, name, "executor")()
