"""Loading a task from a Hugging Face dataset id (or a local folder in the hub's layout).

Every file task takes an `hf_dataset` option as the alternative to `data_dir`: a hub id such
as "openai/gsm8k", or a local folder laid out like a hub dataset repository (data files plus
an optional README.md whose YAML `configs:` name the splits), e.g. one made with
`datasets.Dataset.to_parquet`. Rows come back as plain dicts, each with "_line" (its 0-based
row index), so a task maps them to the same Example as its original-file loader and a bad
row is named as "<dataset>[<config>:<split>] row <n>".

Offline (HF_HUB_OFFLINE=1), a hub id loads only when it is already in the datasets cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from typing import Any

from harness.errors import UserError

log = logging.getLogger("distillbench.tasks")


def where(dataset: str, config: str | None, split: str, index: int) -> str:
    """The location of one hub row, used like a file's "<path>:<line>"."""
    part = f"{config}:{split}" if config else split
    return f"{dataset}[{part}] row {index}"


def load_rows(dataset: str, split: str, *, task: str, config: str | None = None) -> list[dict[str, Any]]:
    """The rows of one split of a Hugging Face dataset; any failure is a one-line UserError."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a core dependency, but say what to do
        raise UserError("hf_dataset needs the `datasets` package: pip install datasets") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    what = f"task {task!r}: Hugging Face dataset {dataset!r}" + (f" (config {config!r})" if config else "")
    # The datasets cache keys a local folder by its name and relative file paths only, so a
    # changed folder (or another folder of the same name) would load stale rows and schema:
    # a local folder is built in a throwaway cache each time (rows are copied out below).
    local = os.path.isdir(os.path.expanduser(dataset))
    if not local and dataset.startswith(("/", "./", "../", "~")):
        raise UserError(f"{what}: no such folder (a hub id looks like 'openai/gsm8k')")
    with tempfile.TemporaryDirectory(prefix="distillbench-hub-") if local else contextlib.nullcontext() as tmp:
        try:
            ds = datasets.load_dataset(dataset, name=config, split=split, cache_dir=tmp)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            hint = ""
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
            if not local and (offline or "offline" in first.lower() or "connect" in first.lower()):
                hint = " (offline, a hub id loads only from the datasets cache; a local folder always works)"
            raise UserError(f"{what}, split {split!r}: cannot load: {first}{hint}") from None
        rows = [{**row, "_line": i} for i, row in enumerate(ds)]
    log.info("%s: %d rows from split %r", what, len(rows), split)
    return rows


def check_source(task: str, data_dir: Any, hf_dataset: Any) -> None:
    """One-line UserErrors for a bad hf_dataset option or one given together with data_dir."""
    if hf_dataset is None:
        return
    if not isinstance(hf_dataset, str) or not hf_dataset.strip():
        raise UserError(f"task {task!r}: hf_dataset must be a dataset id or folder, got {hf_dataset!r}")
    if data_dir is not None:
        raise UserError(
            f"task {task!r}: give data_dir (original files) or hf_dataset (Hugging Face), not both"
        )
