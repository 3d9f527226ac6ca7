"""The shared training loop: every method that only changes the loss trains through `fit`.

AdamW, linear or cosine schedule with warm-up, gradient accumulation, evaluation on the valid
split every `eval_every` steps with the best checkpoint kept (test is never used for selection).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.errors import UserError
from harness.student import Student

Item = dict[str, Any]
LossFn = Callable[[Student, Sequence[Item]], tuple[torch.Tensor, dict[str, float]]]
Evaluate = Callable[[Student], float]
Log = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # examples per micro-batch
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = 1.0
    eval_every: int = 200  # steps; the last step is always evaluated
    log_every: int = 10
    seed: int = 0


@dataclass
class TrainResult:
    best_step: int
    best_valid: float
    steps: int
    seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, valid metric)


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at a given step."""

    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1 - progress)

    return f


def micro_batches(items: Sequence[Item], batch_size: int, seed: int):
    """Endless shuffled micro-batches: each epoch is a fresh permutation from a seeded RNG."""
    rng = random.Random(seed)
    order = list(range(len(items)))
    size = min(batch_size, len(items))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - size + 1, size):  # drop the ragged tail of each epoch
            yield [items[j] for j in order[i : i + size]]


def fit(
    student: Student,
    items: Sequence[Item],
    loss_fn: LossFn,
    cfg: TrainConfig,
    evaluate: Evaluate,
    out_dir: Path,
    log: Log = lambda metrics, step: None,
    show_progress: bool = True,
) -> TrainResult:
    """Train `student` in place on `items` with `loss_fn`; leave it at the best valid checkpoint.

    The best checkpoint is written to `out_dir/best` (atomically: a temp dir, then a rename).
    """
    if not items:
        raise UserError("no training items: the method found nothing to train on (e.g. a bank without teacher positives)")
    torch.manual_seed(cfg.seed)
    model = student.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    batches = micro_batches(items, cfg.batch_size, cfg.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best = TrainResult(best_step=0, best_valid=-math.inf, steps=cfg.steps, seconds=0.0)
    start = time.perf_counter()
    running: dict[str, float] = {}

    def checkpoint(step: int) -> None:
        score = evaluate(student)
        model.train()
        best.curve.append((step, score))
        log({"valid": score}, step)
        if score > best.best_valid:
            best.best_valid, best.best_step = score, step
            tmp = out_dir / "best.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            student.save(tmp)
            shutil.rmtree(out_dir / "best", ignore_errors=True)
            tmp.rename(out_dir / "best")

    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} steps/s  valid {task.fields[valid]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=True,
    )
    with progress:
        bar = progress.add_task("train", total=cfg.steps, loss=float("nan"), rate=0.0, valid="-")
        for step in range(1, cfg.steps + 1):
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(cfg.grad_accum):
                loss, metrics = loss_fn(student, next(batches))
                (loss / cfg.grad_accum).backward()
                total += loss.item() / cfg.grad_accum
                for k, v in metrics.items():
                    running[k] = running.get(k, 0.0) + v / cfg.grad_accum
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            running["loss"] = running.get("loss", 0.0) + total
            if step % cfg.log_every == 0 or step == cfg.steps:
                n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                avg = {f"train/{k}": v / n for k, v in running.items()}
                avg["train/lr"] = sched.get_last_lr()[0]
                log(avg, step)
                running = {}
            if step % cfg.eval_every == 0 or step == cfg.steps:
                checkpoint(step)
            rate = step / (time.perf_counter() - start)
            valid = f"{best.curve[-1][1]:.3f}" if best.curve else "-"
            progress.update(bar, advance=1, loss=total, rate=rate, valid=valid)
    best.seconds = time.perf_counter() - start
    best_dir = out_dir / "best"
    loaded = Student.load(best_dir, device=str(student.device), max_input_len=student.max_input_len, max_target_len=student.max_target_len)
    student.model = loaded.model
    return best


@dataclass
class TrainContext:
    """Everything a method's `train` receives; the same for every method, so only the loss differs.

    `positives` / `negatives` map example id -> teacher chains (from the bank) for train examples.
    `evaluate` scores a student on the valid split with the method's own test-time input.
    """

    student: Student
    task: Any
    train: Sequence[Any]  # Example
    positives: dict[str, list[Any]]  # Chain
    negatives: dict[str, list[Any]]
    config: TrainConfig
    evaluate: Evaluate
    out_dir: Path
    log: Log = lambda metrics, step: None
    show_progress: bool = True

    def fit(self, items: Sequence[Item], loss_fn: LossFn) -> TrainResult:
        return fit(self.student, items, loss_fn, self.config, self.evaluate, self.out_dir, self.log, self.show_progress)
