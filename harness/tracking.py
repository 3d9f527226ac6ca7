"""MLflow tracking: one run per grid cell, in the store's SQLite database by default.

Params are the flattened run spec; tags carry the cell hash (used to resume a grid), the task and
prompt versions and the git revision; metrics carry accuracy per aggregation scheme and the
training curves; the predictions (every chain) are an artifact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class Tracker:
    """Thin wrapper over the MLflow client, bound to one tracking URI and one experiment."""

    def __init__(self, store: Store, experiment: str, tracking_uri: str | None = None) -> None:
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri or store.tracking_uri
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            # the artifact location is explicit so nothing lands in a stray ./mlruns
            location = (store.artifact_root / experiment).as_uri() if tracking_uri is None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location, tags={EXPERIMENT_TAG: "1"})
        else:
            self.experiment_id = exp.experiment_id

    def finished_run(self, cell_hash: str) -> str | None:
        """The id of a FINISHED run of this cell, if any (a grid resumes by skipping those)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.cell_hash = '{cell_hash}' and attributes.status = 'FINISHED'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def close_stale(self, cell_hash: str) -> int:
        """Mark runs of this cell left RUNNING by a killed process as KILLED; returns how many.

        Cells run one process at a time per store, so a RUNNING run of a cell about to start
        can only be the remains of a crash.
        """
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.cell_hash = '{cell_hash}' and attributes.status = 'RUNNING'"
        )
        for r in runs:
            self.client.set_terminated(r.info.run_id, status="KILLED")
        return len(runs)

    @contextlib.contextmanager
    def run(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[RunLog]:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={**tags, "git_revision": git_revision()})
        log = RunLog(self.client, run.info.run_id)
        try:
            log.params(params)
            yield log
        except BaseException:
            try:  # what was measured before the failure (training curves) stays with the run
                log.flush()
            finally:
                self.client.set_terminated(run.info.run_id, status="FAILED")
            raise
        log.flush()
        self.client.set_terminated(run.info.run_id, status="FINISHED")


class RunLog:
    """Buffered metric logging for one run (a batch call per flush, not one HTTP/SQL call per value)."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._pending: list[Any] = []

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self._pending) >= 500:
            self.flush()

    def tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file, or a folder's files, under `artifact_path`."""
        self.flush()
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def flush(self) -> None:
        for i in range(0, len(self._pending), 1000):
            self.client.log_batch(self.run_id, metrics=self._pending[i : i + 1000])
        self._pending = []
