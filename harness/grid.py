"""Run a grid: resolve every cell, build the shared stages once, hand the cells to an executor
(finished cells are skipped; the results table is leaderboard/table.py).

A cell that raises stays in its cell: its MLflow run is FAILED with the traceback as an artifact
(a FAILED run is opened for a cell that failed before its run began), its store marker says
`failed` with the error (harness/cells.py), and the other cells go on; `fail_fast` starts no
cell after the first failure. A rerun retries only failed and unfinished cells.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from harness import cells as markers
from harness import contract
from harness.config import GridSpec, RunSpec
from harness.errors import UserError, redact
from harness.executors import CellJob, Executor, Sequential
from harness.run import CellResult, build_shared, cell_hash, check_models, prepare, run_cell, shared_key
from harness.store import Store
from harness.tracking import Tracker

Emit = Callable[[dict[str, Any]], None]


def one_line(e: BaseException) -> str:
    """"Type: first line" (redacted); a user mistake reads "UserError (Subclass): ..." so the exit
    code can tell it from a crash."""
    text = redact(str(e)).strip().splitlines()
    name = type(e).__name__
    if isinstance(e, UserError) and name != "UserError":
        name = f"UserError ({name})"
    return f"{name}: {text[0] if text else ''}"[:500]


def execute(job: CellJob, emit: Emit | None = None) -> CellResult:
    """Run one cell in this process. A failure of the cell is recorded (FAILED run with its
    traceback, `failed` marker) and returned as CellResult.error, never raised."""
    emit = emit or (lambda event: None)
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    store = Store(job.store)
    key = cell_hash(job.spec)
    emit({"kind": "start", "job": job.index})
    start = time.perf_counter()
    tracker: Tracker | None = None
    try:
        tracker = Tracker(store, job.grid, job.tracking_uri)
        markers.mark(store, key, "running", cell=job.cell, grid=job.grid)

        def progress(stage: str, done: int | None = None, total: int | None = None) -> None:
            emit({"kind": "stage", "job": job.index, "stage": stage, "done": done, "total": total})

        res = run_cell(job.spec, store, tracker, job.cell, show_progress=job.show_progress, progress=progress)
    except Exception as e:
        result = record_failure(store, tracker, job, one_line(e), traceback.format_exc())
        emit({"kind": "end", "job": job.index, "error": result.error, "seconds": time.perf_counter() - start})
        return result
    # results that wait in the tracking outbox count as finished until `distillbench sync`
    pending = key in tracker.outboxed
    markers.mark(store, key, "done", cell=job.cell, grid=job.grid, run_id=res.run_id, skipped=res.skipped, pending_sync=pending)
    emit({"kind": "end", "job": job.index, "run_id": res.run_id, "skipped": res.skipped, "seconds": time.perf_counter() - start})
    return res


def record_failure(store: Store, tracker: Tracker | None, job: CellJob, error: str, tb: str) -> CellResult:
    """A failed cell: its traceback file, a FAILED run (the one it had begun, else a new one with
    the traceback as its artifact) and its `failed` marker."""
    error, tb = redact(error), redact(tb)  # a key a server echoed into an exception stays off disk
    key = cell_hash(job.spec)
    path = markers.write_traceback(store, key, tb)
    run_id = ""
    if tracker is not None:
        run_id = tracker.failed.get(key) or tracker.record_failure(job.cell, failure_tags(job), tb)
    pending = tracker is not None and key in tracker.outboxed
    markers.mark(store, key, "failed", cell=job.cell, grid=job.grid, error=error, run_id=run_id, traceback=str(path), pending_sync=pending)
    return CellResult(job.cell, run_id, {}, error=error)


def failure_tags(job: CellJob) -> dict[str, str]:
    s = job.spec
    return {"cell_hash": cell_hash(s), "cell": job.cell, "grid": s.name, "task": s.task.name, "method": s.method.name}


@dataclass
class Reporter:
    """Prints what the cells do: a line per cell start and end, or, while cells run in other
    processes, one progress bar for the grid and one per running cell."""

    console: Console
    name: str
    jobs: list[CellJob]
    live: bool  # progress bars (cells in worker processes) rather than lines

    def __post_init__(self) -> None:
        self.progress: Any = None
        self.bars: dict[int, Any] = {}
        self.failed = 0
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=True)
            self.grid_bar = self.progress.add_task(f"[bold]{escape(self.name)}[/] cells", total=len(self.jobs))

    def __enter__(self) -> Reporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        job = self.jobs[event["job"] - 1]
        kind = event["kind"]
        if kind == "start":
            if self.progress is not None:
                self.bars[job.index] = self.progress.add_task(f"{escape(job.cell)}: starting", total=None)
            else:
                self.console.rule(f"[bold]{escape(self.name)}[/] cell {job.index}/{job.total}: {escape(job.cell)}")
        elif kind == "stage" and self.progress is not None and job.index in self.bars:
            stage = event["stage"] + (f" {event['done']}/{event['total']}" if event.get("total") else "")
            self.progress.update(self.bars[job.index], description=f"{escape(job.cell)}: {escape(stage)}", completed=event.get("done") or 0, total=event.get("total"))
        elif kind == "end":
            if event.get("error"):
                self.failed += 1
                what = f"[red]FAILED[/] after {event['seconds']:.0f} s: {escape(event['error'])}"
            elif event.get("skipped"):
                what = f"already finished, skipped (MLflow run {event['run_id']})"
            else:
                what = f"done in {event['seconds']:.0f} s (MLflow run {event['run_id']})"
            if self.progress is not None:
                if job.index in self.bars:
                    self.progress.remove_task(self.bars.pop(job.index))
                self.progress.advance(self.grid_bar)
                self.progress.update(self.grid_bar, description=f"[bold]{escape(self.name)}[/] cells" + (f" ({self.failed} failed)" if self.failed else ""))
            self.console.print(f"{escape(job.cell)}: {what}")


def run_grid(
    grid: GridSpec | list[tuple[str, RunSpec]],
    name: str,
    store: Store,
    tracking_uri: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    executor: Executor | None = None,
    fail_fast: bool = False,
    strict: bool = False,
) -> list[CellResult]:
    """Plan, build the shared stages once, then hand the cells to the executor (in this process,
    one after another, by default). Failed cells come back with CellResult.error set. The
    contamination check runs with the shared stages; `strict` refuses (UserError) a grid whose
    training data duplicates a test question, before any cell trains."""
    from harness import contamination_check

    console = console or Console(stderr=True)
    executor = executor or Sequential()
    cells = grid.cells() if isinstance(grid, GridSpec) else grid
    methods: list[str] = []
    for _, spec in cells:  # every name and model resolves before any work starts
        p = prepare(spec)
        check_models(spec)
        methods += [m for m in (*p.method.stages_of(p.method_cfg), p.method.name) if m not in methods]
    tracker = Tracker(store, name, tracking_uri)
    live = show_progress and executor.in_workers
    jobs = [
        CellJob(i, len(cells), cell, spec, str(store.root), name, tracking_uri, show_progress and not executor.in_workers, *executor.resources(spec))
        for i, (cell, spec) in enumerate(cells, 1)
    ]

    # shared stages (teacher banks, tiny students, rankers) of the unfinished cells, each built
    # once; a stage that fails fails the cells that need it, and only those
    finished = {job.index: run_id for job in jobs if (run_id := tracker.finished_run(cell_hash(job.spec))) is not None}
    todo = [job for job in jobs if job.index not in finished]
    if todo:  # a method that fails its contract (harness/contract.py) is refused before any work
        contract.require(methods, lambda m: console.print(f"[dim]checking the method contract of {escape(m)} (once per version of its code)[/]"))
    groups: dict[str, list[CellJob]] = {}
    for job in todo:
        groups.setdefault(shared_key(job.spec), []).append(job)
    failed: dict[int, CellResult] = {}
    reports: list[dict[str, Any]] = []

    def fail(members: list[CellJob], what: str, e: Exception) -> None:
        tb = traceback.format_exc()
        console.print(f"[red]{what} of {escape(members[0].cell)} failed[/]: {escape(one_line(e))}")
        for job in members:
            failed[job.index] = record_failure(store, tracker, job, f"shared stage: {one_line(e)}", tb)

    for i, group in enumerate(groups.values(), 1):
        console.print(f"[dim]shared stages {i}/{len(groups)}: teacher bank and student of {escape(group[0].cell)}[/]")
        try:
            build_shared(group[0].spec, store)
        except Exception as e:
            fail(group, "shared stages", e)
            if fail_fast:
                break
            continue
        # the contamination check of each distinct task, bank and test sets (cached in the store);
        # cells sharing a bank may differ in their test sets, so a check fails only its own cells
        scopes: dict[str, list[CellJob]] = {}
        for job in group:
            scopes.setdefault(contamination_check.scope(job.spec), []).append(job)
        for members in scopes.values():
            try:
                reports.append(contamination_check.report_for(members[0].spec, store))
            except Exception as e:
                fail(members, "contamination check", e)
        if fail_fast and failed:
            break
    for report in {r["key"]: r for r in reports}.values():
        if contamination_check.totals(report)["all_tests_total"]:
            line = f"contaminated: {contamination_check.describe(report)}"
            if strict:
                raise UserError(f"{line}; --strict refuses it (distillbench contamination SPEC lists every pair)")
            console.print(f"[yellow]warning[/]: {escape(line)}", highlight=False)
    runnable = [job for job in todo if job.index not in failed]
    if fail_fast and failed:
        runnable = []
    with Reporter(console, name, jobs, live) as report:
        for job in jobs:  # finished cells are skipped here, not handed to a worker
            if job.index in finished:
                report({"kind": "end", "job": job.index, "run_id": finished[job.index], "skipped": True, "seconds": 0.0})
        done = executor.run(runnable, report, fail_fast)
    results = {job.index: r for job, r in zip(runnable, done, strict=True) if r is not None} | failed
    results |= {i: CellResult(jobs[i - 1].cell, run_id, {}, skipped=True) for i, run_id in finished.items()}
    # with fail_fast, cells never started come back as not run
    return [results.get(job.index) or CellResult(job.cell, "", {}, error="not run (--fail-fast)") for job in jobs]
