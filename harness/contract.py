"""The method contract: what every registered method must satisfy before a grid compares it.

A method is checked by training it, through the pipeline's own functions (harness/run.py
`train_method`: the same TrainContext, the same data guards), on the offline arith task with the
oracle teacher (half of its chains slipped, so there are positives and negatives) and tiny
students of both families. The clauses:

- trains: a few optimizer steps on tiny Llama and tiny T5, finite losses, weights that move;
- declares its inputs: reads only what MethodDef.inputs declares (a method that does not declare
  "gold" is handed train examples without answers, one that does not declare "positives" or
  "negatives" gets chains that refuse to be read: harness.training.declared);
- never reads test: loads no split but train while training (valid only through ctx.evaluate);
- reports data counts: logs `data/*` counts, at least `data/train_items` (TrainContext.fit does);
- deterministic: two runs with one seed give the same losses and the same weights, bit for bit;
- resumes: a run killed after a saved state and restarted ends with the same weights;
- reloads and decodes: the saved checkpoint loads the way the method loads it and decodes the
  same greedy text as the student training left in memory.

A report is cached by the source of the method's module (and of what it builds on and the
shared training code), so a grid checks a method once per version of its code
(`$DISTILLBENCH_CACHE`, default ~/.cache/distillbench). `grid` refuses a failing method with the
failing clause; `distillbench contract [METHOD...]` runs the check and prints it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1
FAMILIES = ("llama", "t5")
STEPS, EVAL_EVERY, KILL_AT = 4, 2, 3  # the killed run stops at step 3, after the state saved at step 2

CLAUSES: dict[str, str] = {
    "trains": "trains a few steps on tiny Llama and tiny T5 (finite losses, weights move)",
    "declares its inputs": "reads only what MethodDef.inputs declares (gold labels, positives, negatives)",
    "never reads test": "loads no split but train while training (valid only through ctx.evaluate)",
    "reports data counts": "logs data/* counts, at least data/train_items",
    "deterministic": "the same seed gives the same losses and weights",
    "resumes": "killed after a saved state and restarted, it ends with the same weights",
    "reloads and decodes": "its checkpoint reloads and decodes as the trained student does",
}


@dataclass
class Clause:
    name: str
    ok: bool | None  # None: not checked (an earlier clause failed)
    detail: str = ""


@dataclass
class Report:
    method: str
    key: str
    clauses: list[Clause] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.clauses)

    @property
    def failure(self) -> Clause | None:
        return next((c for c in self.clauses if c.ok is False), None) or next((c for c in self.clauses if c.ok is None), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return cls(d["method"], d["key"], [Clause(**c) for c in d["clauses"]], d.get("seconds", 0.0))


class _Killed(BaseException):
    """Stands for SIGKILL inside the process: a BaseException, so no method's `except Exception`
    can swallow it, and nothing after the kill point runs."""


# ------------------------------------------------------------------------------------ the key


def method_key(name: str) -> str:
    """What a cached report depends on: the method's module and those of the methods it builds
    on, the shared method helpers, the training loop, the student, the pipeline and this file."""
    import harness.run
    import harness.student
    import harness.training
    import methods.common
    from methods import get_method

    method = get_method(name)
    names = [name, *method.stages_of(method.config(**method.quick))]
    modules = {inspect.getmodule(get_method(n).train) for n in names}
    modules |= {methods.common, harness.training, harness.student, harness.run, inspect.getmodule(method_key)}
    h = hashlib.sha256(f"contract {VERSION}\n".encode())
    for module in sorted(modules, key=lambda m: m.__name__):
        h.update(module.__name__.encode() + b"\0" + Path(inspect.getfile(module)).read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("DISTILLBENCH_CACHE") or Path.home() / ".cache" / "distillbench") / "contracts"


# ------------------------------------------------------------------------------------ one run


@dataclass
class Setup:
    """The check's shared inputs, built once: arith, the oracle bank, a tiny student per family."""

    store: Any
    specs: dict[str, Any]  # family -> RunSpec
    data: dict[str, Any]  # family -> (prepared, model_ref, train, valid, positives, negatives)


def _spec(method: str, family: str) -> Any:
    from harness.config import RunSpec
    from methods import get_method

    return RunSpec.model_validate({
        "name": "contract",
        "task": {"name": "arith", "n_train": 24, "n_valid": 8, "n_test": 8, "seed": 0},
        "teacher": {"name": "oracle", "k": 2, "wrong_rate": 0.5},
        "student": {"model": "tiny", "family": family, "max_input_len": 64, "max_target_len": 48,
                    "tiny": {"d_model": 64, "n_heads": 2, "n_layers": 1, "d_ff": 128, "vocab_size": 320}},
        "method": {"name": method, **get_method(method).quick},
        "train": {"steps": STEPS, "batch_size": 4, "lr": 3e-3, "eval_every": EVAL_EVERY, "log_every": 1, "bf16": False},
        "decode": {"max_new_tokens": 8, "batch_size": 8},
        "eval": {"schemes": ["greedy"]},
    })


def _setup(method: str, work: Path) -> Setup:
    from collections import defaultdict

    from harness.run import prepare, student_source, teacher_bank
    from harness.store import Store

    store = Store(work / "store")
    specs, data = {}, {}
    for family in FAMILIES:
        spec = _spec(method, family)
        p = prepare(spec)
        train, valid = p.task.load("train"), p.task.load("valid")
        bank_key, bank = teacher_bank(p.task, train, valid, spec, store)
        positives, negatives = defaultdict(list), defaultdict(list)
        for c in bank:
            (positives if c.correct else negatives)[c.example_id].append(c)
        model_ref = student_source(spec, p.task, train, bank, bank_key, store)
        specs[family], data[family] = spec, (p, model_ref, train, valid, dict(positives), dict(negatives), bank_key)
    return Setup(store, specs, data)


@dataclass
class Run:
    losses: dict[int, float] = field(default_factory=dict)  # first train/loss logged at each step
    data: dict[str, float] = field(default_factory=dict)  # data/* counts
    weights: dict[str, str] = field(default_factory=dict)  # weight file -> sha256, of out/best
    final: dict[str, str] = field(default_factory=dict)  # the last step's trainable tensors -> sha256
    student: Any = None
    error: BaseException | None = None


def _weights(folder: Path) -> dict[str, str]:
    """sha256 of every weight file in `folder` (a checkpoint)."""
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.suffix in (".safetensors", ".bin", ".pt") and f.is_file()
    }


def _final(out: Path) -> dict[str, str]:
    """sha256 of the trainable tensors of every training state under `out` (the last step's
    weights: the checkpoint kept by valid selection may be an early one in a 4-step run)."""
    import torch

    digests = {}
    for state in sorted(out.rglob("last.pt")):
        saved = torch.load(state, map_location="cpu", weights_only=True)
        for name, tensor in sorted(saved.get("trainable", {}).items()):
            digests[f"{state.relative_to(out)}:{name}"] = hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()
    return digests


def _train(setup: Setup, family: str, out: Path, kill_at: int | None = None) -> Run:
    """One training of the method in `out` (resumed there when a killed run left its state)."""
    from harness.run import dependency, student_key, train_method, trained_checkpoint

    p, model_ref, train, valid, positives, negatives, bank_key = setup.data[family]
    run = Run()
    lengths = {"max_input_len": p.spec.student.max_input_len, "max_target_len": p.spec.student.max_target_len}

    def log(metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            if k.startswith("data/"):
                run.data[k] = v
        if "train/loss" in metrics:
            run.losses.setdefault(step, metrics["train/loss"])
            if kill_at is not None and step == kill_at:
                raise _Killed

    class Quiet:  # the models a method builds on train into the check's store, unlogged
        def metrics(self, metrics: dict[str, float], step: int = 0) -> None: ...

    models = {}
    for name in p.method.stages_of(p.method_cfg):
        dep = dependency(p, name)
        trained_checkpoint(dep, model_ref, train, valid, positives, negatives, bank_key, setup.store, Quiet(), "cpu", lengths, False)
        models[name] = setup.store.dir("checkpoints", student_key(dep, model_ref, bank_key)) / "best"
    try:
        _, run.student = train_method(p, model_ref, train, valid, positives, negatives, setup.store, out, log, "cpu",
                                      lengths, False, models, stage=None)
    except _Killed:
        raise
    except Exception as e:  # classified by the caller: an undeclared read, a test split, a crash
        run.error = e
        return run
    run.weights = _weights(out / "best") if (out / "best").is_dir() else {}
    run.final = _final(out)
    return run


# ------------------------------------------------------------------------------------ the check


def check(method: str, work: Path | None = None) -> Report:
    """Check one registered method against every clause (see the module docstring)."""
    from harness.training import UndeclaredInput

    start = time.perf_counter()
    report = Report(method, method_key(method))
    own = work is None
    work = Path(tempfile.mkdtemp(prefix=f"distillbench-contract-{method}-")) if work is None else Path(work)
    results: dict[str, Clause] = {}

    def put(name: str, ok: bool, detail: str = "") -> None:
        results.setdefault(name, Clause(name, ok, detail))

    try:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # bit-for-bit comparisons on one thread, whatever runs the check
        try:
            setup = _setup(method, work)
            first: dict[str, Run] = {}
            for family in FAMILIES:
                run = first[family] = _train(setup, family, work / family / "a")
                if run.error is not None:
                    e = run.error
                    message = f"{family}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]
                    if isinstance(e, UndeclaredInput) and "split" in str(e):
                        put("never reads test", False, message)
                    elif isinstance(e, UndeclaredInput):
                        put("declares its inputs", False, message)
                    else:
                        put("trains", False, message)
                    break
                bad = [s for s, v in run.losses.items() if not math.isfinite(v)]
                if not run.losses or bad:
                    put("trains", False, f"{family}: no train/loss logged" if not run.losses else f"{family}: loss {run.losses[bad[0]]} at step {bad[0]}")
                    break
                initial = _weights(Path(setup.data[family][1]))
                if run.weights and initial and set(run.weights.values()) == set(initial.values()):
                    put("trains", False, f"{family}: the saved weights are the untrained ones")
                    break
                if not run.weights:
                    put("trains", False, f"{family}: no weights in the checkpoint folder best/")
                    break
            if results:
                return _finish(report, results, start)
            put("trains", True, f"{len(first['llama'].losses)} steps on each family")
            put("declares its inputs", True)
            put("never reads test", True)
            counts = first["llama"].data
            if counts.get("data/train_items", 0) <= 0:
                put("reports data counts", False, "no data/train_items logged (train through ctx.fit, or log it)")
            else:
                put("reports data counts", True, ", ".join(f"{k.removeprefix('data/')} {v:g}" for k, v in sorted(counts.items())))

            again = _train(setup, "llama", work / "llama" / "b")
            a = first["llama"]
            if again.error is not None or again.losses != a.losses or (again.weights, again.final) != (a.weights, a.final):
                put("deterministic", False, f"{type(again.error).__name__} on the second run" if again.error is not None else
                    _difference(a, again, "a second run"))
            else:
                put("deterministic", True)

            out = work / "llama" / "c"
            try:
                _train(setup, "llama", out, kill_at=KILL_AT)
                killed = False
            except _Killed:
                killed = True
            if not killed:
                put("resumes", False, f"no train/loss logged at step {KILL_AT}: the kill point was never reached")
            else:
                resumed = _train(setup, "llama", out)
                if resumed.error is not None:
                    put("resumes", False, f"{type(resumed.error).__name__}: {resumed.error}"[:400])
                elif resumed.losses != a.losses or (resumed.weights, resumed.final) != (a.weights, a.final):
                    put("resumes", False, f"killed at step {KILL_AT} and restarted, it differs from an uninterrupted run: "
                        + _difference(a, resumed, "the restarted run"))
                else:
                    put("resumes", True, f"killed at step {KILL_AT}")

            put(*_reloads(setup, first["t5"], work / "t5" / "a"))
        finally:
            torch.set_num_threads(threads)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return _finish(report, results, start)


def _difference(a: Run, b: Run, which: str) -> str:
    step = next((s for s in sorted(a.losses) if b.losses.get(s) != a.losses[s]), None)
    if step is not None:
        return f"loss at step {step}: {a.losses[step]!r}, in {which} {b.losses.get(step)!r}"
    return f"the same losses, other weights in {which}"


def _reloads(setup: Setup, run: Run, out: Path) -> tuple[str, bool, str]:
    from harness.decoding import GREEDY, make_decoder
    from harness.student import Student

    p = setup.data["t5"][0]
    lengths = {"max_input_len": p.spec.student.max_input_len, "max_target_len": p.spec.student.max_target_len}
    try:
        reloaded = (p.method.load_student or Student.load)(out / "best", "cpu", **lengths)
    except Exception as e:
        return "reloads and decodes", False, f"t5: loading best/ failed: {type(e).__name__}: {e}"[:400]
    inputs = [p.method.test_input(p.task, ex, p.method_cfg) for ex in p.task.load("valid")[:4]]
    params = dataclasses.replace(GREEDY, max_new_tokens=8)
    texts = [[c.text for c in g] for g in make_decoder("hf", reloaded, 8).sample(inputs, params)]
    trained = [[c.text for c in g] for g in make_decoder("hf", run.student, 8).sample(inputs, params)]
    if texts != trained:
        return "reloads and decodes", False, f"t5: reloaded {texts[0]!r}, trained {trained[0]!r}"
    return "reloads and decodes", True, f"t5: {len(inputs)} inputs, the same greedy text"


def _finish(report: Report, results: dict[str, Clause], start: float) -> Report:
    report.clauses = [results.get(name) or Clause(name, None, "not checked: an earlier clause failed") for name in CLAUSES]
    report.seconds = time.perf_counter() - start
    return report


# ------------------------------------------------------------------------------------ cached


def known(method: str) -> Report | None:
    """The cached report of this version of the method's code, or None (nothing is checked)."""
    path = cache_dir() / f"{method}-{method_key(method)}.json"
    try:
        return Report.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached(method: str, progress: Callable[[str], None] | None = None, fresh: bool = False) -> Report:
    """The method's report for this version of its code: read from the cache, else checked now
    (under a lock, so two processes starting a grid check it once) and saved."""
    import fcntl

    from harness.store import atomic_write_text

    key = method_key(method)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{method}-{key}.json"
    with open(folder / f".{method}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not fresh and (report := known(method)) is not None:  # a damaged report is checked again
            return report
        if progress is not None:  # one line per method checked; the clauses take seconds
            progress(method)
        report = check(method)
        atomic_write_text(path, json.dumps(report.to_dict(), indent=1))
    return report


def require(methods: Iterable[str], progress: Callable[[str], None] | None = None) -> list[Report]:
    """Every method passes its contract (checked once per version of its code), else a UserError
    that names the method and its failing clause. Give the methods a grid's methods build on too."""
    from harness.errors import UserError

    reports = [cached(name, progress) for name in dict.fromkeys(methods)]
    for r in reports:
        if not r.ok:
            c = r.failure
            assert c is not None
            raise UserError(f"method {r.method!r} fails its contract, clause {c.name!r} ({CLAUSES[c.name]}): {c.detail} "
                            f"(distillbench contract {r.method})")
    return reports
