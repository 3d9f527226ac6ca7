"""One grid cell, top to bottom:

    task.load -> teacher bank (cached) -> student (tiny, built once, or a hub model)
    -> method.train (cached checkpoint, selected on valid) -> decode valid and test (cached
    predictions) -> aggregate per scheme -> score (accuracy with a bootstrap 95% interval, k-curves,
    per-subject breakdown; harness/evaluate.py) -> MLflow

Every expensive stage is keyed by a hash of everything that determines it, so a killed grid
redoes only unfinished work and a finished cell (a FINISHED MLflow run with its hash) is skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness import teacher as teachers
from harness.aggregate import Scheme, parse_scheme
from harness.config import MethodSpec, RunSpec
from harness.decoding import GREEDY, SamplingParams, make_decoder, sample_early_stopping, to_chains
from harness.errors import UserError, unknown
from harness.evaluate import evaluate, log_evaluation, read_predictions, write_predictions
from harness.models import TINY_BUILD, TinyConfig, build_tiny_model, check_model_ref, corpus
from harness.scoring import Score, most_frequent_baseline
from harness.settings import RankerConfig
from harness.store import Store, atomic_write_text, content_key, intact, read_jsonl, write_checksums, write_jsonl
from harness.student import Student
from harness.tracking import Tracker, machine_tags
from harness.training import TrainConfig, TrainContext, TrainResult, declared
from harness.types import Chain, Example
from methods import get_method, make_config
from methods.base import MethodDef
from tasks import get_task
from tasks.base import Task, task_key

TEACHERS = teachers.BACKENDS
RANKER_HISTORY = "history.jsonl"  # a trained ranker's training log, next to it in the store


@dataclass
class Prepared:
    """A run spec with every name resolved: fails early, before any work, on a bad name."""

    spec: RunSpec
    task: Task
    method: MethodDef
    method_cfg: Any
    schemes: list[Scheme]

    @property
    def greedy(self) -> bool:
        return any(not s.sampled for s in self.schemes)

    @property
    def sample_k(self) -> int:
        """Sampled chains per test example: decode.k, else the largest k of the sampled schemes."""
        return self.spec.decode.k or max((s.k or 0 for s in self.schemes if s.sampled), default=0)


@dataclass
class CellResult:
    cell: str
    run_id: str
    scores: dict[str, Score]
    untrained: dict[str, Score] = field(default_factory=dict)
    baseline: float = float("nan")
    skipped: bool = False
    error: str | None = None  # the cell failed (harness/grid.py): its one-line error


def check_models(spec: RunSpec) -> None:
    """The student and teacher models resolve: called before the teacher bank is built and before
    an MLflow run is opened (a grid calls it for every cell first); not by the dry run, which
    reports what is missing instead."""
    if spec.student.model != "tiny":
        check_model_ref(spec.student.model, "student.model")
    if spec.teacher.name in ("hf", "vllm") and spec.teacher.model:
        check_model_ref(spec.teacher.model, "teacher.model")


def prepare(spec: RunSpec) -> Prepared:
    task = get_task(spec.task.name, **spec.task.options)
    method = get_method(spec.method.name)
    cfg = make_config(method, spec.method.options)
    if spec.teacher.name not in TEACHERS:
        raise unknown("teacher", spec.teacher.name, TEACHERS)
    p = Prepared(spec, task, method, cfg, [parse_scheme(s) for s in spec.eval.schemes])
    for s in p.schemes:
        if s.sampled and p.sample_k == 0:
            raise UserError(f"scheme {s.spec!r} votes over sampled chains: say how many, with decode.k (--k) or {s.name}@K")
        if s.k is not None and s.k > p.sample_k:
            raise UserError(f"scheme {s.spec!r} needs {s.k} sampled chains per example but decode.k is {p.sample_k}")
        if spec.decode.early_stop and s.sampled and s.early_stop_window is None:
            raise UserError(
                f"decode.early_stop stops sampling at the first unanimous window, so every sampled scheme must be "
                f"esc[:window] without @k; {s.spec!r} needs the chains that are never drawn"
            )
        if s.definition.reads_scores(s.arg) and not method.scores_chains and spec.ranker is None:
            # fail before training, not after: the scores would be missing at scoring time
            raise UserError(
                f"scheme {s.spec!r} weights votes by ranker scores: add a `ranker:` section (ASC's ranker, trained on "
                f"the bank), or score a run's saved chains with: distillbench aggregate RUN_ID --schemes {s.spec} --scores FILE"
            )
    if spec.decode.early_stop and len({s.early_stop_window for s in p.schemes if s.sampled}) > 1:
        raise UserError("decode.early_stop samples in one window size: give every esc scheme the same window")
    for t in spec.eval.test_sets:  # out-of-distribution test sets resolve before any work
        get_task(t.name, **t.options)
    for name in method.stages_of(p.method_cfg):  # the model it builds on must resolve too (NCE's `nat:` options)
        dependency(p, name)
    return p


def check_splits(task: str, splits: dict[str, Sequence[Example]]) -> None:
    """An empty split is a one-line error before any run is opened (an empty test split would
    otherwise give a FINISHED run with accuracy NaN, skipped as done forever after)."""
    empty = [name for name, examples in splits.items() if not examples]
    if empty:
        raise UserError(f"task {task!r}: the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
                        "(check its n_* options or its data)")


def cell_hash(spec: RunSpec) -> str:
    # the grid's name is a label, not an input: renaming a grid must not re-run its cells
    return content_key({**spec.model_dump(mode="json", exclude={"resources"}), "name": None})


def run_cell(
    spec: RunSpec, store: Store, tracker: Tracker, cell: str, show_progress: bool = True, progress: Progress | None = None
) -> CellResult:
    p = prepare(spec)
    key = cell_hash(spec)
    if (done := tracker.finished_run(key)) is not None:
        return CellResult(cell, done, {}, skipped=True)
    check_models(spec)
    tracker.close_stale(key)
    progress = progress or (lambda stage, done=None, total=None: None)
    clock = StageClock(progress)

    # 1. data: deterministic splits; test is scored, never used to select anything
    with clock("data"):
        train, valid, test = (p.task.load(split) for split in ("train", "valid", "test"))
    check_splits(p.task.name, {"train": train, "valid": valid, "test": test})

    # 2. teacher bank: K chains per train example, split into positives and negatives
    with clock("teacher bank"):
        bank_key, bank = teacher_bank(p.task, train, valid, spec, store)
        # teacher.noise swaps wrong chains into what the student trains on; the tiny student is
        # built from the generated bank, so every noise rate starts from the same student
        clean_key, clean = bank_key, bank
        bank_key, bank, noise = noisy_bank(spec, bank_key, bank)
    positives, negatives = defaultdict(list), defaultdict(list)
    for c in bank:
        (positives if c.correct else negatives)[c.example_id].append(c)
    if "positives" in p.method.inputs and not any(positives.values()):
        raise UserError(
            f"method {p.method.name!r} trains on the teacher's right chains, and bank {bank_key[:12]} has none "
            f"({len(bank)} chains, all wrong): raise teacher.k, lower teacher.wrong_rate or check the teacher"
        )

    # 3. the student before training: a tiny model built here once, or a hub id / local path
    with clock("student"):
        model_ref = student_source(spec, p.task, train, clean, clean_key, store)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lengths = dict(max_input_len=spec.student.max_input_len, max_target_len=spec.student.max_target_len)

    skey = student_key(p, model_ref, bank_key)
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
        # the trained student's key (checkpoints/<key>/): what a method building on this one
        # (NCE on NAT) records as its stage/<method>_checkpoint
        "checkpoint": skey,
        # where it ran: a cell is bit-for-bit reproducible on the same machine kind and thread
        # count, and its digits move across machines (README: Reproducibility)
        **machine_tags(),
    }
    with tracker.run(cell, spec.flat(), tags) as log:
        result = CellResult(cell, log.run_id, {})
        base_answer, result.baseline = most_frequent_baseline([e.answer for e in train], [e.answer for e in test], p.task.canonical)
        log.metrics({"baseline/most_frequent": result.baseline, "data/train": len(train), "data/valid": len(valid), "data/test": len(test)})
        # what the teacher bank cost: chains and generated tokens (the leaderboard's cost view)
        log.metrics({"teacher/chains": len(bank), "teacher/tokens": sum(c.n_tokens for c in bank)})
        # train questions and bank chains against valid and test (cached: the grid's shared pass
        # computed it before any cell trained; harness/contamination_check.py)
        from harness import contamination_check

        # of the generated bank: a noisy view only moves its chains between examples and labels
        contamination = contamination_check.cell_report(spec, train, valid, clean_key, clean, store)
        contamination_check.log_report(log, contamination, store)
        if bank:  # the share of wrong train chains: the noise a cell actually trained with
            log.metrics({"teacher/wrong_share": sum(not c.correct for c in bank) / len(bank)})
        if noise is not None:  # what teacher.noise did (harness/noise.py), and the bank it came from
            log.metrics(noise.metrics())
            log.tags({"teacher_bank_generated": clean_key})
        log.tags({"baseline_answer": base_answer})
        skipped = list(p.task.skipped())
        if skipped:  # --skip-bad: the count is a metric, every skipped row is in the artifact
            log.metrics({"data/skipped_rows": len(skipped)})
            path = store.file("skipped", key, ".txt")
            atomic_write_text(path, "\n".join(skipped) + "\n")
            log.artifact(path, "data")

        log.tags({"versions": json.dumps(package_versions(), sort_keys=True)})
        # the ASC ranker (cached per bank): scores every decoded chain for asc:1..3
        with clock("ranker"):
            rk = trained_ranker(spec, p.task, train, valid, store) if spec.ranker is not None else None
        if rk is not None:  # its training curve, held-out pair accuracy and AUC, and what it trained on
            from harness.ranker import RANKER_FILE

            log.tags({"ranker": rk[0]})
            for row in read_jsonl(rk[1] / RANKER_HISTORY) if (rk[1] / RANKER_HISTORY).exists() else []:
                step = row.pop("step")
                log.metrics(row, step)
            log.metrics(json.loads((rk[1] / RANKER_FILE).read_text())["metrics"])

        @functools.cache
        def ranker() -> Any:  # loaded once, and only when some chains are not scored yet
            from harness.ranker import Ranker

            assert rk is not None
            return Ranker.load(rk[1], device)

        def with_scores(chains: list[Chain], examples: Sequence[Example], pred_dir: Path, split: str) -> list[Chain]:
            if rk is None:
                return chains
            out, too_long = ranked(chains, examples, ranker, rk[0], pred_dir, store)
            log.metrics({f"ranker/too_long/{split}": too_long})
            return out

        if spec.eval.untrained:
            with clock("untrained"):
                before = Student.load(model_ref, device, **lengths)
                untrained_dir = predictions(before, p, test, "test", f"{skey}:untrained", store, "student:untrained")
                chains = with_scores(read_predictions(untrained_dir).chains, test, untrained_dir, "untrained")
                ev = evaluate(p.task, test, chains, p.schemes, spec.eval.bootstrap, spec.seed, curves=False)
                result.untrained = ev.scores
                log_evaluation(log, "untrained", ev, store.dir("evaluations", key))

        # 4. train (cached): the method's own loss through the shared loop, best on valid; first
        # the models it builds on (NCE: the NAT model of the same settings, or its cell's checkpoint)
        for name in p.method.stages_of(p.method_cfg):
            dep = dependency(p, name)
            log.tags({f"stage/{name}_checkpoint": student_key(dep, model_ref, bank_key), f"stage/{name}_run": tracker.finished_run(cell_hash(dep.spec)) or ""})
        with clock("train"):
            steps = StepProgress(log, progress)
            ckpt, student = trained_checkpoint(p, model_ref, train, valid, positives, negatives, bank_key, store, steps, device, lengths, show_progress)
            if student is None:  # reused: load the checkpoint the way its method saves it
                student = (p.method.load_student or Student.load)(ckpt / "best", device, **lengths)

        # 5. the valid split with every scheme (cached): what picks a grid's best cell and scheme
        # (leaderboard/data.py best_cell), so that test is only ever reported, never selected on
        e = spec.eval
        with clock("valid"):
            valid_dir = predictions(student, p, valid, "valid", skey, store, source=f"student:{log.run_id}")
            chains = with_scores(read_predictions(valid_dir).chains, valid, valid_dir, "valid")
            ev = evaluate(p.task, valid, chains, p.schemes, e.bootstrap, spec.seed, curves=False)
            log_evaluation(log, "valid", ev, store.dir("evaluations", key))

        # 6. decode the test split (cached), aggregate per scheme, score
        with clock("test"):
            pred_dir = predictions(student, p, test, "test", skey, store, source=f"student:{log.run_id}")
            chains = with_scores(read_predictions(pred_dir).chains, test, pred_dir, "test")
            ev = evaluate(p.task, test, chains, p.schemes, e.bootstrap, spec.seed, curves=e.curves, subsamples=e.subsamples)
            result.scores = ev.scores
            log_evaluation(log, "test", ev, store.dir("evaluations", key))
        log.artifact(pred_dir, "predictions")
        if (ckpt / "artifacts").is_dir():  # what the method wrote for readers (FDD: every generated problem)
            log.artifact(ckpt / "artifacts", "method")
            # the problems it wrote and trained on against valid and test: step 1, after training
            if (gen := contamination_check.generated_report(contamination, ckpt / "artifacts", spec, valid, store, skey)) is not None:
                contamination_check.log_report(log, gen, store, step=1, only=("generated", "generated_chains"))

        # 7. out-of-distribution test sets (cached like test): decoded and scored, never selected on
        for ood in (get_task(t.name, **t.options) for t in e.test_sets):
            progress(f"ood/{ood.name}")
            examples = ood.load("test")
            q = dataclasses.replace(p, task=ood)
            ood_dir = predictions(student, q, examples, f"test:{task_key(ood)}", skey, store, source=f"student:{log.run_id}")
            chains = with_scores(read_predictions(ood_dir).chains, examples, ood_dir, f"ood/{ood.name}")
            ev = evaluate(ood, examples, chains, p.schemes, e.bootstrap, spec.seed, curves=False)
            log_evaluation(log, f"ood/{ood.name}", ev, store.dir("evaluations", key))
            log.metrics({f"data/ood/{ood.name}": len(examples)})
        # wall seconds per stage (a cached stage costs its lookup)
        log.metrics({f"time/{stage.replace(' ', '_')}": seconds for stage, seconds in clock.seconds.items()})
    return result


Progress = Callable[..., None]  # (stage, done=None, total=None): what a cell is doing, for the grid's bars


class StageClock:
    """Times the stages of a cell (`with clock("train"):`) and reports each as it starts."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.seconds = progress, {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.progress(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


class StepProgress:
    """The cell's log, passing training steps on to the grid's progress bar."""

    def __init__(self, log: Any, progress: Progress) -> None:
        self.log, self.progress, self.total = log, progress, None

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if "train/total_steps" in metrics:
            self.total = int(metrics["train/total_steps"])
        elif "train/loss" in metrics:
            self.progress("train", step, self.total)
        self.log.metrics(metrics, step)

    def __getattr__(self, name: str) -> Any:  # tags, artifact, run_id: the log's own
        return getattr(self.log, name)


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on (recorded with every run)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("distillbench", "torch", "transformers", "tokenizers", "peft", "accelerate", "mlflow", "numpy", "sympy", "vllm", "ray"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


# ---------------------------------------------------------------------------- stages


def shared_key(spec: RunSpec) -> str:
    """Cells with equal keys share their teacher bank and their untrained (tiny) student."""
    s = spec.student
    student = {"family": s.family, "tiny": tiny_config(spec).model_dump()} if s.model == "tiny" else s.model
    # without teacher.noise: cells at every noise rate share the generated bank and the student
    teacher = spec.teacher.model_dump(mode="json", exclude={"noise"})
    return content_key({"task": spec.task.model_dump(mode="json"), "teacher": teacher, "student": student})


def build_shared(spec: RunSpec, store: Store) -> None:
    """Build (or find) the stages a cell shares with others: its teacher bank, its tiny student and
    its ranker. Each is built under its lock in the store, so concurrent workers wait and reuse."""
    p = prepare(spec)
    train, valid = p.task.load("train"), p.task.load("valid")
    bank_key, bank = teacher_bank(p.task, train, valid, spec, store)
    student_source(spec, p.task, train, bank, bank_key, store)
    if spec.ranker is not None:
        trained_ranker(spec, p.task, train, valid, store)


def predictions(student: Student, p: Prepared, examples: Sequence[Example], split: str, skey: str, store: Store, source: str) -> Path:
    """The predictions folder of a trained student on one split, decoded once and then reused:
    keyed by the student (its training), the decoding settings and the examples."""
    pred_key = content_key(
        {
            "student": skey,
            "decode": p.spec.decode.model_dump(),
            "k": p.sample_k,
            "greedy": p.greedy,
            split: [e.id for e in examples],
        }
    )
    pred_dir = store.dir("predictions", pred_key)
    if not intact(pred_dir, "predictions"):
        chains = decode(student, p, examples, source=source)
        with store.atomic_dir("predictions", pred_key) as tmp:
            write_predictions(tmp, task_key(p.task), examples, chains)
    return pred_dir


def teacher_bank(task: Task, train: Sequence[Example], valid: Sequence[Example], spec: RunSpec, store: Store) -> tuple[str, list[Chain]]:
    """The teacher bank for train + valid (what `distillbench teacher build` makes, so a bank
    built there is reused here), generating only what is missing; returns the train chains."""
    bank, _ = teachers.build_bank(task, [*train, *valid], spec.teacher, store)
    train_ids = {e.id for e in train}
    return bank.key, [c for c in bank.chains() if c.example_id in train_ids]


def noisy_bank(spec: RunSpec, bank_key: str, chains: list[Chain]) -> tuple[str, list[Chain], Any]:
    """(key, chains, NoiseReport or None): the train chains with teacher.noise applied
    (harness/noise.py), keyed by the generated bank and the noise; unchanged without noise. Only
    the train chains: the valid split's chains (the ranker's held-out pairs) stay as generated."""
    from harness.noise import apply_noise, noise_key

    n = spec.teacher.noise
    if n is None:
        return bank_key, chains, None
    out, report = apply_noise(chains, n.rate, n.swap, n.seed)
    if report.target and not report.swapped:
        raise UserError(
            f"teacher.noise: bank {bank_key[:12]} has no wrong chain to swap in for {report.target} positives "
            f"({'no example has both' if n.swap == 'own' else 'no example has a negative'}): "
            + ("try teacher.noise.swap=other or " if n.swap == "own" else "") + "use a teacher that makes mistakes (k > 1, wrong_rate > 0)"
        )
    if report.unswappable:
        import sys

        print(f"warning: teacher.noise: {report.unswappable} of {report.target} positives kept in {report.unswappable_examples} "
              f"examples without a negative to swap in (swap: {n.swap}); wrong share {report.wrong_share:.1%}", file=sys.stderr)
    return noise_key(bank_key, n.model_dump(mode="json")), out, report


def ranker_config(spec: RunSpec) -> RankerConfig:
    """The spec's ranker settings, its seed the run's unless `ranker.seed` sets one."""
    assert spec.ranker is not None
    return _run_seeded(spec.ranker, spec)


def trained_ranker(spec: RunSpec, task: Task, train: Sequence[Example], valid: Sequence[Example], store: Store) -> tuple[str, Path]:
    """(key, folder) of the ASC ranker of this cell's bank: trained once on the bank's train
    pairs, its held-out pair accuracy and AUC measured on the bank's valid-split chains, then
    shared by every cell with the same bank and ranker settings (cached by content hash)."""
    from harness import ranker as rankers

    cfg = ranker_config(spec)
    bank, _ = teachers.build_bank(task, [*train, *valid], spec.teacher, store)
    key = content_key({"ranker": cfg.model_dump(), "bank": bank.key, "format": rankers.FORMAT})
    out = store.dir("rankers", key)
    with store.lock("rankers", key):
        if not intact(out, "ranker"):
            chains = bank.chains()
            seed = cfg.seed if cfg.seed is not None else spec.seed
            pairs = rankers.ranker_pairs(train, chains, seed)
            held_out = rankers.ranker_pairs(valid, chains, seed)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            history: list[dict[str, Any]] = []
            log = lambda metrics, step: history.append({"step": step, **metrics})  # noqa: E731
            ranker = rankers.train_ranker(cfg, pairs, held_out, None, seed, log=log, device=device)
            with store.atomic_dir("rankers", key) as tmp:
                ranker.save(tmp)
                write_jsonl(tmp / RANKER_HISTORY, history)  # replayed into every run that uses it
    return key, out


def ranked(
    chains: list[Chain], examples: Sequence[Example], ranker: Any, ranker_key: str, pred_dir: Path, store: Store
) -> tuple[list[Chain], int]:
    """The chains with the ranker's score in meta["ranker_score"] (cached per predictions folder
    and ranker), and how many were too long for its encoder (they get their question's mean).
    `ranker()` gives the loaded ranker, called only when the scores are not cached."""
    from harness import ranker as rankers

    path = store.file("ranker_scores", content_key({"predictions": pred_dir.name, "ranker": ranker_key}), ".json")
    if path.exists():
        saved = json.loads(path.read_text())
        flags = saved["too_long"]
        out = [
            dataclasses.replace(c, meta={**c.meta, rankers.RANKER_SCORE: s, **({rankers.RANKER_TOO_LONG: True} if t else {})})
            for c, s, t in zip(chains, saved["scores"], flags, strict=True)
        ]
        return out, sum(flags)
    out, too_long = rankers.score_chains(ranker(), {e.id: e.question for e in examples}, chains)
    scores = [c.meta[rankers.RANKER_SCORE] for c in out]
    flags = [bool(c.meta.get(rankers.RANKER_TOO_LONG)) for c in out]
    atomic_write_text(path, json.dumps({"scores": scores, "too_long": flags}))
    return out, too_long


def student_source(spec: RunSpec, task: Task, train: Sequence[Example], bank: Sequence[Chain], bank_key: str, store: Store) -> str:
    """A hub id / local path as given, or the directory of a tiny model built from the task's text."""
    s = spec.student
    if s.model != "tiny":
        return s.model
    key = tiny_model_key(spec, task, bank_key)
    tiny = tiny_config(spec)
    out = store.dir("models", key)
    with store.lock("models", key):  # a concurrent worker waits, then reuses this model
        if not intact(out, "tiny model"):
            with store.atomic_dir("models", key) as tmp:
                build_tiny_model(s.family, corpus(task, train, [*(c.text for c in bank), *method_prefixes()]), tmp, tiny)
    return str(out)


def tiny_model_key(spec: RunSpec, task: Task, bank_key: str) -> str:
    """The store key of a cell's tiny student (built from the task's text and its bank's chains)."""
    return content_key({"family": spec.student.family, "tiny": tiny_config(spec).model_dump(), "build": TINY_BUILD, "task": task_key(task), "bank": bank_key})


def method_prefixes() -> list[str]:
    """Every registered method's default input prefixes (DSS's "predict: " and "explain: ", ...),
    added to a tiny model's tokenizer corpus: a prefix is then one token instead of one per letter
    (9 of DSS's 23-token predict input on arith), and the model stays the same whichever method a
    cell trains."""
    from methods import METHODS

    out: list[str] = []
    for m in METHODS.values():
        if dataclasses.is_dataclass(m.config):
            for f in dataclasses.fields(m.config):
                if f.name.endswith("_prefix") and isinstance(f.default, str) and f.default.strip() and f.default not in out:
                    out.append(f.default)
    return out


def _run_seeded(section: Any, spec: RunSpec) -> Any:
    """A settings section with `seed: null` resolved to the run's seed."""
    return section if section.seed is not None else section.model_copy(update={"seed": spec.seed})


def train_config(spec: RunSpec) -> TrainConfig:
    """The spec's training settings, its seed the run's unless `train.seed` sets one."""
    return _run_seeded(spec.train, spec)


def tiny_config(spec: RunSpec) -> TinyConfig:
    """The tiny student's sizes and initialisation seed (the run's seed unless the spec sets one)."""
    return _run_seeded(spec.student.tiny, spec)


def student_base(p: Prepared, model_ref: str, bank_key: str) -> dict[str, Any]:
    """What every model trained for a cell depends on besides its method: the student, the bank,
    the budget, the lengths, the LoRA, the seed and the task. Keys of checkpoints and of the
    stages methods share (TrainContext.cached) start from it."""
    s = p.spec
    return {
        # a tiny model by its content key (its folder name), not its path: the same cell in
        # another store (or a moved one) has the same keys
        "model": f"tiny:{Path(model_ref).name}" if s.student.model == "tiny" else model_ref,
        "bank": bank_key,
        "train": s.train.model_dump(),
        "lengths": [s.student.max_input_len, s.student.max_target_len],
        # only when set, so full fine-tuning keeps its keys (LoRA must never share them)
        **({"lora": s.student.lora.model_dump()} if s.student.lora is not None else {}),
        "seed": s.seed,
        "task": task_key(p.task),
    }


def student_key(p: Prepared, model_ref: str, bank_key: str) -> str:
    """The checkpoint's key: what it trains on and with, and what picks its best step (greedy
    decoding on valid with the cell's decode backend and max_new_tokens)."""
    base = student_base(p, model_ref, bank_key)
    select = {"backend": p.spec.decode.backend, "max_new_tokens": p.spec.decode.max_new_tokens}
    return content_key({**base, "method": p.method.name, "method_cfg": dataclasses.asdict(p.method_cfg), "select": select})


def dependency(p: Prepared, name: str) -> Prepared:
    """The cell that trains method `name` for `p` (MethodDef.stages): the same spec with the method
    replaced, its options the field `name` of p's method config (NCE's `nat:`)."""
    options = getattr(p.method_cfg, name, None) or {}
    return prepare(p.spec.model_copy(update={"method": MethodSpec(name=name, **options)}))


def build_in_work_dir(final: Path, build: Any, wait: bool) -> bool:
    """Build `final` in `.<name>.partial/` beside it, which survives a kill so a restarted build
    resumes there, under an exclusive lock (the kernel drops a killed holder's), then rename it
    into place in one step. `wait` False: fail at once when another process holds the lock.
    True when built here, False when another process finished it meanwhile."""
    import fcntl
    import os
    import shutil

    work = final.parent / f".{final.name}.partial"
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UserError(f"another process is building {final} ({work}); wait for it or stop it") from None
        if final.exists():  # built by the process that held the lock
            return False
        work.mkdir(parents=True, exist_ok=True)
        build(work)
        # the resume state (optimizer moments included) is not needed once the folder is done
        for name in ("last.pt", "last.pt.sha256", "log.jsonl"):
            (work / name).unlink(missing_ok=True)
        write_checksums(work)
        os.rename(work, final)
    shutil.rmtree(work, ignore_errors=True)
    return True


class _Prefixed:
    """A cell's log that files another model's training under `prefix` (NCE's NAT: `stage/nat/...`)."""

    def __init__(self, log: Any, prefix: str) -> None:
        self.log, self.prefix = log, prefix

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.log.metrics({f"{self.prefix}{k}": v for k, v in metrics.items()}, step)


def trained_checkpoint(
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
) -> tuple[Path, Student | None]:
    """The method's checkpoint folder, trained here when missing (then also the trained student).

    Training runs in a work folder next to the checkpoint, `checkpoints/.<key>.partial/`, that
    survives a kill: the loop saves its resumable state there (`last.pt`, harness/training.py)
    and a restarted cell continues from it. The folder becomes `checkpoints/<key>/` in one rename
    when training ends. The training log is kept next to the checkpoint and replayed into MLflow
    when reused (or resumed), so a resumed cell shows the same curves. The models the method
    builds on (MethodDef.stages) are trained (or reused) first, their logs under `stage/<name>/`.
    """
    key = student_key(p, model_ref, bank_key)
    ckpt = store.dir("checkpoints", key)
    args = (model_ref, train, valid, positives, negatives, bank_key, store)
    if intact(ckpt, "checkpoint") and (ckpt / "best").exists():
        for row in read_jsonl(ckpt / "history.jsonl"):
            step = row.pop("step")
            log.metrics(row, step)
        res = json.loads((ckpt / "result.json").read_text())
        log.metrics({"train/best_step": res["best_step"], "train/best_valid": res["best_valid"], "train/seconds": res["seconds"]})
        return ckpt, None
    models = {}
    for name in p.method.stages_of(p.method_cfg):
        dep = dependency(p, name)
        dep_ckpt, dep_student = trained_checkpoint(dep, *args, _Prefixed(log, f"stage/{name}/"), device, lengths, show_progress)
        del dep_student  # this method loads what it needs from the checkpoint
        models[name] = dep_ckpt / "best"
    base = student_base(p, model_ref, bank_key)

    def stage(kind: str, stage_key: dict[str, Any], build: Any) -> Path:
        final = store.dir("stages", f"{kind}-{content_key({**base, 'kind': kind, **stage_key})}")
        if not intact(final, "stage"):
            build_in_work_dir(final, build, wait=True)
        return final

    trained: list[Student] = []

    def build(work: Path) -> None:
        history: list[dict[str, Any]] = []

        def record(metrics: dict[str, float], step: int) -> None:
            history.append({"step": step, **metrics})
            log.metrics(metrics, step)

        res, student = train_method(p, model_ref, train, valid, positives, negatives, store, work, record, device, lengths,
                                    show_progress, models, stage)
        log.metrics({"train/best_step": res.best_step, "train/best_valid": res.best_valid, "train/seconds": res.seconds})
        write_jsonl(work / "history.jsonl", history)
        atomic_write_text(work / "result.json", json.dumps(dataclasses.asdict(res)))
        trained.append(student)

    # one trainer per checkpoint: a second process (a cell whose model builds on this one, in
    # another worker) waits for it, then reuses it
    if build_in_work_dir(ckpt, build, wait=True):
        return ckpt, trained[0]
    return trained_checkpoint(p, *args, log, device, lengths, show_progress)


def train_method(
    p: Prepared,
    model_ref: str,
    train: Sequence[Example],
    valid: Sequence[Example],
    positives: dict[str, list[Chain]],
    negatives: dict[str, list[Chain]],
    store: Store,
    work: Path,
    log: Callable[[dict[str, float], int], None],
    device: str,
    lengths: dict[str, int],
    show_progress: bool,
    models: dict[str, Path],
    stage: Any = None,
) -> tuple[TrainResult, Student]:
    """Train the cell's method in `work` (resumed there after a kill): the untrained student, the
    data the method declares (harness.training.declared), selection on valid. Returns the result
    and the trained student (a method may replace the one it was given: NAT). `stage` None builds
    shared stages inside `work` (the method contract's runs, harness/contract.py)."""
    ctx = TrainContext(
        student=Student.load(model_ref, device, lora=p.spec.student.lora, seed=p.spec.seed, **lengths),
        **declared(p.method.name, p.method.inputs, p.task, train, positives, negatives),
        config=train_config(p.spec),
        evaluate=lambda s: valid_accuracy(s, p, valid),
        out_dir=work,
        log=log,
        show_progress=show_progress,
        stage=stage,
        models=models,
        **(teacher_access(p, valid, store) if "teacher" in p.method.inputs else {}),
    )
    return p.method.train(ctx, p.method_cfg), ctx.student


def greedy_answers(student: Student, p: Prepared, examples: Sequence[Example]) -> list[str | None]:
    """The student's greedy answers with the method's test-time input and the cell's decode settings."""
    inputs = [p.method.test_input(p.task, ex, p.method_cfg) for ex in examples]
    gens = make_decoder(p.spec.decode.backend, student, p.spec.decode.batch_size).sample(inputs, dataclasses.replace(GREEDY, max_new_tokens=p.spec.decode.max_new_tokens))
    return [p.task.extract(g[0].text) for g in gens]


def valid_accuracy(student: Student, p: Prepared, valid: Sequence[Example]) -> float:
    """Greedy accuracy on the valid split: the model-selection signal (test is never used)."""
    ok = [p.task.equivalent(a, ex.answer) for a, ex in zip(greedy_answers(student, p, valid), valid, strict=True)]
    return sum(ok) / max(1, len(ok))


def held_out_questions(p: Prepared, valid: Sequence[Example]) -> list[str]:
    """Valid, test and out-of-distribution test questions: what generated training data must
    never duplicate (the only use of test questions before scoring)."""
    from harness.contamination_check import held_out

    return [q for questions in held_out(p.spec, valid).values() for _, q in questions]


def teacher_access(p: Prepared, valid: Sequence[Example], store: Store) -> dict[str, Any]:
    """TrainContext fields of a method that calls the teacher while training (inputs "teacher")."""
    from harness.bank import Bank
    from harness.contamination import HeldOut

    questions = held_out_questions(p, valid)
    return {
        "teacher": p.spec.teacher,
        "banks": lambda manifest: Bank.create(store, manifest),
        "held_out": lambda threshold: HeldOut(questions, threshold),
        "predict": lambda student, examples: greedy_answers(student, p, examples),
    }


def decode(student: Student, p: Prepared, examples: Sequence[Example], source: str = "student:untrained") -> list[Chain]:
    """The chains the schemes need: one greedy chain per example and/or K sampled ones."""
    d = p.spec.decode
    dec = make_decoder(d.backend, student, d.batch_size)
    inputs = [p.method.test_input(p.task, ex, p.method_cfg) for ex in examples]
    chains: list[Chain] = []
    if p.greedy:
        params = dataclasses.replace(GREEDY, max_new_tokens=d.max_new_tokens)
        chains += to_chains(examples, dec.sample(inputs, params), p.task, source, params)
    if p.sample_k:
        params = SamplingParams(n=p.sample_k, temperature=d.temperature, top_p=d.top_p, max_new_tokens=d.max_new_tokens, seed=d.seed)
        if d.early_stop:  # only the windows ESC needs are decoded
            window = next(s.early_stop_window for s in p.schemes if s.sampled)
            chains += sample_early_stopping(dec, examples, inputs, p.task, source, params, window)
        else:
            chains += to_chains(examples, dec.sample(inputs, params), p.task, source, params)
    return chains
