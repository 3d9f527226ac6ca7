"""One grid cell, top to bottom:

    task.load -> teacher bank (cached) -> student (tiny, built once, or a hub model)
    -> method.train (cached checkpoint, selected on valid) -> decode test (cached predictions)
    -> aggregate per scheme -> score (accuracy with a bootstrap 95% interval) -> MLflow

Every expensive stage is keyed by a hash of everything that determines it, so a killed grid
redoes only unfinished work and a finished cell (a FINISHED MLflow run with its hash) is skipped.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness import teacher as teachers
from harness.aggregate import aggregate, parse_scheme
from harness.config import RunSpec
from harness.decoding import GREEDY, HFDecoder, SamplingParams, to_chains
from harness.errors import UserError, unknown
from harness.models import TinyConfig, build_tiny_model, corpus
from harness.scoring import Score, most_frequent_baseline, score
from harness.store import Store, atomic_write_text, content_key, read_jsonl, write_jsonl
from harness.student import Student
from harness.tracking import Tracker
from harness.training import TrainConfig, TrainContext
from harness.types import Chain, Example
from methods import get_method, make_config
from methods.base import MethodDef
from tasks import get_task
from tasks.base import Task

TEACHERS = teachers.BACKENDS


@dataclass
class Prepared:
    """A run spec with every name resolved: fails early, before any work, on a bad name."""

    spec: RunSpec
    task: Task
    method: MethodDef
    method_cfg: Any
    schemes: list[tuple[str, str, int | None]]  # (spec string, name, k)

    @property
    def sample_k(self) -> int:
        """Chains per test example needed by the sampled schemes (0: greedy only)."""
        return max((k or 1 for _, name, k in self.schemes if name != "greedy"), default=0)


@dataclass
class CellResult:
    cell: str
    run_id: str
    scores: dict[str, Score]
    untrained: dict[str, Score] = field(default_factory=dict)
    baseline: float = float("nan")
    skipped: bool = False


def prepare(spec: RunSpec) -> Prepared:
    task = get_task(spec.task.name, **spec.task.options)
    method = get_method(spec.method.name)
    cfg = make_config(method, spec.method.options)
    if spec.teacher.name not in TEACHERS:
        raise unknown("teacher", spec.teacher.name, TEACHERS)
    schemes = []
    for s in spec.eval.schemes:
        name, k = parse_scheme(s)
        if name == "greedy" and k not in (None, 1):
            raise UserError(f"scheme {s!r}: greedy decoding gives one chain per example; write 'greedy'")
        schemes.append((s, name, k))
    return Prepared(spec, task, method, cfg, schemes)


def cell_hash(spec: RunSpec) -> str:
    # the grid's name is a label, not an input: renaming a grid must not re-run its cells
    return content_key({**spec.model_dump(mode="json"), "name": None})


def run_cell(spec: RunSpec, store: Store, tracker: Tracker, cell: str, show_progress: bool = True) -> CellResult:
    p = prepare(spec)
    key = cell_hash(spec)
    if (done := tracker.finished_run(key)) is not None:
        return CellResult(cell, done, {}, skipped=True)
    tracker.close_stale(key)

    # 1. data: deterministic splits; test is scored, never used to select anything
    train, valid, test = (p.task.load(split) for split in ("train", "valid", "test"))

    # 2. teacher bank: K chains per train example, split into positives and negatives
    bank_key, bank = teacher_bank(p.task, train, valid, spec, store)
    positives, negatives = defaultdict(list), defaultdict(list)
    for c in bank:
        (positives if c.correct else negatives)[c.example_id].append(c)

    # 3. the student before training: a tiny model built here once, or a hub id / local path
    model_ref = student_source(spec, p.task, train, bank, bank_key, store)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lengths = dict(max_input_len=spec.student.max_input_len, max_target_len=spec.student.max_target_len)

    tags = {
        "cell_hash": key,
        "cell": cell,
        "grid": spec.name,
        "task": p.task.name,
        "task_version": p.task.version,
        "prompt_version": p.task.prompt_version,
        "method": p.method.name,
        "student": spec.student.model if spec.student.model != "tiny" else f"tiny-{spec.student.family}",
        "teacher_bank": bank_key,
    }
    with tracker.run(cell, spec.flat(), tags) as log:
        result = CellResult(cell, log.run_id, {})
        base_answer, result.baseline = most_frequent_baseline([e.answer for e in train], [e.answer for e in test], p.task.canonical)
        log.metrics({"baseline/most_frequent": result.baseline, "data/train": len(train), "data/valid": len(valid), "data/test": len(test)})
        log.tags({"baseline_answer": base_answer})
        skipped = data_skipped(p.task)
        if skipped:  # --skip-bad: the count is a metric, every skipped row is in the artifact
            log.metrics({"data/skipped_rows": len(skipped)})
            path = store.file("skipped", key, ".txt")
            atomic_write_text(path, "\n".join(skipped) + "\n")
            log.artifact(path, "data")

        if spec.eval.untrained:
            before = Student.load(model_ref, device, **lengths)
            chains = decode(before, p, test)
            result.untrained = score_schemes(p, test, chains)
            log.metrics(scheme_metrics("untrained", result.untrained))

        # 4. train (cached): the method's own loss through the shared loop, best on valid
        student = trained_student(p, model_ref, train, valid, positives, negatives, bank_key, store, log, device, lengths, show_progress)

        # 5. decode the test split (cached), aggregate per scheme, score
        pred_key = {
            "student": student_key(p, model_ref, bank_key),
            "decode": spec.decode.model_dump(),
            "k": p.sample_k,
            "greedy": any(name == "greedy" for _, name, _ in p.schemes),
            "test": [e.id for e in test],
        }
        pred_path = store.file("predictions", content_key(pred_key))
        if pred_path.exists():
            chains = [Chain.from_dict(r) for r in read_jsonl(pred_path)]
        else:
            chains = decode(student, p, test, source=f"student:{log.run_id}")
            write_jsonl(pred_path, (c.to_dict() for c in chains))
        result.scores = score_schemes(p, test, chains)
        log.metrics(scheme_metrics("test", result.scores))
        log.artifact(pred_path, "predictions")
    return result


# ---------------------------------------------------------------------------- stages


def teacher_bank(task: Task, train: Sequence[Example], valid: Sequence[Example], spec: RunSpec, store: Store) -> tuple[str, list[Chain]]:
    """The teacher bank for train + valid (what `distillbench teacher build` makes, so a bank
    built there is reused here), generating only what is missing; returns the train chains."""
    bank, _ = teachers.build_bank(task, [*train, *valid], spec.teacher, store)
    train_ids = {e.id for e in train}
    return bank.key, [c for c in bank.chains() if c.example_id in train_ids]


def data_skipped(task: Task) -> list[str]:
    """One message per malformed row the task skipped (skip_bad); empty for tasks without files."""
    skipped = getattr(task, "skipped", None)
    return list(skipped()) if callable(skipped) else []


def task_key(task: Task) -> dict[str, Any]:
    opts = dataclasses.asdict(task) if dataclasses.is_dataclass(task) else {}
    return {"name": task.name, "version": task.version, "prompt_version": task.prompt_version, "options": opts}


def student_source(spec: RunSpec, task: Task, train: Sequence[Example], bank: Sequence[Chain], bank_key: str, store: Store) -> str:
    """A hub id / local path as given, or the directory of a tiny model built from the task's text."""
    s = spec.student
    if s.model != "tiny":
        return s.model
    tiny = TinyConfig(**s.tiny.model_dump())
    key = content_key({"family": s.family, "tiny": s.tiny.model_dump(), "task": task_key(task), "bank": bank_key})
    out = store.dir("models", key)
    if not out.exists():
        with store.atomic_dir("models", key) as tmp:
            build_tiny_model(s.family, corpus(task, train, (c.text for c in bank)), tmp, tiny)
    return str(out)


def student_key(p: Prepared, model_ref: str, bank_key: str) -> str:
    s = p.spec
    return content_key(
        {
            "model": model_ref,
            "method": p.method.name,
            "method_cfg": dataclasses.asdict(p.method_cfg),
            "bank": bank_key,
            "train": s.train.model_dump(),
            "lengths": [s.student.max_input_len, s.student.max_target_len],
            "seed": s.seed,
            "task": task_key(p.task),
        }
    )


def trained_student(
    p: Prepared,
    model_ref: str,
    train: Sequence[Example],
    valid: Sequence[Example],
    positives: dict[str, list[Chain]],
    negatives: dict[str, list[Chain]],
    bank_key: str,
    store: Store,
    log: Any,
    device: str,
    lengths: dict[str, int],
    show_progress: bool,
) -> Student:
    """Train with the method (or reuse the cached checkpoint) and return the best-on-valid student.

    The training log is kept next to the checkpoint and replayed into MLflow when reused, so a
    resumed cell shows the same curves.
    """
    key = student_key(p, model_ref, bank_key)
    ckpt = store.dir("checkpoints", key)
    if not (ckpt / "best").exists():
        with store.atomic_dir("checkpoints", key) as tmp:
            history: list[dict[str, Any]] = []

            def record(metrics: dict[str, float], step: int) -> None:
                history.append({"step": step, **metrics})
                log.metrics(metrics, step)

            student = Student.load(model_ref, device, **lengths)
            ctx = TrainContext(
                student=student,
                task=p.task,
                train=train,
                positives=positives,
                negatives=negatives,
                config=TrainConfig(**p.spec.train.model_dump(), seed=p.spec.seed),
                evaluate=lambda s: valid_accuracy(s, p, valid),
                out_dir=tmp,
                log=record,
                show_progress=show_progress,
            )
            res = p.method.train(ctx, p.method_cfg)
            log.metrics({"train/best_step": res.best_step, "train/best_valid": res.best_valid, "train/seconds": res.seconds})
            write_jsonl(tmp / "history.jsonl", history)
            (tmp / "result.json").write_text(json.dumps(dataclasses.asdict(res)))
        return student
    for row in read_jsonl(ckpt / "history.jsonl"):
        step = row.pop("step")
        log.metrics(row, step)
    res = json.loads((ckpt / "result.json").read_text())
    log.metrics({"train/best_step": res["best_step"], "train/best_valid": res["best_valid"], "train/seconds": res["seconds"]})
    return Student.load(ckpt / "best", device, **lengths)


def valid_accuracy(student: Student, p: Prepared, valid: Sequence[Example]) -> float:
    """Greedy accuracy on the valid split: the model-selection signal (test is never used)."""
    inputs = [p.method.test_input(p.task, ex, p.method_cfg) for ex in valid]
    gens = HFDecoder(student, p.spec.decode.batch_size).sample(inputs, dataclasses.replace(GREEDY, max_new_tokens=p.spec.decode.max_new_tokens))
    ok = [p.task.equivalent(p.task.extract(g[0].text), ex.answer) for g, ex in zip(gens, valid, strict=True)]
    return sum(ok) / max(1, len(ok))


def decode(student: Student, p: Prepared, examples: Sequence[Example], source: str = "student:untrained") -> list[Chain]:
    """The chains the schemes need: one greedy chain per example and/or K sampled ones."""
    d = p.spec.decode
    dec = HFDecoder(student, d.batch_size)
    inputs = [p.method.test_input(p.task, ex, p.method_cfg) for ex in examples]
    chains: list[Chain] = []
    if any(name == "greedy" for _, name, _ in p.schemes):
        params = dataclasses.replace(GREEDY, max_new_tokens=d.max_new_tokens)
        chains += to_chains(examples, dec.sample(inputs, params), p.task, source, params)
    if p.sample_k:
        params = SamplingParams(n=p.sample_k, temperature=d.temperature, top_p=d.top_p, max_new_tokens=d.max_new_tokens, seed=d.seed)
        chains += to_chains(examples, dec.sample(inputs, params), p.task, source, params)
    return chains


def score_schemes(p: Prepared, examples: Sequence[Example], chains: Sequence[Chain]) -> dict[str, Score]:
    """Accuracy (with a bootstrap 95% interval) of every scheme over the same examples."""
    greedy: dict[str, list[Chain]] = defaultdict(list)
    sampled: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        (greedy if c.meta.get("temperature") == 0 else sampled)[c.example_id].append(c)
    out = {}
    for spec_str, name, _ in p.schemes:
        pool = greedy if name == "greedy" else sampled
        answers = aggregate(spec_str, {ex.id: pool[ex.id] for ex in examples}, key=p.task.canonical, same=p.task.equivalent)
        correct = [p.task.equivalent(answers[ex.id], ex.answer) for ex in examples]
        out[spec_str] = score(correct, n_resamples=p.spec.eval.bootstrap, seed=p.spec.seed)
    return out


def metric_name(scheme: str) -> str:
    """MLflow metric names cannot hold '@': 'majority@8' -> 'majority_k8'."""
    return scheme.replace("@", "_k")


def scheme_metrics(prefix: str, scores: dict[str, Score]) -> dict[str, float]:
    out = {}
    for scheme, s in scores.items():
        m = metric_name(scheme)
        out.update({f"{prefix}/acc/{m}": s.acc, f"{prefix}/lo/{m}": s.lo, f"{prefix}/hi/{m}": s.hi})
    return out

