"""The store: one directory holding content-addressed artifacts and the embedded MLflow database.

    <root>/mlflow.db              MLflow tracking database (SQLite)
    <root>/mlartifacts/           MLflow artifacts
    <root>/models/<key>/          tiny students built here
    <root>/banks/<key>/           teacher banks: manifest.json + chains.jsonl (harness/bank.py)
    <root>/checkpoints/<key>/     trained students (best on valid); .<key>.partial/ while training
    <root>/predictions/<key>/     decoded chains of a split (chains.jsonl, examples.jsonl, task.json)
    <root>/evaluations/<key>/     scores per scheme as JSON
    <root>/locks/<kind>-<key>.lock  one per shared stage being built (see Store.lock)

A key is the hash of everything that determines the artifact, so a finished artifact is never
recomputed and a changed input never reuses a stale one. Every write is atomic (temp + rename):
a crash leaves either the old state or the new one, never a half-written file that looks done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import UserError

DEFAULT_ROOT = ".distillbench"


def content_key(obj: Any) -> str:
    """A short stable hash of a JSON-able object (dict order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_root() -> Path:
    return Path(os.environ.get("DISTILLBENCH_HOME") or DEFAULT_ROOT)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of a file; a line that is not UTF-8 or not JSON is a UserError naming file:line."""
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
                if line.strip():
                    rows.append(json.loads(line))
            except UnicodeDecodeError:
                raise UserError(f"{path}:{n}: not UTF-8 text") from None
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not a JSON line ({e.msg})") from None
    return rows


# --- checksums of stored artifacts -----------------------------------------------------------------
#
# Every folder the store builds (checkpoints, tiny models, predictions, rankers, stages) gets a
# CHECKSUMS.json (size and sha256 of each file), written inside it before the folder is renamed
# into place. Reuse verifies it first: a damaged folder (a bit flip, a truncated file, an edit) is
# moved aside with a one-line warning and recomputed, never used.

CHECKSUMS = "CHECKSUMS.json"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder: Path) -> None:
    """CHECKSUMS.json for every file under `folder` (written atomically)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    table = {p.relative_to(folder).as_posix(): [p.stat().st_size, file_digest(p)] for p in files}
    atomic_write_text(folder / CHECKSUMS, json.dumps(table, indent=0, sort_keys=True))


def damage(folder: Path) -> str | None:
    """Why `folder` does not match its CHECKSUMS.json, or None when it does (or has none: written
    before checksums, trusted as before)."""
    manifest = folder / CHECKSUMS
    if not manifest.is_file():
        return None
    try:
        table = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return f"{CHECKSUMS} is unreadable"
    for rel, (size, digest) in table.items():
        p = folder / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != size:
            return f"{rel} has {p.stat().st_size} bytes, not {size}"
        if file_digest(p) != digest:
            return f"{rel} does not match its checksum"
    return None


def intact(folder: Path, what: str) -> bool:
    """Whether `folder` exists and matches its checksums. A damaged one is moved aside (kept for a
    look, named .<name>.damaged-<time>) with a one-line warning, so the caller recomputes it."""
    if not folder.exists():
        return False
    why = damage(folder)
    if why is None:
        return True
    import sys
    import time

    aside = folder.with_name(f".{folder.name}.damaged-{time.time_ns()}")
    os.rename(folder, aside)
    print(f"warning: {what} {folder} is damaged ({why}): moved to {aside.name}; recomputing it", file=sys.stderr)
    return False


class Store:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.root = self.root.expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"store {self.root} is a file, not a directory (give --store a folder)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"store {self.root}: cannot create it ({e.strerror})") from None

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.root / "mlartifacts"

    def file(self, kind: str, key: str, suffix: str = ".jsonl") -> Path:
        return self.root / kind / f"{key}{suffix}"

    def dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    @contextlib.contextmanager
    def atomic_dir(self, kind: str, key: str) -> Iterator[Path]:
        """Yield a temp directory that becomes `dir(kind, key)` only if the block succeeds."""
        final = self.dir(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}.", suffix=".tmp"))
        try:
            yield tmp
            if final.exists():  # another process finished the same artifact first
                shutil.rmtree(tmp)
            else:
                write_checksums(tmp)
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def lock_path(self, kind: str, key: str) -> Path:
        """The lock file of one shared stage (`Store.lock`; `distillbench status` tests it)."""
        return self.root / "locks" / f"{kind}-{key}.lock"

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold the exclusive lock of one stage (a teacher bank, a tiny model) across processes.

        Build a shared stage inside it after checking it is not done yet: a second worker that
        needs the same stage at the same moment waits here, then finds it done and reuses it
        instead of paying twice. The kernel drops the lock of a killed process.
        """
        path = self.lock_path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
