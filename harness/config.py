"""Run and grid specs: YAML files validated on load, with `key=value` overrides.

A run spec describes one grid cell: task, teacher, student, method, training, decoding and
evaluation. A grid spec is a `base` run spec plus `grid:` axes (dotted keys -> lists of values);
its cells are the cartesian product of the axes applied to the base.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer

from harness.errors import UserError, check_name, did_you_mean
from harness.settings import RankerConfig, TinyConfig, TrainConfig


class Strict(BaseModel):
    # no inf / nan: `lr: .inf` would validate and train into NaN hours later
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Open(BaseModel):
    """A section whose extra keys are validated by what it names (a task's or method's options)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TaskSpec(Open):
    """`name` plus the task's options, e.g. {name: arith, n_train: 2000} or {name: gsm8k, data_dir: ...}."""


class MethodSpec(Open):
    """`name` plus fields of the method's config dataclass, e.g. {name: dss, alpha: 0.5}."""


class NoiseSpec(Strict):
    """Teacher noise on any bank (harness/noise.py; README: Teacher-noise curves): per example, a
    share `rate` of its positives replaced by its own negatives (`own`) or by negatives of other
    examples (`other`), drawn with `seed`. Derived from the generated bank, never regenerated."""

    rate: float = Field(ge=0.0, le=1.0)
    swap: Literal["own", "other"] = "own"
    seed: int = 0


class TeacherSpec(Strict):
    name: str = "oracle"  # oracle | gold | hf | vllm | openai | dss | tdg (harness/teacher.py BACKENDS)
    k: int = Field(1, ge=1, le=1024)  # chains per example
    wrong_rate: float = Field(0.0, ge=0.0, le=1.0)  # oracle only: share of slipped chains
    seed: int = 0
    model: str | None = None  # hf/vllm: a local model folder or a hub id; openai: the served name
    lora: str | None = None  # vllm: a LoRA adapter folder on top of `model`
    data_dir: str | None = None  # dss/tdg: the data root holding the release (default: the task's)
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, le=131_072)
    label: Literal["gold", "majority"] = "gold"  # majority: label-free, QCRD §3.2.1
    chunk_size: int = Field(64, ge=1)  # examples per resumable unit of a bank build
    batch_size: int = Field(64, ge=1)  # sequences per generate call (hf)
    # openai: harness.backends.openai.OpenAIConfig fields (base_url, api_key_env, api,
    # max_concurrency, timeout_s, max_retries, ...); `model` above names the served model.
    # Only the NAME of the key's environment variable is ever in a spec.
    openai: dict[str, Any] = Field(default_factory=dict)
    # wrong chains swapped in for a share of the bank's positives, e.g. {rate: 0.3, swap: other}
    noise: NoiseSpec | None = None

    @model_serializer(mode="wrap")
    def _unset_noise_unwritten(self, handler: Any) -> dict[str, Any]:
        # no `noise: null` in dumps: the bank keys, cell hashes and params of every spec that
        # does not set it stay what they were before the field existed
        d = handler(self)
        if isinstance(d, dict) and "noise" in d and d["noise"] is None:
            del d["noise"]
        return d


# `student.tiny:` is the tiny model builder's own config (harness/settings.py)
TinySpec = TinyConfig


class LoraSpec(Strict):
    """LoRA through peft: only the adapter trains; absent (`lora: null`) means full fine-tuning."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    # None: the family's default (harness.student.LORA_TARGETS: t5 q,v; llama q_proj,v_proj)
    target_modules: list[str] | None = None


class StudentSpec(Strict):
    model: str = "tiny"  # "tiny" (built offline from the task's text), a hub id or a local path
    family: Literal["t5", "llama"] = "t5"  # used for "tiny"; a real model's family is read from its config
    tiny: TinySpec = TinySpec()
    max_input_len: int = Field(256, ge=1, le=1_048_576)
    max_target_len: int = Field(128, ge=1, le=1_048_576)
    lora: LoraSpec | None = None  # e.g. {r: 8, alpha: 16, dropout: 0.05, target_modules: [q_proj, v_proj]}


# The `train:` section is the training loop's own config (one definition of every setting and
# default); `train.seed: null` means the run's seed.
TrainSpec = TrainConfig


class DecodeSpec(Strict):
    backend: Literal["hf", "vllm"] = "hf"  # vllm: causal students (T5 falls back to hf, with a warning)
    temperature: float = Field(0.7, gt=0)  # for sampled schemes; greedy always uses T=0
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(32, ge=1, le=131_072)
    batch_size: int = Field(256, ge=1, le=65_536)  # sequences per generate call
    seed: int = 0
    # sampled chains per test example (--k); 0: the largest k among the schemes (majority@8 -> 8)
    k: int = Field(0, ge=0, le=1024)
    # early-stopping self-consistency while decoding: sample in windows of the esc scheme's size
    # and stop an example at its first unanimous window (every sampled scheme must be esc[:w])
    early_stop: bool = False


class EvalSpec(Strict):
    # "name[:arg][@k]": greedy, majority, weighted, asc[:flag], esc[:window] (harness/aggregate.py)
    schemes: list[str] = ["greedy"]
    untrained: bool = True  # also score the student before training
    bootstrap: int = Field(2000, ge=100, le=100_000)  # resamples for the 95% intervals
    curves: bool = True  # pass@k and scheme@k for k = 1..K (harness/curves.py)
    subsamples: int = Field(200, ge=1, le=100_000)  # random orders per example for the scheme@k curves
    # out-of-distribution test sets: other tasks whose test split the trained student is also
    # decoded and scored on (never selected on), logged as ood/<task>/... e.g. TDG's GSM8K,
    # ASDiv, MultiArith and SVAMP for a MATH-trained student
    test_sets: list[TaskSpec] = []

    @field_validator("schemes")
    @classmethod
    def _schemes(cls, v: list[str]) -> list[str]:
        from harness.aggregate import parse_scheme

        for s in v:
            parse_scheme(s)
        if not v:
            raise ValueError("at least one scheme")
        return v


class Resources(Strict):
    """What one cell needs from the machine that runs it (the `ray` executor schedules by it)."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class ContaminationSpec(Strict):
    """A grid spec's `contamination:` section (harness/contamination_check.py): `strict: true`
    refuses a grid whose training data duplicates a test question, as `--strict` does."""

    strict: bool = False


class ExecutorSpec(Strict):
    """A grid spec's `executor:` section (harness/executors.py); `--executor`, `--workers` and
    `--ray-address` on the command line override it."""

    name: str = "local"  # local (processes on this machine), ray, or sequential (in this process)
    workers: int = Field(1, ge=1)  # local: cells at once; ray: CPUs of a local Ray instance
    threads: int | None = Field(None, ge=1)  # torch threads per cell; None: cpu_count // workers (local)
    ray_address: str | None = None  # an existing Ray cluster; None: a local instance on 127.0.0.1
    # per method (or `default`): what a cell needs, unless its run spec's `resources:` says
    resources: dict[str, Resources] = {}


def _check_name(v: str) -> str:
    try:
        return check_name(v)
    except UserError as e:
        raise ValueError(str(e).split(": ", 1)[1]) from None


class RunSpec(Strict):
    name: str = "run"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _check_name(v)
    task: TaskSpec
    method: MethodSpec
    teacher: TeacherSpec = TeacherSpec()
    student: StudentSpec = StudentSpec()
    train: TrainSpec = TrainSpec()
    decode: DecodeSpec = DecodeSpec()
    eval: EvalSpec = EvalSpec()
    # the ASC ranker (harness/ranker.py): trained once per teacher bank on its (question, right
    # chain, wrong chain) pairs, then it scores every decoded chain (what asc:1..3 weight votes by)
    ranker: RankerConfig | None = None
    seed: int = 0
    # what the cell needs to run (CPUs, GPUs): where it runs, not what it computes, so it is not
    # part of the cell's hash
    resources: Resources | None = None

    def flat(self) -> dict[str, Any]:
        return flatten(self.model_dump(mode="json", exclude={"resources"}))


class GridSpec(Strict):
    name: str

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _check_name(v)
    base: dict[str, Any]
    grid: dict[str, list[Any]] = {}
    executor: ExecutorSpec = ExecutorSpec()
    contamination: ContaminationSpec = ContaminationSpec()

    def cells(self) -> list[tuple[str, RunSpec]]:
        """(cell name, validated run spec) for every point of the grid."""
        axes = list(self.grid.items())
        labels = [value_labels(v) for _, v in axes]
        out = []
        for index in itertools.product(*(range(len(v)) for _, v in axes)):
            data = {**self.base, "name": self.name}
            parts = []
            for (k, values), names, i in zip(axes, labels, index, strict=True):
                data = set_dotted(data, k, values[i])
                parts.append(f"{axis_label(k)}={names[i]}")
            cell = ",".join(parts) or self.name
            out.append((cell, validate(RunSpec, data, where=f"cell {cell}")))
        return out


def value_labels(values: list[Any]) -> list[str]:
    """How each value of an axis names its cells. A whole section (task: [{name: svamp, ...}]) is
    labelled by its name; sections sharing a name (an ablation: method: [{name: qcrd}, {name:
    qcrd, k: 0}]) also by their other options, `qcrd[k=0]`, so that every cell name differs."""
    names = [v["name"] if isinstance(v, dict) and "name" in v else v for v in values]
    out = []
    for v, name in zip(values, names, strict=True):
        if isinstance(v, dict) and names.count(name) > 1 and len(v) > 1:
            opts = ",".join(f"{k}={json.dumps(x, separators=(',', ':')) if isinstance(x, (dict, list)) else x}" for k, x in v.items() if k != "name")
            name = f"{name}[{opts}]"
        out.append(str(name))
    return out


def axis_label(key: str) -> str:
    """Short column name for a grid axis: 'method.name' -> 'method', 'student.family' -> 'family';
    in a nested section with its section, 'teacher.noise.rate' -> 'noise.rate' ('rate' alone
    would not say which)."""
    head, _, last = key.rpartition(".")
    if last == "name" and head:
        return head.rpartition(".")[2]
    return f"{head.rpartition('.')[2]}.{last}" if "." in head else last


# ---------------------------------------------------------------------------- helpers


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def set_dotted(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with data[a][b][c] = value for key "a.b.c"."""
    head, _, rest = key.partition(".")
    new = dict(data)
    if rest:
        sub = new.get(head)
        if sub is not None and not isinstance(sub, dict):
            raise UserError(f"cannot set {key!r}: {head!r} is not a section")
        new[head] = set_dotted(sub or {}, rest, value)
    else:
        new[head] = value
    return new


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=5' -> ('train.steps', 5); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"bad override {text!r}: expected key=value, e.g. train.steps=100")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str) and _NUMBER.match(parsed):
        parsed = float(parsed)  # YAML 1.1 reads "3e-4" (no dot) as a string; lr=3e-4 means a number
    return key.strip(), parsed


def _check_keys(data: Any, model: type[BaseModel], prefix: str = "") -> None:
    """Unknown keys -> one-line UserError with did-you-mean (pydantic's message is a paragraph)."""
    if not isinstance(data, dict) or model.model_config.get("extra") == "allow":
        return
    fields = model.model_fields
    for k, v in data.items():
        if k not in fields:
            raise UserError(f"unknown spec key {prefix + str(k)!r}{did_you_mean(str(k), fields, prefix)}")
        ann = fields[k].annotation
        # an optional section (`lora: LoraSpec | None`) is checked like a plain one
        ann = next((a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)), ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _check_keys(v, ann, f"{prefix}{k}.")


def validate(model: type[BaseModel], data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of spec keys, got {type(data).__name__}")
    _check_keys(data, model)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{where}: {loc}: {err['msg']}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"spec file {str(p)!r} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise UserError(f"{p}: line {line}: not UTF-8 text (byte {e.object[e.start]:#04x})") from None
    except OSError as e:
        raise UserError(f"spec file {str(p)!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        what = str(getattr(e, "problem", None) or e).strip().splitlines()[0]  # one line, whatever the error
        raise UserError(f"{p}:{where} invalid YAML: {what}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for o in overrides:
        k, v = parse_override(o)
        data = set_dotted(data, k, v)
    return data


def load_run(path: str | Path, overrides: Sequence[str] = ()) -> RunSpec:
    return validate(RunSpec, apply_overrides(load_yaml(path), list(overrides)), where=str(path))


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> GridSpec:
    """Overrides apply to the base (`train.steps=5`) or replace an axis (`grid.method.name=[dss]`)."""
    data = load_yaml(path)
    _check_keys(data, GridSpec)
    for section in ("base", "grid"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise UserError(f"{path}: `{section}:` must be a mapping (key: value lines), not {type(data[section]).__name__}")
    data = {**data, "base": dict(data.get("base") or {}), "grid": dict(data.get("grid") or {})}
    for o in overrides:
        k, v = parse_override(o)
        if k.startswith("grid."):
            axis = k[len("grid.") :]
            data["grid"][axis] = v if isinstance(v, list) else [v]
        else:
            data["base"] = set_dotted(data["base"], k, v)
    grid = validate(GridSpec, data, where=str(path))
    # validate base keys once so a typo is reported against the base, not a cell
    _check_keys(grid.base, RunSpec)
    for axis in grid.grid:
        _check_keys(set_dotted({}, axis, None), RunSpec)
    return grid


def with_data(spec: RunSpec, data_dir: str | None = None, skip_bad: bool = False) -> RunSpec:
    """The spec with the CLI's --data-dir / --skip-bad applied to its task and to its
    out-of-distribution test sets (eval.test_sets).

    --data-dir fills `data_dir` only for tasks that read files and whose spec names no data
    source of its own (data_dir or hf_dataset); --skip-bad sets `skip_bad` on such tasks.
    """
    task = _task_with_data(spec.task, data_dir, skip_bad)
    sets = [_task_with_data(t, data_dir, skip_bad) for t in spec.eval.test_sets]
    if task is spec.task and all(a is b for a, b in zip(sets, spec.eval.test_sets, strict=True)):
        return spec
    return spec.model_copy(update={"task": task, "eval": spec.eval.model_copy(update={"test_sets": sets})})


def _task_with_data(spec: TaskSpec, data_dir: str | None, skip_bad: bool) -> TaskSpec:
    from tasks import task_options

    known = task_options(spec.name)
    opts = spec.options
    if data_dir and "data_dir" in known and opts.get("data_dir") is None and opts.get("hf_dataset") is None:
        opts["data_dir"] = str(data_dir)
    if skip_bad and "skip_bad" in known:
        opts["skip_bad"] = True
    return spec if opts == spec.options else TaskSpec(name=spec.name, **opts)
