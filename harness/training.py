"""The shared training loop: every method that only changes the loss trains through `fit`.

AdamW, linear or cosine schedule with warm-up, gradient accumulation, a budget in optimizer
steps or in epochs, bf16 autocast on a CUDA GPU (never on CPU), evaluation on the valid split
every `eval_every` steps with the best checkpoint kept (test is never used for selection).

Resumable after a kill. At every evaluation (and at the end) `fit` writes `out_dir/last.pt`
atomically (temp file + rename): the trainable weights (the whole model, or only the LoRA
adapter), the AdamW and schedule state, the RNG states (python, numpy, torch, CUDA), the step,
the best-so-far (score, step, curve), the data-order position (micro-batches consumed) and the
running log window. A later `fit` with the same `out_dir` continues from it and ends where an
uninterrupted run ends: the same batches in the same order, the same dropout masks, the same
weights. Everything `fit` logs is also appended to `out_dir/log.jsonl`; on resume the rows up to
the saved step are replayed through `log` and later ones dropped (those steps are trained again),
so the log holds every step once. The best checkpoint lives in `out_dir/best-<step>` while
training (`last.pt` names the current one; a kill never leaves it half-written or unreferenced)
and is renamed `out_dir/best` at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.errors import UserError
from harness.settings import TrainConfig
from harness.store import atomic_write_text, file_digest
from harness.student import Student
from harness.types import Example

Item = dict[str, Any]
LossFn = Callable[[Student, Sequence[Item]], tuple[torch.Tensor, dict[str, float]]]
Evaluate = Callable[[Student], float]
Log = Callable[[dict[str, float], int], None]
# (kind, key, build) -> the folder of a cached stage (TrainContext.stage)
Stage = Callable[[str, dict[str, Any], Callable[[Path], None]], Path]


class Companion(Protocol):
    """What a method trains and carries beside the student (QCRD: its judge head, the queue of
    earlier snapshots and the negatives they sampled). `fit` puts `parameters()` in the optimizer
    with the student's, saves `state_dict()` (plain values and tensors) in `last.pt` and gives it
    back to `load_state_dict` on resume (None on a fresh start), calls `step_begin` before each
    optimizer step (`micro`: micro-batches consumed so far), and `saved()` once a state is safely
    on disk (files the saved state no longer names may go then)."""

    def parameters(self) -> dict[str, torch.nn.Parameter]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any] | None) -> None: ...
    def step_begin(self, student: Student, step: int, micro: int) -> None: ...
    def saved(self) -> None: ...


STATE_FILE = "last.pt"
LOG_FILE = "log.jsonl"
STATE_VERSION = 1


@dataclass
class TrainResult:
    best_step: int
    best_valid: float
    steps: int
    seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, valid metric)


def lr_lambda(cfg: TrainConfig, steps: int | None = None) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at a given step (`steps`: the budget, default cfg.steps)."""
    total = steps if steps is not None else cfg.steps
    if total is None:
        raise ValueError("lr_lambda needs the number of steps of an epochs budget (cfg.total_steps(n_items))")

    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1 - progress)

    return f


def micro_batches(items: Sequence[Item], batch_size: int, seed: int, start: int = 0) -> Iterator[list[Item]]:
    """Endless shuffled micro-batches: each epoch is a fresh permutation from a seeded RNG.

    `start` skips that many micro-batches (the data-order position of a resumed run) without
    building them: the stream continues exactly where an uninterrupted one would be.
    """
    rng = random.Random(seed)
    order = list(range(len(items)))
    size = min(batch_size, len(items))
    per_epoch = len(order) // size
    epochs_done, skip = divmod(start, per_epoch)
    for _ in range(epochs_done):
        rng.shuffle(order)
    while True:
        rng.shuffle(order)
        for i in range(skip * size, per_epoch * size, size):  # drop the ragged tail of each epoch
            yield [items[j] for j in order[i : i + size]]
        skip = 0


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs (torch.manual_seed seeds every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, as plain lists and tensors (loadable with torch.load(weights_only=True))."""
    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, key.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        # only where CUDA is already up: reading the state must not initialise it (an in-process
        # vLLM engine started after this on a GPU would have to give up forking)
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    """bf16 autocast only on a CUDA device: `auto` where it supports bf16, `true` always there."""
    if device.type != "cuda":
        return False
    if setting == "auto":
        return torch.cuda.is_bf16_supported()
    return bool(setting)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The rows of log.jsonl; a last line cut by a kill is ignored."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    from harness.store import write_jsonl

    write_jsonl(path, rows)


@dataclass
class TrainState:
    """Everything `fit` carries from step to step, and what `last.pt` saves: a resumed run
    restores it and continues exactly where an uninterrupted one would be."""

    step: int = 0
    micro: int = 0  # micro-batches consumed: the data-order position
    seconds: float = 0.0  # training time spent before this process started
    best_step: int = 0
    best_valid: float = -math.inf
    best_dir: str | None = None  # the folder holding the best checkpoint so far (best-<step>)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, valid metric)
    running: dict[str, float] = field(default_factory=dict)  # metric sums of the current log window
    window: dict[str, float] = field(default_factory=lambda: {"steps": 0, "seconds": 0.0})

    def save(
        self, path: Path, fingerprint: dict[str, Any], params: dict[str, torch.Tensor], opt: Any, sched: Any, companion: dict[str, Any] | None = None
    ) -> None:
        """Atomically write the state with the trainable weights, optimizer, schedule and RNGs."""
        _atomic_torch_save(
            {
                **dataclasses.asdict(self),
                "curve": [list(c) for c in self.curve],
                "fingerprint": fingerprint,
                "trainable": {n: p.detach().to("cpu", copy=True) for n, p in params.items()},
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": rng_state(),
                "companion": companion or {},
            },
            path,
        )
        # its checksum beside it: a bit flip or a truncation is found on resume, not trained on
        atomic_write_text(path.with_name(path.name + ".sha256"), file_digest(path))

    @classmethod
    def load(
        cls, path: Path, fingerprint: dict[str, Any], params: dict[str, torch.Tensor], opt: Any, sched: Any, companion: Companion | None = None
    ) -> TrainState | None:
        """The saved state, with weights, optimizer, schedule, RNGs (and the companion's state)
        restored in place; None when there is none, or it was saved by a different training setup
        (a warning says so)."""
        if not path.exists():
            return None
        digest = path.with_name(path.name + ".sha256")
        why = None
        if digest.exists() and digest.read_text().strip() != file_digest(path):
            why = "it does not match its checksum"
        else:
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # truncated or not a torch file: unreadable whatever the cause
                why = f"it cannot be read ({type(e).__name__})"
        if why is not None:
            warnings.warn(f"{path} is damaged ({why}); starting from step 0", stacklevel=3)
            return None
        if saved.get("fingerprint") != fingerprint:
            warnings.warn(f"{path} was saved by a different training setup; starting from step 0", stacklevel=3)
            return None
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved["trainable"][n].to(p.device))
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        if companion is not None:
            companion.load_state_dict(saved.get("companion") or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in saved.items() if k in fields})
        state.curve = [(s, v) for s, v in state.curve]
        state.running, state.window = dict(state.running), dict(state.window)
        return state

    def result(self, total: int) -> TrainResult:
        return TrainResult(self.best_step, self.best_valid, total, self.seconds, list(self.curve))


def _remove(paths: list[Path]) -> None:
    for p in paths:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def fit(
    student: Student,
    items: Sequence[Item],
    loss_fn: LossFn,
    cfg: TrainConfig,
    evaluate: Evaluate | None,
    out_dir: Path,
    log: Log = lambda metrics, step: None,
    show_progress: bool = True,
    companion: Companion | None = None,
) -> TrainResult:
    """Train `student` in place on `items` with `loss_fn`; leave it at the best valid checkpoint.

    `companion` (see Companion) trains beside the student: its parameters are optimised with the
    student's and its state is saved and resumed with the loop's; checkpoints hold the student only.

    `evaluate` None selects nothing: the last checkpoint is kept (a stage whose model is not
    judged by valid accuracy, e.g. NAT's negative adapter) and no valid metric is logged.

    The best checkpoint ends in `out_dir/best` (a `Student.save` folder). A `last.pt` left in
    `out_dir` by a killed run with the same items and config is resumed from (see the module
    docstring); a finished one makes this call cost only the reload of the best checkpoint.
    """
    if not items:
        raise UserError("no training items: the method found nothing to train on (e.g. a bank without teacher positives)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, device = student.model, student.device
    total = cfg.total_steps(len(items))
    bf16 = use_bf16(cfg.bf16, device)
    seed_everything(cfg.run_seed)
    model.train()
    params = student.trainable_parameters()
    if companion is not None:
        params = {**params, **{f"companion.{n}": p for n, p in companion.parameters().items()}}
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total))
    # what a saved state must match to be resumed here (the work dir is keyed by the spec, so a
    # mismatch means the code changed underneath it)
    fingerprint = {
        "version": STATE_VERSION,
        "total": total,
        "n_items": len(items),
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "seed": cfg.run_seed,
        "params": [[n, list(p.shape)] for n, p in params.items()],
    }
    state_path, log_path = out_dir / STATE_FILE, out_dir / LOG_FILE
    state = TrainState.load(state_path, fingerprint, params, opt, sched, companion)
    if state is None:  # a fresh start: nothing of an earlier run may be trusted
        state = TrainState()
        if companion is not None:
            companion.load_state_dict(None)
        _remove([state_path, log_path, *out_dir.glob("best*"), *out_dir.glob(".*.tmp")])
    else:  # checkpoints written after the state was saved belong to steps that run again
        _remove([p for p in [*out_dir.glob("best-*"), *out_dir.glob(".*.tmp")] if p.name != state.best_dir])
        rows = [r for r in _read_log(log_path) if r["step"] <= state.step]
        _write_log(log_path, rows)
        for r in rows:  # replay what was logged up to the saved step
            r = dict(r)
            log(r, r.pop("step"))
    seconds_before = state.seconds
    log_file = open(log_path, "a", encoding="utf-8")

    def emit(metrics: dict[str, float], step: int) -> None:
        log_file.write(json.dumps({"step": step, **metrics}) + "\n")
        log_file.flush()
        log(metrics, step)

    def save_state() -> None:
        state.seconds = seconds_before + time.perf_counter() - t_start
        state.save(state_path, fingerprint, params, opt, sched, companion.state_dict() if companion is not None else None)
        if companion is not None:
            companion.saved()

    def checkpoint(step: int) -> None:
        if evaluate is None:  # no selection: the latest checkpoint is the one kept
            score = float(step)
        else:
            saved = rng_state()  # decoding (it seeds torch itself) never moves the training RNGs
            try:
                score = evaluate(student)
            finally:
                set_rng_state(saved)
            model.train()
            state.curve.append((step, score))
            emit({"valid": score}, step)
        old = None
        if score > state.best_valid:
            name = f"best-{step:07d}"
            tmp = out_dir / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            student.save(tmp)
            shutil.rmtree(out_dir / name, ignore_errors=True)
            tmp.rename(out_dir / name)
            old, state.best_dir = state.best_dir, name
            state.best_valid, state.best_step = score, step
        save_state()  # the state names the new best before the old one is deleted
        if old is not None:
            shutil.rmtree(out_dir / old, ignore_errors=True)

    if state.step == 0:
        emit({"train/bf16": float(bf16), "train/total_steps": float(total)}, 0)
    batches = micro_batches(items, cfg.batch_size, cfg.run_seed, start=state.micro)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} steps/s  valid {task.fields[valid]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=True,
    )
    start = state.step
    t_start = time.perf_counter()
    try:
        with progress:
            bar = progress.add_task("train", total=total, completed=start, loss=float("nan"), rate=0.0, valid="-")
            for step in range(start + 1, total + 1):
                t0 = time.perf_counter()
                if companion is not None:
                    companion.step_begin(student, step, state.micro)
                opt.zero_grad(set_to_none=True)
                loss_sum = 0.0
                for _ in range(cfg.grad_accum):
                    with autocast():
                        loss, metrics = loss_fn(student, next(batches))
                    state.micro += 1
                    (loss / cfg.grad_accum).backward()
                    loss_sum += loss.item() / cfg.grad_accum
                    for k, v in metrics.items():
                        state.running[k] = state.running.get(k, 0.0) + v / cfg.grad_accum
                if not math.isfinite(loss_sum):
                    # a NaN/inf loss only gets worse: stop at once, with the step, not hours later
                    raise UserError(f"training diverged: the loss at step {step} is {loss_sum} (lower train.lr, "
                                    f"now {cfg.lr}, or check the data)")
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm)
                opt.step()
                sched.step()
                state.step = step
                state.running["loss"] = state.running.get("loss", 0.0) + loss_sum
                state.window["steps"] += 1
                state.window["seconds"] += time.perf_counter() - t0
                if step % cfg.log_every == 0 or step == total:
                    n = state.window["steps"]
                    avg = {f"train/{k}": v / n for k, v in state.running.items()}
                    avg["train/lr"] = sched.get_last_lr()[0]
                    avg["train/step_seconds"] = state.window["seconds"] / n
                    emit(avg, step)
                    state.running, state.window = {}, {"steps": 0, "seconds": 0.0}
                if step % cfg.eval_every == 0 or step == total:
                    checkpoint(step)
                rate = (step - start) / (time.perf_counter() - t_start)
                valid = f"{state.curve[-1][1]:.3f}" if state.curve else "-"
                progress.update(bar, advance=1, loss=loss_sum, rate=rate, valid=valid)
    finally:
        log_file.close()
    state.seconds = seconds_before + time.perf_counter() - t_start
    if state.best_dir is not None and (out_dir / state.best_dir).exists():
        shutil.rmtree(out_dir / "best", ignore_errors=True)
        (out_dir / state.best_dir).rename(out_dir / "best")
    student.restore(out_dir / "best")
    result = state.result(total)
    return result if evaluate is not None else dataclasses.replace(result, best_valid=math.nan)


class UndeclaredInput(UserError):
    """A method read, while training, what its MethodDef.inputs does not declare (gold labels,
    teacher positives or negatives) or a held-out split: the comparison would not be fair."""


class Withheld(Mapping[str, list[Any]]):
    """The chains of a kind a method did not declare: any read is an UndeclaredInput."""

    def __init__(self, method: str, kind: str) -> None:
        self.method, self.kind = method, kind

    def _refuse(self) -> UndeclaredInput:
        return UndeclaredInput(f"method {self.method!r} read the teacher's {self.kind} but does not declare "
                               f"{self.kind!r} in its MethodDef.inputs")

    def __getitem__(self, key: str) -> list[Any]:
        raise self._refuse()

    def __iter__(self) -> Iterator[str]:
        raise self._refuse()

    def __len__(self) -> int:
        raise self._refuse()


@dataclass(frozen=True)
class GoldWithheld(Example):
    """A train example of a method that does not declare "gold": its question and choices are
    there, its gold answer and gold rationale are not (reading either is an UndeclaredInput)."""

    method: str = ""

    def __getattribute__(self, name: str) -> Any:
        if name in ("answer", "rationale"):
            method = object.__getattribute__(self, "method")
            raise UndeclaredInput(f"method {method!r} read the gold {name} of a train example but does not declare "
                                  "'gold' in its MethodDef.inputs")
        return object.__getattribute__(self, name)

    @classmethod
    def of(cls, ex: Example, method: str) -> GoldWithheld:
        return cls(id=ex.id, question=ex.question, answer=ex.answer, choices=ex.choices, rationale=ex.rationale, meta=ex.meta, method=method)


class TrainingTask:
    """The task as a method sees it while training: every member of the task, but no split other
    than train can be loaded (valid reaches a method only through `evaluate`, test never)."""

    def __init__(self, task: Any, method: str) -> None:
        self._task, self._method = task, method

    def load(self, split: str) -> list[Example]:
        if split != "train":
            raise UndeclaredInput(f"method {self._method!r} loaded the {split} split while training: methods train on "
                                  "ctx.train, and see valid only through ctx.evaluate")
        return self._task.load(split)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def declared(method: str, inputs: AbstractSet[str], task: Any, train: Sequence[Example],
             positives: Mapping[str, list[Any]], negatives: Mapping[str, list[Any]]) -> dict[str, Any]:
    """TrainContext fields holding only what the method declares (MethodDef.inputs): train
    examples without their gold answers unless "gold", Withheld chains unless "positives" /
    "negatives", and a task that loads no held-out split. What keeps a comparison fair is what a
    method is handed, not what it promises."""
    return {
        "task": TrainingTask(task, method),
        "train": list(train) if "gold" in inputs else [GoldWithheld.of(ex, method) for ex in train],
        "positives": positives if "positives" in inputs else Withheld(method, "positives"),
        "negatives": negatives if "negatives" in inputs else Withheld(method, "negatives"),
    }


@dataclass
class TrainContext:
    """Everything a method's `train` receives; the same for every method, so only the loss differs.

    `positives` / `negatives` map example id -> teacher chains (from the bank) for train examples.
    `evaluate` scores a student on the valid split with the method's own test-time input.
    `out_dir` is the cell's checkpoint work folder: it survives a kill, so `fit` resumes there.
    `stage(kind, key, build)` is a folder built once by `build(work_dir)` and shared by every cell
    whose student, bank, budget and seed are the same (e.g. NAT's negative adapter): cached in the
    store, built under a lock, resumable in its work folder. Without a store (unit tests) it is
    built in `out_dir/stages/`. `models` holds the checkpoints of the methods this one builds on
    (MethodDef.stages, e.g. NCE's NAT model), by method name.

    For methods that call the teacher while training (inputs "teacher": FDD writes new problems):
    `teacher` is the cell's teacher spec, `banks(manifest)` a resumable bank in the store (in
    `out_dir/banks/` without one), `held_out(threshold)` a harness.contamination.HeldOut index of
    the valid and test questions (what keeps generated problems out of training; a method gets
    matches, not the questions), and `predict(student, examples)` the student's greedy answers
    with the method's test-time input and the cell's decode settings.
    """

    student: Student
    task: Any
    train: Sequence[Any]  # Example
    positives: Mapping[str, list[Any]]  # Chain (Withheld when the method does not declare them)
    negatives: Mapping[str, list[Any]]
    config: TrainConfig
    evaluate: Evaluate
    out_dir: Path
    log: Log = lambda metrics, step: None
    show_progress: bool = True
    stage: Stage | None = None
    models: dict[str, Path] = field(default_factory=dict)
    teacher: Any = None
    banks: Callable[[dict[str, Any]], Any] | None = None
    held_out: Callable[[float], Any] | None = None
    predict: Callable[[Student, Sequence[Any]], list[str | None]] | None = None

    def fit(self, items: Sequence[Item], loss_fn: LossFn, companion: Companion | None = None) -> TrainResult:
        """`fit` with this context's student, budget, selection, work folder and log; the number
        of items goes to the log first (`data/train_items`: every method reports what it trained on)."""
        self.log({"data/train_items": float(len(items))}, 0)
        return fit(self.student, items, loss_fn, self.config, self.evaluate, self.out_dir, self.log, self.show_progress, companion)

    def cached(self, kind: str, key: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """The folder of a shared stage (see the class docstring), built by `build(work_dir)` if missing."""
        if self.stage is not None:
            return self.stage(kind, key, build)
        from harness.store import content_key

        out = self.out_dir / "stages" / f"{kind}-{content_key(key)}"
        if not (out / ".done").exists():
            out.mkdir(parents=True, exist_ok=True)
            build(out)
            (out / ".done").touch()
        return out

    def bank(self, manifest: dict[str, Any]) -> Any:
        """The harness.bank.Bank for `manifest` (see the class docstring), created empty if new."""
        if self.banks is not None:
            return self.banks(manifest)
        from harness.bank import Bank
        from harness.store import Store

        return Bank.create(Store(self.out_dir / "banks"), manifest)
