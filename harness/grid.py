"""Run every cell of a grid, in order, skipping cells that already finished, then print the table."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
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


# ---------------------------------------------------------------------------- dry run (grid --dry-run)

# Parameter counts of common hub students, used when a model's config is not in the local cache.
KNOWN_PARAMS: dict[str, float] = {
    "google/t5-v1_1-small": 77.0e6,
    "google/t5-v1_1-base": 247.6e6,
    "google/t5-v1_1-large": 783.2e6,
    "google/t5-v1_1-xl": 2.85e9,
    "google/t5-v1_1-xxl": 11.1e9,
    "t5-small": 60.5e6,
    "t5-base": 222.9e6,
    "t5-large": 737.7e6,
    "google-t5/t5-small": 60.5e6,
    "google-t5/t5-base": 222.9e6,
    "google/flan-t5-small": 77.0e6,
    "google/flan-t5-base": 247.6e6,
    "meta-llama/Llama-2-7b-hf": 6.74e9,
    "huggyllama/llama-7b": 6.74e9,
}
# Effective training throughput assumed for the GPU-hour estimate: 30% of an A100's bf16 peak.
ASSUMED_FLOPS = 0.3 * 312e12
# Methods that run two sequences per example (a predict and an explain pass).
TWO_PASS_METHODS = ("dss", "mi", "qcrd")


@dataclass
class StudentCheck:
    weights: str  # "cached", "local", "built at run time", or "MISSING ..."
    params: float | None  # parameter count, None when unknown
    params_from: str  # where the count comes from

    @property
    def missing(self) -> bool:
        return self.weights.startswith("MISSING")


def _count_params(config: Any) -> float:
    """Parameters of a model built from `config` on the meta device (no memory, no download)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls.from_config(config)
    return float(sum(p.numel() for p in model.parameters()))


def check_student(spec: RunSpec) -> StudentCheck:
    """Whether the student's weights are here (hub ids: the local HF cache only, nothing is
    downloaded) and its parameter count (from the config if cached, else the known sizes)."""
    s = spec.student
    if s.model == "tiny":
        from harness.models import TinyConfig, tiny_hf_config

        tiny = TinyConfig(**s.tiny.model_dump())
        return StudentCheck("built at run time", _count_params(tiny_hf_config(s.family, tiny, s.tiny.vocab_size)), "tiny config")
    path = Path(s.model).expanduser()
    if path.is_dir() or s.model.startswith((".", "/", "~")):
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            return StudentCheck(f"MISSING (no model folder at {s.model})", None, "-")
        from transformers import AutoConfig

        try:
            return StudentCheck("local", _count_params(AutoConfig.from_pretrained(str(path))), "local config")
        except (OSError, ValueError):
            return StudentCheck("local", None, "-")
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(s.model, name), str)

    has_config = cached("config.json")
    has_weights = any(cached(f) for f in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"))
    params, source = KNOWN_PARAMS.get(s.model), "known size" if s.model in KNOWN_PARAMS else "-"
    if has_config:
        import os

        from transformers import AutoConfig

        old = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"  # read the cache only, even when the hub is reachable
        try:
            params, source = _count_params(AutoConfig.from_pretrained(s.model)), "cached config"
        except (OSError, ValueError):
            pass
        finally:
            if old is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old
    weights = "cached" if has_config and has_weights else "MISSING (not in the local HF cache; downloaded on first run)"
    return StudentCheck(weights, params, source)


def estimate_gpu_hours(spec: RunSpec, params: float | None, n_train: int | None) -> tuple[float | None, int]:
    """(rough training GPU-hours, optimizer steps) of a cell: 6 x params x tokens at ASSUMED_FLOPS.

    Tokens = steps x batch x grad_accum x (max_input_len + max_target_len) x passes: an upper
    bound on the tokens per sequence (batches pad to their longest sequence, not to the maximum);
    evaluation and decoding are not counted. An epochs budget needs the train split's size.
    """
    t = spec.train
    if t.steps is not None:
        steps = t.steps
    elif n_train:
        from harness.training import TrainConfig

        steps = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, grad_accum=t.grad_accum).total_steps(n_train)
    else:
        return None, 0
    if params is None:
        return None, steps
    passes = 2 if spec.method.name in TWO_PASS_METHODS else 1
    tokens = steps * t.batch_size * t.grad_accum * (spec.student.max_input_len + spec.student.max_target_len) * passes
    return 6 * params * tokens / ASSUMED_FLOPS / 3600, steps


def fmt_params(n: float | None) -> str:
    if n is None:
        return "? params"
    return f"{n / 1e9:.2f}B params" if n >= 1e9 else f"{n / 1e6:.1f}M params"
