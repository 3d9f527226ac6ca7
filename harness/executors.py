"""Executors: where and when a grid's cells run once its shared stages exist (harness/grid.py).

An executor gets the cells as picklable `CellJob`s and a reporter for their progress events, and
runs each through `harness.grid.execute` (in this process, in a worker process, or in a Ray
task), returning one CellResult per job in job order (None for a job it never started, after a
failure under `fail_fast`). Shared stages are built and locked in the store and a finished cell is
skipped by `run_cell` itself, so an executor only decides where and when cells run. Adding one is
a class here plus an entry in `EXECUTORS`.

- `sequential`: one after another in this process (the Python API's default; tests monkeypatch it).
- `local` (the CLI's default): each cell in a fresh process, `workers` at a time; torch in each
  gets cpu_count // workers threads unless `threads` says otherwise. A worker that dies (killed,
  out of memory) fails its cell, not the grid.
- `ray`: one Ray task per cell with the CPUs / GPUs the cell declares, on a local Ray instance
  (bound to 127.0.0.1) or an existing cluster (`address`); the store must be on storage every
  node sees. Ray schedules; nothing here does.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.config import ExecutorSpec, RunSpec
from harness.errors import UserError
from harness.registry import lookup

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class CellJob:
    """One cell to run, with everything a fresh process needs (picklable)."""

    index: int  # 1-based position in the grid
    total: int
    cell: str
    spec: RunSpec
    store: str  # the store's root folder
    grid: str  # the MLflow experiment
    tracking_uri: str | None
    show_progress: bool  # the cell's own progress bars (only when it runs in this process)
    threads: int | None = None  # torch threads in the process that runs it
    cpus: float = 1.0
    gpus: float = 0.0


class Executor(Protocol):
    in_workers: bool  # cells run outside this process: the grid shows one bar per running cell

    def resources(self, spec: RunSpec) -> tuple[int | None, float, float]:
        """(torch threads, CPUs, GPUs) of a cell."""
        ...

    def run(self, jobs: Sequence[CellJob], report: Report, fail_fast: bool) -> list[Any]:
        """Run every job; one CellResult (or None when not started) per job, in job order."""
        ...


def _execute(job: CellJob, report: Report | None) -> Any:
    from harness.grid import execute  # the grid module imports this one

    return execute(job, report)


class Sequential:
    """One cell after another in this process."""

    in_workers = False

    def resources(self, spec: RunSpec) -> tuple[int | None, float, float]:
        return None, 1.0, 0.0

    def run(self, jobs: Sequence[CellJob], report: Report, fail_fast: bool) -> list[Any]:
        out: list[Any] = []
        for job in jobs:
            if fail_fast and any(r is not None and r.error for r in out):
                out.append(None)
                continue
            out.append(_execute(job, report))
        return out


def _declared(spec: RunSpec, by_method: dict[str, Any]) -> tuple[float, float]:
    r = spec.resources or by_method.get(spec.method.name) or by_method.get("default")
    return (r.cpus, r.gpus) if r is not None else (1.0, 0.0)


def _child(job: CellJob, conn: Any) -> None:
    """A worker process: run the cell, stream its events, send its result last."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = _execute(job, lambda event: conn.send(("event", event)))
        conn.send(("result", result))
    finally:
        conn.close()


class Local:
    """Each cell in a fresh process (spawned: no state inherited), `workers` at a time."""

    in_workers = True

    def __init__(self, workers: int = 1, threads: int | None = None, resources: dict[str, Any] | None = None) -> None:
        if workers < 1:
            raise UserError(f"executor 'local': workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.by_method = resources or {}

    def resources(self, spec: RunSpec) -> tuple[int | None, float, float]:
        return (self.threads, *_declared(spec, self.by_method))

    def run(self, jobs: Sequence[CellJob], report: Report, fail_fast: bool) -> list[Any]:
        from multiprocessing.connection import wait

        from harness.run import CellResult

        ctx = multiprocessing.get_context("spawn")
        results: dict[int, Any] = {}
        running: dict[Any, tuple[CellJob, Any]] = {}  # reader -> (job, process)
        queue = list(jobs)
        stop = False
        while queue or running:
            while queue and len(running) < self.workers and not stop:
                job = queue.pop(0)
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(job, writer), name=f"cell-{job.index}", daemon=False)
                proc.start()
                writer.close()  # the child holds the only write end: EOF when it exits
                running[reader] = (job, proc)
            if stop:
                queue = []
            if not running:
                break
            for reader in wait(list(running)):
                job, proc = running[reader]
                try:
                    kind, payload = reader.recv()
                except (EOFError, OSError):  # the process died without a result (killed, OOM)
                    proc.join()
                    error = f"worker process died (exit code {proc.exitcode})"
                    report({"kind": "end", "job": job.index, "error": error, "seconds": 0.0})
                    results[job.index] = CellResult(job.cell, "", {}, error=error)
                    reader.close()
                    del running[reader]
                    stop = stop or fail_fast
                    continue
                if kind == "event":
                    report(payload)
                    continue
                results[job.index] = payload
                stop = stop or (fail_fast and bool(payload.error))
                proc.join()
                reader.close()
                del running[reader]
        return [results.get(job.index) for job in jobs]


class Ray:
    """One Ray task per cell (`num_cpus` / `num_gpus` as the cell declares)."""

    in_workers = True

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int | None = None, resources: dict[str, Any] | None = None) -> None:
        self.address, self.workers, self.threads = address, workers, threads
        self.by_method = resources or {}

    def resources(self, spec: RunSpec) -> tuple[int | None, float, float]:
        cpus, gpus = _declared(spec, self.by_method)
        return (self.threads or max(1, int(cpus)), cpus, gpus)

    def run(self, jobs: Sequence[CellJob], report: Report, fail_fast: bool) -> list[Any]:
        if not self.address:
            # Ray's servers bind the node's external address on Linux unless it takes the node to
            # be a single-machine one, which this setting (read at import, inherited by the
            # processes Ray starts) says: every server then listens on 127.0.0.1 only
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
            from ray._private import ray_constants
        except ImportError:
            raise UserError("executor 'ray' needs Ray: pip install 'distillbench[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:  # a local instance on loopback only, no dashboard
                ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] not in ("0", "false", "False")
                ray.init(address="local", num_cpus=self.workers or os.cpu_count(), include_dashboard=False,
                         _node_ip_address="127.0.0.1", log_to_driver=False)
        try:
            task = ray.remote(_ray_cell)
            refs = {task.options(num_cpus=job.cpus, num_gpus=job.gpus, max_retries=0).remote(job): job for job in jobs}
            for job in jobs:
                report({"kind": "start", "job": job.index})
            results: dict[int, Any] = {}
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                job = refs[ready[0]]
                result, events = ray.get(ready[0])
                for event in events:
                    report(event)
                results[job.index] = result
                if fail_fast and result.error:
                    for ref in pending:
                        ray.cancel(ref)
                    break
            return [results.get(job.index) for job in jobs]
        finally:
            if started_here:
                ray.shutdown()


def _ray_cell(job: CellJob) -> tuple[Any, list[dict[str, Any]]]:
    """A Ray task: the cell's result and its events (the last of them, its end)."""
    events: list[dict[str, Any]] = []
    result = _execute(job, lambda event: events.append(event) if event["kind"] != "stage" else None)
    return result, [e for e in events if e["kind"] == "end"]


EXECUTORS: dict[str, Callable[..., Executor]] = {"sequential": Sequential, "local": Local, "ray": Ray}


def get_executor(spec: ExecutorSpec | str) -> Executor:
    """The executor a grid spec's `executor:` section (or a bare name) describes."""
    if isinstance(spec, str):
        spec = ExecutorSpec(name=spec)
    make = lookup(EXECUTORS, spec.name, "executor")
    if spec.name == "sequential":
        return make()
    if spec.name == "local":
        return make(workers=spec.workers, threads=spec.threads, resources=spec.resources)
    return make(address=spec.ray_address, workers=spec.workers if spec.workers > 1 else None, threads=spec.threads, resources=spec.resources)
