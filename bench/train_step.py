"""Time per training step of every registered method, relative to finetune, on the same tiny student.

For each family (tiny T5 and tiny Llama, built from the same arith text), every method gets the
same examples and the same offline oracle teacher bank (K chains per example, a share slipped
into negatives), builds its own items exactly as its `train` does (its `ctx.fit` is intercepted),
and runs full optimizer steps as harness.training.fit does: one micro-batch of `--batch-size`
items, loss, backward, gradient clipping, AdamW step. A method's item is what it trains on — a
DSS/MI item is one example scored twice (predict + explain), a mix/ul/nt item is one chain — so a
step is what `train.batch_size` costs that method. Ratios are measured in one run and are made
robust to a shared, noisy machine: the methods of a family are timed round-robin, one block of
`--steps` steps each per round, for `--rounds` rounds, and each method's fastest block is kept
(the minimum is the least disturbed by other processes; the median is printed alongside).

    python bench/train_step.py [--batch-size 32] [--steps 1] [--rounds 40] [--k 2] [--wrong-rate 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from harness.models import build_tiny_model, corpus
from harness.student import Student
from harness.teacher import oracle_chains, split_bank
from harness.training import TrainConfig, TrainContext, TrainResult, micro_batches
from methods import METHODS
from tasks import get_task


class Capture(TrainContext):
    """A TrainContext whose fit records (items, loss_fn) instead of training."""

    def fit(self, items, loss_fn) -> TrainResult:  # type: ignore[override]
        self.captured = (list(items), loss_fn)
        return TrainResult(best_step=0, best_valid=0.0, steps=0, seconds=0.0)


def by_example(chains) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in chains:
        out.setdefault(c.example_id, []).append(c)
    return out


def step_timer(student: Student, batch: list[dict[str, Any]], loss_fn, lr: float):
    """A closure running one full optimizer step (as harness.training.fit) on `batch`."""
    model = student.model
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_fn(student, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=32, help="items per step (train.batch_size)")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per method per round")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--k", type=int, default=2, help="oracle chains per example")
    ap.add_argument("--wrong-rate", type=float, default=0.5)
    ap.add_argument("--families", default="t5,llama")
    args = ap.parse_args()

    task = get_task("arith", n_train=500, n_valid=10, n_test=10)
    train = task.load("train")[: 4 * args.batch_size]
    pos, neg = split_bank(oracle_chains(task, train, k=args.k, wrong_rate=args.wrong_rate, seed=0))
    positives, negatives = by_example(pos), by_example(neg)
    families = args.families.split(",")
    rows: dict[str, dict[str, float]] = {name: {} for name in METHODS}  # fastest block
    medians: dict[str, dict[str, float]] = {name: {} for name in METHODS}
    with tempfile.TemporaryDirectory() as d:
        for family in families:
            model_dir = build_tiny_model(family, corpus(task, task.load("train")), Path(d) / family)
            timers = {}
            for name, method in METHODS.items():
                student = Student.load(model_dir)  # fresh weights per method
                student.model.train()
                ctx = Capture(
                    student, task, train, positives, negatives, TrainConfig(), lambda s: 0.0, Path(d) / "unused"
                )
                method.train(ctx, method.config())
                items, loss_fn = ctx.captured
                batch = next(micro_batches(items, args.batch_size, 0))
                timers[name] = step_timer(student, batch, loss_fn, lr=3e-3)
                timers[name]()  # warm-up
            times: dict[str, list[float]] = {name: [] for name in timers}
            for _ in range(args.rounds):
                for name, step in timers.items():
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        step()
                    times[name].append((time.perf_counter() - start) / args.steps)
            for name in timers:
                rows[name][family] = min(times[name])
                medians[name][family] = statistics.median(times[name])

    print(
        f"train step time, {args.batch_size} items per step, arith, oracle bank K={args.k} "
        f"(wrong_rate {args.wrong_rate}: {len(pos)} positives, {len(neg)} negatives over {len(train)} examples), "
        f"fastest of {args.rounds} round-robin rounds x {args.steps} step(s), {os.cpu_count()} CPU cores, torch {torch.__version__}"
    )
    head = " | ".join(f"tiny {f} ms/step (median) | vs finetune (median)" for f in families)
    print(f"| method | {head} |")
    print("|---|" + "---:|---:|" * len(families))
    for name in METHODS:
        cells = []
        for f in families:
            t, m = rows[name][f], medians[name][f]
            cells += [
                f"{1000 * t:.1f} ({1000 * m:.1f})",
                f"**{t / rows['finetune'][f]:.2f}x** ({m / medians['finetune'][f]:.2f}x)",
            ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
