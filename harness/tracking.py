"""MLflow tracking: one run per grid cell, in the store's SQLite database by default.

Params are the flattened run spec; tags carry the cell hash (used to resume a grid), the task and
prompt versions and the git revision; metrics carry accuracy per aggregation scheme and the
training curves; the predictions (every chain) are an artifact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import UserError, check_name, redact
from harness.store import Store

EXPERIMENT_TAG = "distillbench"
_SRC = Path(__file__).resolve().parent.parent


def git_revision() -> str:
    """The source tree's commit (with '+dirty' when it has uncommitted changes), or 'unknown'."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_SRC, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_SRC, capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, macOS sysctl), else platform's best guess."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_tags() -> dict[str, str]:
    """Where a run ran, as MLflow tags: torch's intra-op thread count, the CPU model and core
    count, the GPU model(s) ('none' without CUDA), torch and python versions. The same cell gives
    the same digits on the same machine kind with the same thread count; elsewhere it may not."""
    import platform

    import torch

    gpu = "none"
    if torch.cuda.is_available():
        gpu = "CUDA (model unknown)"
        try:  # nvidia-smi, not torch: asking torch would initialise CUDA in this process
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                gpu = ", ".join(line.strip() for line in out.stdout.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            if torch.cuda.is_initialized():
                gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {
        "torch_threads": str(torch.get_num_threads()),
        "cpu": cpu_model(),
        "cpu_count": str(os.cpu_count()),
        "gpu": gpu,
        "gpu_count": str(torch.cuda.device_count() if torch.cuda.is_available() else 0),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def _quiet_mlflow() -> None:
    # a fresh database logs its table creation and migrations at INFO: not news to a user
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (configures its loggers on import; override them after)

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


# MLflow's HTTP client retries a dead server for minutes per call (7 tries, backoff 2): a grid
# that keeps its results in the outbox needs to know within seconds. A user's own settings win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def owner_id() -> str:
    """This process, as a run's `owner` tag: "host:pid"."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(owner: str | None) -> bool:
    """Whether the process that owns a RUNNING run is known to be gone (see Tracker.close_stale)."""
    import socket

    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """A one-line UserError for a URI MLflow cannot use, or a server that does not answer: checked
    before any work, in seconds (a server that goes away later is the outbox's business)."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):  # MLflow's file store is in maintenance mode and refuses new runs
        raise UserError(f"--tracking-uri {uri!r}: a folder is MLflow's file store, which it no longer accepts; "
                        "give sqlite:///PATH/mlflow.db or an http(s):// server")
    if scheme not in TRACKING_SCHEMES:
        raise UserError(f"--tracking-uri {uri!r}: unknown scheme {scheme!r} (one of {', '.join(TRACKING_SCHEMES)})")
    if scheme in ("http", "https"):
        import requests

        try:
            r = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as e:
            raise UserError(f"MLflow server {uri} is unreachable ({type(e).__name__}): start it or drop --tracking-uri") from None
        if r.status_code >= 500:
            raise UserError(f"MLflow server {uri} answers {r.status_code}: nothing was run")


def is_outage(e: BaseException) -> bool:
    """Whether an error of a remote tracking call means the server is away or failing (not a
    mistake in the request): transport errors, 5xx, rate limits."""
    from mlflow.exceptions import MlflowException

    if isinstance(e, MlflowException):
        return e.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
    return isinstance(e, (OSError, ConnectionError))


_WARNED: set[str] = set()  # tracking URIs this process already said were away


class Tracker:
    """The MLflow client of one tracking URI and experiment, with an outbox: when a remote
    server (`http(s)://`) is unreachable or failing, what a run would have written goes to
    `<store>/outbox/` instead and the grid goes on; `sync` uploads it later."""

    def __init__(self, store: Store, experiment: str, tracking_uri: str | None = None) -> None:
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.store, self.experiment = store, check_name(experiment, "grid name")
        self.uri = tracking_uri or store.tracking_uri
        self.remote = self.uri.startswith(("http://", "https://"))
        if self.remote:
            for k, v in HTTP_DEFAULTS.items():
                os.environ.setdefault(k, v)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.failed: dict[str, str] = {}  # cell hash -> the FAILED run of a cell that raised
        self.outboxed: set[str] = set()  # cell hashes whose run wrote to the outbox
        self.offline: str | None = None  # why the server is away, once it was found away
        self._experiment_id: str | None = None
        try:
            self._experiment_id = self._experiment(tracking_uri is None)
        except Exception as e:
            self._away(e)

    def _experiment(self, local: bool) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        # the artifact location is explicit so nothing lands in a stray ./mlruns
        location = (self.store.artifact_root / self.experiment).as_uri() if local else None
        return self.client.create_experiment(self.experiment, artifact_location=location, tags={EXPERIMENT_TAG: "1"})

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._experiment(not self.remote)
        return self._experiment_id

    def _away(self, e: BaseException) -> None:
        """Note that the server is away (re-raise anything else)."""
        if not (self.remote and is_outage(e)):
            raise e
        if self.offline is None and self.uri not in _WARNED:
            import sys

            _WARNED.add(self.uri)

            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            print(f"tracking server {self.uri} unreachable ({first}): results go to {self.store.root / 'outbox'}; "
                  "upload them with `distillbench sync`", file=sys.stderr)
        self.offline = str(e)[:500]

    def finished_run(self, cell_hash: str) -> str | None:
        """The id of a FINISHED run of this cell, if any (a grid resumes by skipping those); while
        the server is away, or before a `sync`, a cell whose results wait in the outbox."""
        from harness import cells

        if self.offline is None:
            try:
                runs = self.client.search_runs(
                    [self.experiment_id],
                    filter_string=f"tags.cell_hash = '{cell_hash}' and attributes.status = 'FINISHED'",
                    max_results=1,
                )
                if runs:
                    return runs[0].info.run_id
            except Exception as e:
                self._away(e)
        marker = cells.read(self.store, cell_hash)
        if marker and marker["state"] == "done" and (self.offline is not None or marker.get("pending_sync")):
            return marker.get("run_id") or OUTBOX
        return None

    def close_stale(self, cell_hash: str) -> int:
        """Mark runs of this cell left RUNNING by a killed process as KILLED; returns how many.

        Only runs whose owner (tag `owner`, "host:pid") is gone: a second grid on the same store
        must not mark a live run of the first one KILLED. A run without the tag (older) or of a
        process on this host that no longer exists is a crash's remains; a run owned by another
        host is left alone (its process cannot be checked from here).
        """
        if self.offline is not None:
            return 0
        try:
            runs = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.cell_hash = '{cell_hash}' and attributes.status = 'RUNNING'"
            )
            runs = [r for r in runs if owner_gone(r.data.tags.get("owner"))]
            for r in runs:
                self.client.set_terminated(r.info.run_id, status="KILLED")
        except Exception as e:
            self._away(e)
            return 0
        return len(runs)

    @contextlib.contextmanager
    def run(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[RunLog]:
        """A run of one cell: FINISHED when the block ends, FAILED (with the traceback as the
        artifact `error/traceback.txt`) when it raises."""
        import traceback

        log = RunLog.start(self, name, {**tags, "git_revision": git_revision(), "owner": owner_id()})
        try:
            log.params(params)
            yield log
        except BaseException:
            try:  # what was measured before the failure (training curves) stays with the run
                log.text_artifact(redact(traceback.format_exc()), "error", "traceback.txt")
                log.flush()
            finally:
                log.terminate("FAILED")
                if "cell_hash" in tags:
                    self.failed[tags["cell_hash"]] = log.run_id
            raise
        log.flush()
        log.terminate("FINISHED")

    def record_failure(self, name: str, tags: dict[str, str], text: str) -> str:
        """A FAILED run for a cell that failed before its run began (its data, its shared stages),
        with the traceback as its artifact; its id."""
        log = RunLog.start(self, name, {**tags, "git_revision": git_revision()})
        try:
            log.text_artifact(redact(text), "error", "traceback.txt")
        finally:
            log.terminate("FAILED")
        return log.run_id


OUTBOX = "outbox:"  # the run id of a run whose writes wait in the outbox


class RunLog:
    """Buffered logging for one run (a batch call per flush, not one HTTP/SQL call per value).

    Every write goes to the server; from the first one that finds the server away, it and every
    later write of the run go to the run's journal in the outbox instead (its header names the
    run, if it was created, and the tags to find or create it by)."""

    def __init__(self, client: Any, run_id: str, tracker: Tracker | None = None, name: str = "", tags: dict[str, str] | None = None) -> None:
        """The log of an existing run (`tracker` None: no outbox, errors raise)."""
        self.client, self.run_id, self.tracker = client, run_id, tracker
        self.name, self.tags_at_start = name, tags or {}
        self._pending: list[Any] = []
        self.journal: Path | None = None

    @classmethod
    def start(cls, tracker: Tracker, name: str, tags: dict[str, str]) -> RunLog:
        """A new run of the tracker's experiment (in the outbox when the server is away)."""
        log = cls(tracker.client, "", tracker, name, tags)
        try:
            log.run_id = tracker.client.create_run(tracker.experiment_id, run_name=name, tags=tags).info.run_id
        except Exception as e:
            tracker._away(e)
            log._open_journal()
        return log

    def _open_journal(self) -> None:
        import uuid

        assert self.tracker is not None
        remote_id = None if not self.run_id or self.run_id.startswith(OUTBOX) else self.run_id
        folder = self.tracker.store.root / "outbox" / f"{self.tags_at_start.get('cell_hash', 'run')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        self.journal = folder / "journal.jsonl"
        header = {"op": "header", "experiment": self.tracker.experiment, "uri": self.tracker.uri, "run_name": self.name,
                  "tags": self.tags_at_start, "run_id": remote_id}
        self._journal(header)
        if "cell_hash" in self.tags_at_start:
            self.tracker.outboxed.add(self.tags_at_start["cell_hash"])
        if not self.run_id:
            self.run_id = f"{OUTBOX}{folder.name}"

    def _journal(self, row: dict[str, Any]) -> None:
        assert self.journal is not None
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _send(self, call: Any) -> bool:
        """Make one call to the server: True when it went through, False when the server was
        (or is now) found away and the run's writes go to its journal."""
        if self.journal is not None:
            return False
        try:
            call()
            return True
        except Exception as e:
            if self.tracker is None:
                raise
            self.tracker._away(e)
            self._open_journal()
            return False

    def _write(self, row: dict[str, Any], call: Any) -> None:
        """Send one write to the server, or to the journal once the server was found away."""
        if not self._send(call):
            self._journal(row)

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = {k: str(v)[:6000] for k, v in params.items()}
        keys = list(items)
        for i in range(0, len(keys), 100):
            chunk = {k: items[k] for k in keys[i : i + 100]}
            self._write({"op": "params", "params": chunk}, lambda c=chunk: self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in c.items()]))

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self._pending) >= 500:
            self.flush()

    def tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._write({"op": "tags", "tags": tags}, lambda: self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]))

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file, or a folder's files, under `artifact_path`."""
        self.flush()
        path = Path(path)
        call = (lambda: self.client.log_artifacts(self.run_id, str(path), artifact_path)) if path.is_dir() else (lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))
        self._write({"op": "artifact", "path": str(path), "artifact_path": artifact_path}, call)

    def text_artifact(self, text: str, artifact_path: str, file_name: str) -> None:
        """Log `text` as the file `artifact_path/file_name`."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / file_name
            path.write_text(text, encoding="utf-8")
            if self._send(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path)):
                return
        assert self.journal is not None
        path = self.journal.parent / file_name  # kept beside the journal until it is synced
        path.write_text(text, encoding="utf-8")
        self._journal({"op": "artifact", "path": str(path), "artifact_path": artifact_path})

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), 1000):
            batch = pending[i : i + 1000]
            rows = [[m.key, m.value, m.timestamp, m.step] for m in batch]
            self._write({"op": "metrics", "metrics": rows}, lambda b=batch: self.client.log_batch(self.run_id, metrics=b))

    def terminate(self, status: str) -> None:
        self._write({"op": "terminate", "status": status}, lambda: self.client.set_terminated(self.run_id, status=status))


def outbox_journals(store: Store) -> list[Path]:
    """The journals waiting in the outbox, oldest first."""
    root = store.root / "outbox"
    return sorted(root.glob("*/journal.jsonl"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []


def sync(store: Store, tracking_uri: str | None = None, out: Any = print) -> dict[str, int]:
    """Upload the outbox to the tracking server (`tracking_uri`, else the one each run was meant
    for), idempotently: a run is the one the journal names, else the run with the cell's
    `cell_hash` tag, else created once; metric points and params already there are not written
    again; a cell already FINISHED there is left as it is. Synced journals are removed."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from harness import cells

    _quiet_mlflow()
    counts = {"runs": 0, "created": 0, "points": 0, "skipped_points": 0, "already_finished": 0}
    for journal in outbox_journals(store):
        rows = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.strip()]
        header, ops = rows[0], rows[1:]
        uri = tracking_uri or header["uri"]
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(header["experiment"])
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(header["experiment"], tags={EXPERIMENT_TAG: "1"})
        cell_hash = header["tags"].get("cell_hash")
        run_id = _run_of(client, exp_id, header, cell_hash)
        if run_id is not None and run_id != header.get("run_id") and client.get_run(run_id).info.status == "FINISHED":
            counts["already_finished"] += 1  # finished there by another run of the cell: nothing to add
            if header.get("run_id"):  # the run the outage cut short stays as the crash left it
                try:
                    if client.get_run(header["run_id"]).info.status == "RUNNING":
                        client.set_terminated(header["run_id"], status="KILLED")
                except Exception:  # noqa: BLE001 - gone: nothing to close
                    pass
            _done(journal)
            continue
        if run_id is None:
            run_id = client.create_run(exp_id, run_name=header["run_name"], tags=header["tags"]).info.run_id
            counts["created"] += 1
        run = client.get_run(run_id)
        have_params = dict(run.data.params)
        history: dict[str, set[tuple[int, float, int]]] = {}
        for op in ops:
            if op["op"] == "params":
                new = [Param(k, v) for k, v in op["params"].items() if k not in have_params]
                if new:
                    client.log_batch(run_id, params=new)
                    have_params.update({p.key: p.value for p in new})
            elif op["op"] == "tags":
                client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in op["tags"].items()])
            elif op["op"] == "metrics":
                new_points = []
                for key, value, ts, step in op["metrics"]:
                    if key not in history:
                        history[key] = {(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)}
                    point = (step, float(value), ts)
                    if point in history[key]:
                        counts["skipped_points"] += 1
                        continue
                    history[key].add(point)
                    new_points.append(Metric(key, float(value), ts, step))
                for i in range(0, len(new_points), 1000):
                    client.log_batch(run_id, metrics=new_points[i : i + 1000])
                counts["points"] += len(new_points)
            elif op["op"] == "artifact":
                path = Path(op["path"])
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), op["artifact_path"])
                elif path.exists():
                    client.log_artifact(run_id, str(path), op["artifact_path"])
                else:
                    out(f"{journal.parent.name}: artifact {path} is gone; not uploaded")
            elif op["op"] == "terminate":
                client.set_terminated(run_id, status=op["status"])
        counts["runs"] += 1
        if cell_hash:  # the cell's marker names the run it now has
            marker = cells.read(store, cell_hash)
            if marker is not None and marker.get("pending_sync"):
                kept = {k: v for k, v in marker.items() if k not in ("state", "pid", "host", "time")}
                cells.mark(store, cell_hash, marker["state"], **kept | {"run_id": run_id, "pending_sync": False})
        _done(journal)
        out(f"synced {header['run_name']} -> run {run_id}")
    return counts


def _run_of(client: Any, exp_id: str, header: dict[str, Any], cell_hash: str | None) -> str | None:
    """The run a journal writes to: the cell's FINISHED run if it has one (then nothing is
    written), else the run the journal names (if the server has it); None: create it."""
    from mlflow.exceptions import MlflowException

    if cell_hash is not None:
        runs = client.search_runs([exp_id], filter_string=f"tags.cell_hash = '{cell_hash}' and attributes.status = 'FINISHED'")
        if runs:
            return runs[0].info.run_id
    if header.get("run_id"):
        try:
            return client.get_run(header["run_id"]).info.run_id
        except MlflowException:
            pass
    return None


def _done(journal: Path) -> None:
    import shutil

    shutil.rmtree(journal.parent, ignore_errors=True)
