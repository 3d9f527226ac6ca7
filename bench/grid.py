"""A grid's wall time by executor, and what a second run of a finished grid costs.

The demo grid (runs/demo.yaml: 2 methods x 3 seeds on procedural arithmetic) runs, in one go and
each into a fresh store: one cell after another in one process (`sequential`), two worker
processes at once (`local`, workers 2), and a local Ray instance with 2 CPUs (`ray`); each cell
gets cpu_count / 2 torch threads in the parallel runs and all of them in the sequential one. The
figures are ratios against the sequential run. Then the finished grid runs again through the
command line (`distillbench grid`, the default local executor) — target under 10 s — and once
more in this process with every teacher call, training step and decoded example counted.

    python bench/grid.py [--steps N]   # N: train.steps for a shorter grid (default: the demo's)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(executor, overrides: list[str], store: Path) -> float:
    from rich.console import Console

    from harness.config import load_grid
    from harness.grid import run_grid
    from harness.store import Store

    grid = load_grid(ROOT / "runs" / "demo.yaml", overrides)
    start = time.perf_counter()
    results = run_grid(grid, "demo", Store(store), console=Console(stderr=True, quiet=True), show_progress=False, executor=executor)
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.error]
    if failed:
        raise SystemExit(f"{len(failed)} cells failed: {failed[0].error}")
    return seconds


def counted_rerun(overrides: list[str], store: Path) -> tuple[float, dict[str, int]]:
    """A second in-process run of the finished grid, counting what it does."""
    import harness.bank as banks
    import harness.run as pipeline
    import harness.training as training
    from harness.executors import Sequential

    counts = {"teacher_chunks": 0, "train_steps": 0, "decoded_examples": 0}
    build, fit, decode = banks.build, training.fit, pipeline.decode

    def counting_build(*args, **kwargs):
        report = build(*args, **kwargs)
        counts["teacher_chunks"] += report.chunks_generated
        return report

    def counting_fit(student, items, loss_fn, cfg, *args, **kwargs):
        counts["train_steps"] += cfg.total_steps(len(items))  # an upper bound: a resumed fit trains fewer
        return fit(student, items, loss_fn, cfg, *args, **kwargs)

    def counting_decode(student, p, examples, *args, **kwargs):
        counts["decoded_examples"] += len(examples)
        return decode(student, p, examples, *args, **kwargs)

    banks.build, training.fit, pipeline.decode = counting_build, counting_fit, counting_decode
    try:
        seconds = timed(Sequential(), overrides, store)
    finally:
        banks.build, training.fit, pipeline.decode = build, fit, decode
    return seconds, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="train.steps override (default: the demo's own)")
    args = ap.parse_args()
    overrides = [f"train.steps={args.steps}"] if args.steps else []

    from harness.executors import Local, Ray, Sequential

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        root = Path(tmp)
        t_seq = timed(Sequential(), overrides, root / "sequential")
        t_local = timed(Local(workers=2), overrides, root / "local")
        t_ray = timed(Ray(workers=2, threads=max(1, cpus // 2)), overrides, root / "ray")

        start = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "harness.cli", "grid", str(ROOT / "runs" / "demo.yaml"), *overrides,
                              "--store", str(root / "local"), "--quiet"], capture_output=True, text=True, cwd=ROOT)
        t_cli = time.perf_counter() - start
        if cli.returncode != 0:
            raise SystemExit(cli.stderr[-2000:])
        t_again, counts = counted_rerun(overrides, root / "local")

    print(f"demo grid ({'train.steps=' + str(args.steps) if args.steps else 'as committed'}; {cpus} CPU cores), wall time:")
    print(f"  sequential, one process            {t_seq:7.1f} s   1.00x")
    print(f"  local, 2 worker processes          {t_local:7.1f} s   {t_local / t_seq:.2f}x of sequential ({t_seq / t_local:.2f}x faster)")
    print(f"  ray, local instance, 2 CPUs        {t_ray:7.1f} s   {t_ray / t_seq:.2f}x of sequential ({t_seq / t_ray:.2f}x faster)")
    print(f"second run of the finished grid: `distillbench grid` {t_cli:.1f} s (target < 10 s); in-process {t_again:.2f} s with "
          f"{counts['teacher_chunks']} teacher chunks, {counts['train_steps']} training steps, {counts['decoded_examples']} examples decoded")


if __name__ == "__main__":
    main()
