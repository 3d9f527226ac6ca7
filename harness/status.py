"""`distillbench status GRID_SPEC`: where every cell of a grid stands and the state of the stages
its cells share, read from MLflow and the store without running or building anything."""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from pathlib import Path

from harness import cells as markers
from harness.config import RunSpec
from harness.run import cell_hash, prepare, shared_key, tiny_model_key
from harness.store import Store, content_key
from harness.tracking import OUTBOX, Tracker


def locked(path: Path) -> bool:
    """Whether another process holds the exclusive lock of a stage being built."""
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def bank_state(store: Store, key: str, n_chunks: int) -> str:
    from harness.bank import Bank

    path = store.dir("banks", key)
    if not (path / "manifest.json").is_file():
        return "building" if locked(store.lock_path("banks", key)) else "missing"
    done = len(Bank(path).chunks())
    if done >= n_chunks:
        return f"done ({done} chunks)"
    state = "building" if locked(store.lock_path("banks", key)) else "partial"
    return f"{state} ({done}/{n_chunks} chunks)"


def grid_status(
    cells: Sequence[tuple[str, RunSpec]], name: str, store: Store, tracking_uri: str | None = None
) -> tuple[list[markers.CellStatus], list[tuple[str, str]], str]:
    """(one status per cell, (shared stage, state) pairs, a note about tracking)."""
    from harness.teacher import bank_manifest

    tracker = Tracker(store, name, tracking_uri)
    rows = []
    for cell, spec in cells:
        key = cell_hash(spec)
        finished = tracker.finished_run(key)
        rows.append(markers.cell_status(store, cell, key, None if finished is None or finished.startswith(OUTBOX) else finished))
    stages: list[tuple[str, str]] = []
    groups: dict[str, tuple[str, RunSpec]] = {}
    for cell, spec in cells:
        groups.setdefault(shared_key(spec), (cell, spec))
    seen: set[str] = set()
    for cell, spec in groups.values():
        p = prepare(spec)
        examples = [*p.task.load("train"), *p.task.load("valid")]
        bank_key = content_key(bank_manifest(p.task, examples, spec.teacher))
        n_chunks = -(-len(examples) // spec.teacher.chunk_size)
        if bank_key not in seen:
            seen.add(bank_key)
            stages.append((f"teacher bank {bank_key} ({spec.teacher.name}, k={spec.teacher.k}; {cell})", bank_state(store, bank_key, n_chunks)))
        if spec.student.model == "tiny" and (model := tiny_model_key(spec, p.task, bank_key)) not in seen:
            seen.add(model)
            state = "done" if store.dir("models", model).exists() else ("building" if locked(store.lock_path("models", model)) else "missing")
            stages.append((f"tiny student {model} ({spec.student.family})", state))
    note = f"tracking server unreachable ({tracker.offline.splitlines()[0][:200]}): states from the store only" if tracker.offline else ""
    return rows, stages, note
