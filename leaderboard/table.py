"""The results table of a grid as the CLI prints it (`distillbench grid`, `run`, `results`):
rows read back from MLflow by leaderboard/data.py, then the verdict."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def fmt_acc(v: Any) -> str:
    """A table cell: an accuracy (acc, lo, hi) as 'acc [lo, hi]', a SeedStats as 'mean ± std', a
    fraction as a percentage; '-' for nothing."""
    from leaderboard.data import SeedStats

    if v is None:
        return "-"
    if isinstance(v, SeedStats):
        if v.n == 0:
            return "-"
        return f"{100 * v.mean:.1f}" if math.isnan(v.std) else f"{100 * v.mean:.1f} ± {100 * v.std:.1f}"
    if isinstance(v, tuple):
        acc, lo, hi = v
        return f"{100 * acc:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{100 * v:.1f}"
    return str(v)


def print_table(tracking_uri: str, experiment: str | None, console: Console | None = None) -> bool:
    """Print the results table read back from MLflow, then the verdict: the best cell and scheme
    picked on valid accuracy (mean over seeds), its test interval against the untrained student and
    the most-frequent answer, and every group's test mean ± std on that scheme. Returns whether the
    best cell learned."""
    from leaderboard.data import best_cell, group_by_seed, load_cells, machines, separated, table_rows

    console = console or Console()
    rows = load_cells(tracking_uri, experiment)
    if not rows:
        console.print(f"no finished runs{' in experiment ' + repr(experiment) if experiment else ''} at {tracking_uri}")
        return False
    header, body = table_rows(rows)
    tasks = sorted({r.task for r in rows})
    seeds = max(g.n for g in group_by_seed(rows))
    spread = "; mean ± std over seeds" if seeds > 1 else "; one seed per cell (add grid.seed=[0,1,2] for the spread)"
    title = f"{experiment or 'all experiments'}: test accuracy on {', '.join(tasks)}, % [bootstrap 95% interval]{spread}"
    table = Table(title=escape(title))
    for h in header:
        table.add_column(escape(h), justify="left" if h == "cell" else "right", no_wrap=True)
    for r in body:
        *cols, seconds = r
        table.add_row(*(escape(fmt_acc(v)) for v in cols), "-" if math.isnan(seconds) else f"{seconds:.0f}")
    console.print(table)
    for m in machines(rows):
        console.print(f"ran on: {escape(m)}")
    v = best_cell(rows)
    if v is None:
        return False
    verdict = "[green]learned[/]" if v.learned else "[red]not distinguishable from the baselines[/]"
    how = f"on valid accuracy, {fmt_acc(v.valid)}" if v.selected_on == "valid" else "on TEST: these runs logged no valid accuracy per scheme"
    if v.n > 1:
        per_seed = ", ".join(fmt_acc(a) for a in v.per_seed)
        test = f"test {100 * v.acc[0]:.1f} ± {100 * v.std:.1f} over {v.n} seeds ({per_seed})"
    else:
        test = f"test {fmt_acc(v.acc)}"
    console.print(
        f"best cell (picked {how}): {escape(v.cell)} ({escape(v.scheme)}), {test} "
        f"vs untrained {fmt_acc(v.untrained)} and most-frequent answer {fmt_acc(v.baseline)}: {verdict}"
    )
    if len(v.comparison) > 1:
        parts = [f"{escape(label)} {fmt_acc(st)} (n={st.n})" for label, st, _ in v.comparison]
        console.print(f"{escape(v.scheme)} test accuracy by cell, mean ± std over seeds: " + " | ".join(parts))
        best = v.comparison[0]
        for label, st, accs in v.comparison[1:6]:
            diff = 100 * (best[1].mean - st.mean)
            sep = ""
            if max(best[1].n, st.n) > 1:
                sep = " (every seed above every seed of it)" if separated(best[2], accs) else " (their seed ranges overlap)"
                sep = sep if diff > 0 else ""
            console.print(f"  {escape(v.cell)} vs {escape(label)}: {diff:+.1f} points on seed means{sep}")
    return v.learned
