"""Run every cell of a grid, in order, skipping cells that already finished, then print the table."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.config import GridSpec, RunSpec
from harness.run import CellResult, prepare, run_cell
from harness.store import Store
from harness.tracking import Tracker


def run_grid(
    grid: GridSpec | list[tuple[str, RunSpec]],
    name: str,
    store: Store,
    tracking_uri: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> list[CellResult]:
    console = console or Console(stderr=True)
    cells = grid.cells() if isinstance(grid, GridSpec) else grid
    for _, spec in cells:  # every name resolves before any work starts
        prepare(spec)
    tracker = Tracker(store, name, tracking_uri)
    results = []
    for i, (cell, spec) in enumerate(cells, 1):
        start = time.perf_counter()
        console.rule(f"[bold]{name}[/] cell {i}/{len(cells)}: {cell}")
        res = run_cell(spec, store, tracker, cell, show_progress=show_progress)
        what = "already finished, skipped" if res.skipped else f"done in {time.perf_counter() - start:.0f} s"
        console.print(f"{cell}: {what} (MLflow run {res.run_id})")
        results.append(res)
    return results


def fmt_acc(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple):
        acc, lo, hi = v
        return f"{100 * acc:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{100 * v:.1f}"
    return str(v)


def print_table(tracking_uri: str, experiment: str | None, console: Console | None = None) -> bool:
    """Print the results table read back from MLflow; returns whether the best cell learned."""
    from leaderboard.data import best_cell, load_cells, table_rows

    console = console or Console()
    rows = load_cells(tracking_uri, experiment)
    if not rows:
        console.print(f"no finished runs{' in experiment ' + repr(experiment) if experiment else ''} at {tracking_uri}")
        return False
    header, body = table_rows(rows)
    tasks = sorted({r.task for r in rows})
    title = f"{experiment or 'all experiments'}: test accuracy on {', '.join(tasks)}, % [bootstrap 95% interval]"
    table = Table(title=escape(title))
    for h in header:
        table.add_column(h, justify="left" if h == "cell" else "right", no_wrap=True)
    for r in body:
        *cols, seconds = r
        table.add_row(*(fmt_acc(v) for v in cols), "-" if math.isnan(seconds) else f"{seconds:.0f}")
    console.print(table)
    v = best_cell(rows)
    if v is None:
        return False
    verdict = "[green]learned[/]" if v.learned else "[red]not distinguishable from the baselines[/]"
    console.print(
        f"best cell: {v.cell} ({v.scheme}) {fmt_acc(v.acc)} vs untrained {fmt_acc(v.untrained)} "
        f"and most-frequent answer {fmt_acc(v.baseline)}: {verdict}"
    )
    return v.learned
