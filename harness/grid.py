"""Run a grid: resolve every cell, build the shared stages once, hand the cells to an executor
(finished cells are skipped; the results table is leaderboard/table.py)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from harness.config import GridSpec, RunSpec
from harness.executors import Executor, Sequential
from harness.run import CellResult, build_shared, cell_hash, prepare, run_cell, shared_key
from harness.store import Store
from harness.tracking import Tracker


def run_grid(
    grid: GridSpec | list[tuple[str, RunSpec]],
    name: str,
    store: Store,
    tracking_uri: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    executor: Executor | None = None,
) -> list[CellResult]:
    """Plan, build the shared stages once, then hand the cells to the executor (sequential by default)."""
    console = console or Console(stderr=True)
    cells = grid.cells() if isinstance(grid, GridSpec) else grid
    for _, spec in cells:  # every name resolves before any work starts
        prepare(spec)
    tracker = Tracker(store, name, tracking_uri)

    # shared stages (teacher banks, tiny students) of the unfinished cells, each built once
    todo = [(cell, spec) for cell, spec in cells if tracker.finished_run(cell_hash(spec)) is None]
    groups: dict[str, tuple[str, RunSpec]] = {}
    for cell, spec in todo:
        groups.setdefault(shared_key(spec), (cell, spec))
    for i, (cell, spec) in enumerate(groups.values(), 1):
        console.print(f"[dim]shared stages {i}/{len(groups)}: teacher bank and student of {escape(cell)}[/]")
        build_shared(spec, store)

    def run_one(i: int, cell: str, spec: RunSpec) -> CellResult:
        start = time.perf_counter()
        console.rule(f"[bold]{name}[/] cell {i}/{len(cells)}: {cell}")
        res = run_cell(spec, store, tracker, cell, show_progress=show_progress)
        what = "already finished, skipped" if res.skipped else f"done in {time.perf_counter() - start:.0f} s"
        console.print(f"{cell}: {what} (MLflow run {res.run_id})")
        return res

    return (executor or Sequential()).run(cells, run_one)
