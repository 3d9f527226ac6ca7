"""Where each cell of a grid stands, kept in the store so that it survives crashes and tracking
outages: `<store>/cells/<cell_hash>.json`, one marker per cell, rewritten atomically.

- `running`: a process (pid, host) works on it; a marker whose process is gone is `stale`.
- `failed`: the cell raised; the one-line error and a traceback file (`<cell_hash>.traceback.txt`).
- `done`: finished; its MLflow run id (`outbox:...` while its results wait in the tracking
  outbox for `distillbench sync`).

MLflow stays the record of results; the markers are what `distillbench status` and a grid that
cannot reach its tracking server read.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.store import Store, atomic_write_text

STATES = ("pending", "running", "failed", "done", "stale")


def marker_path(store: Store, key: str) -> Path:
    return store.root / "cells" / f"{key}.json"


def read(store: Store, key: str) -> dict[str, Any] | None:
    path = marker_path(store, key)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def mark(store: Store, key: str, state: str, **fields: Any) -> dict[str, Any]:
    """Write the cell's marker: its state, who wrote it and when, and `fields`."""
    assert state in ("running", "failed", "done"), state
    path = marker_path(store, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = {"state": state, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **fields}
    atomic_write_text(path, json.dumps(marker, indent=1, sort_keys=True))
    return marker


def write_traceback(store: Store, key: str, text: str) -> Path:
    path = store.root / "cells" / f"{key}.traceback.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def alive(marker: dict[str, Any]) -> bool:
    """Whether the process that wrote a `running` marker still runs (on this host; a marker from
    another host is taken as alive: its process cannot be checked from here)."""
    if marker.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(marker["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass
class CellStatus:
    cell: str
    key: str
    state: str  # one of STATES
    run_id: str = ""
    detail: str = ""  # the failure, who runs it, or what is pending


def cell_status(store: Store, cell: str, key: str, finished_run: str | None) -> CellStatus:
    """A cell's state from its MLflow run (FINISHED: done) and its marker."""
    m = read(store, key)
    if finished_run is not None:
        return CellStatus(cell, key, "done", finished_run)
    if m is None:
        return CellStatus(cell, key, "pending")
    if m["state"] == "done" and m.get("pending_sync"):  # finished while its tracking server was away
        return CellStatus(cell, key, "done", m.get("run_id", ""), "results in the tracking outbox: distillbench sync")
    if m["state"] == "done":  # finished, but MLflow has no FINISHED run of it (deleted there): runs again
        return CellStatus(cell, key, "pending", "", "its MLflow run is gone; the next run redoes its bookkeeping (cached stages)")
    if m["state"] == "failed":
        return CellStatus(cell, key, "failed", m.get("run_id", ""), m.get("error", ""))
    since = time.strftime("%H:%M:%S", time.localtime(m.get("time", 0)))
    if alive(m):
        return CellStatus(cell, key, "running", m.get("run_id", ""), f"pid {m['pid']} on {m['host']} since {since}")
    return CellStatus(cell, key, "stale", m.get("run_id", ""), f"pid {m['pid']} on {m['host']} is gone (killed at {since} or later); the next run resumes it")
