"""`distillbench grid SPEC --dry-run`: every cell with its data, teacher, student weights and an
estimated cost, without downloading or training anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.config import RunSpec
from harness.errors import UserError
from harness.run import prepare

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
        from harness.models import tiny_hf_config
        from harness.run import tiny_config

        tiny = tiny_config(spec)
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
    from methods import get_method, make_config

    method = get_method(spec.method.name)
    cfg = make_config(method, spec.method.options)
    passes = method.passes_of(cfg)  # sequences scored per example (dss/mi: 2)
    tokens = steps * t.batch_size * t.grad_accum * (spec.student.max_input_len + spec.student.max_target_len) * passes
    # a method that trains in stages (NAT) pays the budget once per stage; the models it builds on
    # (NCE's NAT) are counted in their own cells
    fits = 1 + sum(line.startswith("stage ") for line in method.plan_of(cfg)[1:])
    return 6 * params * tokens * fits / ASSUMED_FLOPS / 3600, steps


def fmt_params(n: float | None) -> str:
    if n is None:
        return "? params"
    return f"{n / 1e9:.2f}B params" if n >= 1e9 else f"{n / 1e6:.1f}M params"


def contract_state(method: str) -> str:
    """What the dry run says of a method's contract (harness/contract.py): its cached verdict or
    that the grid will check it."""
    from harness.contract import known

    report = known(method)
    if report is None:
        return "not checked yet (the grid checks them before any work, seconds each)"
    failure = report.failure
    return "pass" if report.ok else f"FAIL clause {failure.name!r} ({failure.detail})" if failure else "FAIL"


def dry_run(cells: Sequence[tuple[str, RunSpec]], out: Console) -> None:
    """List every cell with its data, student weights and estimated cost; download nothing."""
    missing = missing_weights = 0
    total_hours, unknown_cost = 0.0, 0
    checked: dict[str, object] = {}
    methods: dict[str, None] = {}  # the grid's methods and those they build on, in order
    for cell, s in cells:
        p = prepare(s)
        methods.update(dict.fromkeys((*p.method.stages_of(p.method_cfg), p.method.name)))
        counts, errors = [], {}
        for split in ("train", "valid", "test"):
            try:  # loading is what fails first on a real task: a missing or malformed data file
                counts.append(len(p.task.load(split)))
            except UserError as e:
                counts.append(None)
                errors.setdefault(str(e), []).append(split)
        if all(c is None for c in counts) and len(errors) == 1:
            data = f"MISSING: {next(iter(errors))}"
        else:
            data = "/".join("-" if c is None else str(c) for c in counts) + " train/valid/test"
            if n_bad := len(p.task.skipped()):
                data += f", {n_bad} bad rows skipped"
            data += "".join(f"; MISSING {'/'.join(splits)}: {msg}" for msg, splits in errors.items())
        missing += bool(errors)
        key = s.student.model if s.student.model != "tiny" else f"tiny/{s.student.family}/{s.student.tiny}"
        if key not in checked:  # one look at the HF cache per student, not per cell
            checked[key] = check_student(s)
        st = checked[key]
        missing_weights += st.missing
        hours, steps = estimate_gpu_hours(s, st.params, counts[0])
        if hours is None:
            unknown_cost += 1
            cost = "cost unknown"
        else:
            total_hours += hours
            cost = f"~{hours:.2f} GPU-h est."
        budget = f"steps={steps}" if s.train.steps is not None else f"epochs={s.train.epochs:g} ({steps or '?'} steps)"
        lora = f" lora(r={s.student.lora.r})" if s.student.lora is not None else ""
        opts = ",".join(f"{k}={v}" for k, v in s.task.options.items() if k not in ("data_dir", "skip_bad"))
        t = s.teacher
        model = f":{t.model}" if t.model else ""
        sampling = f", T={t.temperature:g}" if t.name in ("hf", "vllm", "openai") else ""
        noise = f", noise={t.noise.rate:g}/{t.noise.swap}" if t.noise is not None else ""
        slips = f", wrong_rate={t.wrong_rate:g}" if t.name == "oracle" and t.wrong_rate else ""
        teacher = f"{t.name}{model}(k={t.k}{sampling}{slips}, label={t.label}{noise})"
        method_opts = ",".join(f"{k}={v}" for k, v in s.method.options.items())
        out.print(
            f"{cell}: task={s.task.name}{'[' + opts + ']' if opts else ''} ({data}) teacher={teacher} "
            f"method={s.method.name}{'[' + method_opts + ']' if method_opts else ''} "
            f"student={s.student.model}/{s.student.family}{lora} "
            f"[weights {st.weights}; {fmt_params(st.params)} from {st.params_from}] {budget} batch={s.train.batch_size}x{s.train.grad_accum} "
            f"lr={s.train.lr:g} bf16={s.train.bf16} loss={s.train.loss_reduction} "
            f"{cost} schemes={','.join(s.eval.schemes)}",
            markup=False,
        )
        if s.eval.test_sets:  # out-of-distribution test sets: their test split must be there too
            from tasks import get_task

            sets = []
            for t in s.eval.test_sets:
                try:
                    sets.append(f"{t.name}({len(get_task(t.name, **t.options).load('test'))})")
                except UserError as e:
                    missing += 1
                    sets.append(f"{t.name}(MISSING: {e})")
            out.print(f"    out-of-distribution test sets: {', '.join(sets)}", markup=False)
        if s.ranker is not None:
            r = s.ranker
            out.print(f"    ranker: {r.encoder}, {r.steps} steps x {r.batch_size} pairs, lr {r.lr:g} (trained once per bank, shared)", markup=False)
        plan = p.method.plan_of(p.method_cfg)
        for i, line in enumerate(plan, 1):
            out.print(f"    {s.method.name} {i}/{len(plan)}: {line}", markup=False)
        if p.method.teacher_calls is not None:  # a method that calls the teacher while training (FDD)
            out.print(f"    {s.method.name}: {p.method.teacher_calls(p.method_cfg, counts[0] or 0)}", markup=False)
    states: dict[str, list[str]] = {}
    for m in methods:
        states.setdefault(contract_state(m), []).append(m)
    out.print("method contracts: " + "; ".join(f"{state}: {', '.join(ms)}" for state, ms in states.items()), markup=False)
    notes = [f"{missing} with missing data"] if missing else []
    if missing_weights:
        notes.append(f"{missing_weights} with missing weights")
    out.print(f"{len(cells)} cells" + (", " + ", ".join(notes) if notes else ""))
    out.print(
        f"estimated training cost: ~{total_hours:.1f} GPU-hours in all"
        + (f" ({unknown_cost} cells unknown)" if unknown_cost else "")
        + f" — an estimate: 6 x parameters x tokens, tokens = steps x batch x (max_input_len + max_target_len)"
        f" x passes (2 for predict+explain methods), at {ASSUMED_FLOPS / 1e12:.0f} TFLOP/s (30% of an A100's bf16 peak);"
        " evaluation and decoding not counted",
        markup=False,
    )
