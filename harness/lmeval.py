"""Our tasks as lm-evaluation-harness tasks, and our students evaluated by lm-eval with parity.

`export(...)` writes, per task, an lm-eval task YAML (greedy, `generate_until`) and its
self-consistency variant (`repeats: k`, sampled, voted by our equivalence-grouped majority),
a group YAML per family (`distillbench_math`, `distillbench_arith`, `distillbench_nli`, ...)
and a `utils.py` that imports the functions below. lm-eval runs them with
`lm_eval --include_path DIR --tasks distillbench_math500_greedy`; the documents come from our own
loaders (the files a task is configured with, or its hub id), the text is the student input
(or the task's few-shot teacher prompt), and scoring is the task's own extract + equivalent,
so an accuracy there is the same computation as here.

`evaluate_folder(...)` runs lm-eval's Python API on a trained student (a full model, or base +
LoRA adapter through lm-eval's `peft=`) and `compare(...)` checks its per-example verdicts and
texts against our saved greedy chains (`distillbench eval-lm-eval RUN_ID` does both for a run
and logs them to it).
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from harness.student import CAUSAL_SEP  # what a causal student's generation continues from

# lm-eval groups: a task lands in the group of its family (a new task may set `lmeval_group`)
GROUPS = {
    "math": ("math", "math500"),
    "arith": ("arith", "gsm_symbolic", "gsm8k", "multiarith", "addsub", "singleeq", "svamp", "asdiv", "asdiv_a"),
    "nli": ("anli", "esnli"),
    "commonsense": ("csqa",),
}
PROMPTS = ("student", "teacher")
FAMILIES = ("causal", "seq2seq")
UTILS = '''"""lm-eval glue written by `distillbench export lm-eval`: every function is distillbench's own."""

from harness.lmeval import doc_to_text, load_docs, majority_filter, process_results, process_voted  # noqa: F401
'''


def group_of(name: str, task: Any = None) -> str:
    """The family group of a task: distillbench_<family>."""
    own = getattr(task, "lmeval_group", None)
    if own:
        return f"distillbench_{own}"
    for family, names in GROUPS.items():
        if name in names:
            return f"distillbench_{family}"
    return "distillbench_other"


def task_name(name: str, sc: bool = False) -> str:
    """distillbench_<task>_greedy / _sc (the groups take distillbench_<family>)."""
    return f"distillbench_{name}_" + ("sc" if sc else "greedy")


# --- what lm-eval calls (through the exported utils.py) -------------------------------------------


@functools.lru_cache(maxsize=32)
def _task(spec: str) -> Any:
    from tasks import get_task

    d = json.loads(spec)
    return get_task(d["name"], **d["options"])


def load_docs(task: str = "", options: str = "{}", prompt: str = "student", family: str = "causal",
              limit: int | None = None, tokenizer: str | None = None, max_input_len: int | None = None,
              **_: Any) -> dict[str, Any]:
    """The task's test split as lm-eval documents: id, input (the text the model continues), answer
    and the task spec (so the scoring functions find the task again).

    With `tokenizer` and `max_input_len` (what `eval-lm-eval` passes), an input longer than the
    student reads is cut as our decoder cuts it (its first max_input_len tokens, special tokens
    included): lm-eval would keep its end instead."""
    import datasets

    spec = json.dumps({"name": task, "options": json.loads(options)}, sort_keys=True)
    t = _task(spec)
    examples = t.load("test")[: limit or None]
    cut = _truncator(tokenizer, max_input_len)
    rows = [{"id": ex.id, "input": cut(input_text(t, ex, prompt, family)), "answer": ex.answer, "task_spec": spec}
            for ex in examples]
    return {"test": datasets.Dataset.from_list(rows)}


def _truncator(tokenizer: str | None, max_input_len: int | None) -> Any:
    if not tokenizer or not max_input_len:
        return lambda text: text
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)

    def cut(text: str) -> str:
        full = tok(text)["input_ids"]
        if len(full) <= max_input_len:
            return text
        kept = tok(text, truncation=True, max_length=max_input_len)["input_ids"]
        return tok.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    return cut


def input_text(task: Any, example: Any, prompt: str, family: str) -> str:
    """What generation continues from: the student input (a causal student's ends in CAUSAL_SEP, as
    harness.student.Student.prompt_text makes it), or the task's few-shot teacher prompt."""
    if prompt == "teacher":
        return task.prompt(example)
    text = task.student_input(example)
    return text + CAUSAL_SEP if family == "causal" else text


def doc_to_text(doc: dict[str, Any]) -> str:
    return doc["input"]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Greedy: the task's extract + equivalent on the generated text."""
    t = _task(doc["task_spec"])
    return {"acc": float(bool(t.equivalent(t.extract(results[0]), doc["answer"])))}


def process_voted(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Self-consistency: `majority_filter` already voted; results[0] is the winning answer."""
    t = _task(doc["task_spec"])
    answer = results[0] if results and results[0] else None
    return {"acc": float(bool(t.equivalent(answer, doc["answer"])))}


def majority_filter(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[str]]:
    """Our `majority` scheme over each document's samples: answers grouped by the task's
    equivalence, unparsable ones never voting, ties broken as harness.aggregate breaks them."""
    from harness.aggregate import decide, parse_scheme
    from harness.types import Chain

    scheme = parse_scheme("majority")
    out = []
    for samples, doc in zip(resps, docs, strict=True):
        t = _task(doc["task_spec"])
        chains = [Chain(doc["id"], "lm-eval", s, t.extract(s), meta={"temperature": 1.0, "sample": j})
                  for j, s in enumerate(samples)]
        answer = decide(scheme, chains, t.canonical, t.equivalent, doc["id"]).answer
        out.append([answer or ""])
    return out


# --- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSettings:
    """How the exported tasks generate (ours: greedy, `decode.max_new_tokens`, EOS as the stop)."""

    prompt: str = "student"
    family: str = "causal"
    max_new_tokens: int = 256
    k: int = 8  # samples of the self-consistency variant
    temperature: float = 0.7
    top_p: float = 1.0
    limit: int | None = None  # test examples per task (None: all)
    tokenizer: str | None = None  # with max_input_len: cut long inputs as our decoder does
    max_input_len: int | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # task name -> options

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise UserError(f"--prompt: one of {list(PROMPTS)}, got {self.prompt!r}")
        if self.family not in FAMILIES:
            raise UserError(f"--family: one of {list(FAMILIES)}, got {self.family!r}")
        if self.max_new_tokens < 1 or self.k < 1:
            raise UserError("--max-new-tokens and --k must be at least 1")


def _function(name: str) -> Any:
    return _Function(f"utils.{name}")


class _Function(str):
    """A YAML `!function` tag (lm-eval's loader resolves it relative to the YAML file)."""


yaml.SafeDumper.add_representer(_Function, lambda d, v: d.represent_scalar("!function", str(v)))


def task_config(name: str, task: Any, s: ExportSettings, sc: bool = False) -> dict[str, Any]:
    """One lm-eval task config (a YAML dict) for a task of ours."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("distillbench")
    except PackageNotFoundError:  # pragma: no cover - a checkout without install
        ours = "unknown"
    gen: dict[str, Any] = {"until": [], "max_gen_toks": s.max_new_tokens}
    if sc:
        gen.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0)
    else:
        gen.update(do_sample=False, temperature=0.0)
    config: dict[str, Any] = {
        "task": task_name(name, sc),
        "custom_dataset": _function("load_docs"),
        "dataset_kwargs": {"task": name, "options": json.dumps(s.options.get(name, {}), sort_keys=True),
                           "prompt": s.prompt, "family": s.family, "limit": s.limit,
                           **({"tokenizer": s.tokenizer, "max_input_len": s.max_input_len} if s.tokenizer else {})},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": _function("doc_to_text"),
        "doc_to_target": "answer",
        "target_delimiter": "",
        "fewshot_delimiter": "",
        "num_fewshot": 0,
        "generation_kwargs": gen,
        "process_results": _function("process_voted" if sc else "process_results"),
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": float(task.version) if str(task.version).replace(".", "", 1).isdigit() else 0.0,
                     "task_version": str(task.version), "prompt_version": str(task.prompt_version),
                     "distillbench": ours},  # (lm-eval passes metadata to load_docs too: no name clashes)
    }
    if sc:
        config["repeats"] = s.k
        config["filter_list"] = [{"name": f"maj@{s.k}", "filter": [
            {"function": "custom", "filter_fn": _function("majority_filter")}]}]
    return config


def export(out: str | Path, names: list[str] | None = None, settings: ExportSettings | None = None) -> list[str]:
    """Write the lm-eval tasks of `names` (default: every registered task) to `out`, with a group per
    family and one per family's self-consistency variants (`distillbench_math_majority`). Returns the
    task names. Nothing is loaded here: lm-eval reads a task's documents when it runs it."""
    from tasks import TASKS, get_task

    s = settings or ExportSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "utils.py").write_text(UTILS, encoding="utf-8")
    exported: list[str] = []
    groups: dict[str, list[str]] = {}
    for name in names or list(TASKS):
        task = get_task(name, **s.options.get(name, {}))
        for sc in (False, True):
            config = task_config(name, task, s, sc)
            path = out / f"{config['task']}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
            groups.setdefault(group_of(name, task) + ("_majority" if sc else ""), []).append(config["task"])
            exported.append(config["task"])
    for group, members in groups.items():
        doc = {"group": group, "task": members,
               "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}],
               "metadata": {"version": 1.0}}
        (out / f"{group}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return exported


def task_manager(include_path: str | Path) -> Any:
    """lm-eval's TaskManager over the exported folder only (not its ~10k built-in tasks)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(include_path), include_defaults=False)


# --- evaluating a run's student through lm-eval --------------------------------------------------


@dataclass
class Parity:
    """Our greedy verdicts vs lm-eval's on the same examples."""

    n: int
    same_verdict: int
    same_text: int
    ours_acc: float
    lmeval_acc: float
    differ: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.same_verdict == self.n


def compare(ours: dict[str, tuple[str, bool]], samples: list[dict[str, Any]]) -> Parity:
    """Parity of per-example verdicts (and texts) between our greedy chains and lm-eval's samples.

    ours: example id -> (greedy text, correct); samples: lm-eval's logged samples (doc, resps, acc).
    """
    differ = []
    same_verdict = same_text = 0
    lm_right = 0
    for row in samples:
        ex_id = row["doc"]["id"]
        text = row["resps"][0][0] if row.get("resps") else ""
        right = bool(row["acc"])
        lm_right += right
        if ex_id not in ours:
            differ.append({"id": ex_id, "why": "not in the run's predictions"})
            continue
        our_text, our_right = ours[ex_id]
        same_verdict += our_right == right
        same_text += our_text.strip() == text.strip()
        if our_right != right or our_text.strip() != text.strip():
            differ.append({"id": ex_id, "ours": our_text, "lm_eval": text, "ours_correct": our_right,
                           "lm_eval_correct": right})
    n = len(samples)
    ours_acc = sum(ours[r["doc"]["id"]][1] for r in samples if r["doc"]["id"] in ours) / max(n, 1)
    return Parity(n, same_verdict, same_text, ours_acc, lm_right / max(n, 1), differ)


def run_lm_eval(model_dir: str | Path, family: str, task: str, include_path: str | Path, limit: int | None,
                max_new_tokens: int, batch_size: int = 16, device: str = "cpu") -> dict[str, Any]:
    """lm-eval's simple_evaluate on a student folder (a LoRA folder goes through `peft=`)."""
    import lm_eval

    model_dir = Path(model_dir)
    adapter = model_dir / "adapter_config.json"
    args: dict[str, Any] = {"backend": family, "device": device, "dtype": "float32"}
    if adapter.is_file():
        args.update(pretrained=json.loads(adapter.read_text())["base_model_name_or_path"], peft=str(model_dir))
    else:
        args["pretrained"] = str(model_dir)
    # an encoder-decoder's `max_length` counts decoder tokens (+1 for the start token), while
    # lm-eval's default adds the context length: ours stops after max_new_tokens
    gen = f"max_length={max_new_tokens + 1}" if family == "seq2seq" else None
    return lm_eval.simple_evaluate(
        model="hf", model_args=args, tasks=[task], task_manager=task_manager(include_path), limit=limit,
        log_samples=True, batch_size=batch_size, gen_kwargs=gen, random_seed=0, numpy_random_seed=0,
        torch_random_seed=0, fewshot_random_seed=0, bootstrap_iters=0,
    )


def evaluate_folder(model_dir: str | Path, family: str, task: str, options: dict[str, Any],
                    max_new_tokens: int, limit: int | None = None,
                    max_input_len: int = 256) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Export `task` for this student (its family, its input length) and run lm-eval on it:
    (results, samples)."""
    model_dir = Path(model_dir)
    with tempfile.TemporaryDirectory(prefix="distillbench-lmeval-") as tmp:
        s = ExportSettings(family="seq2seq" if family in ("t5", "seq2seq") else "causal",
                           max_new_tokens=max_new_tokens, options={task: options},
                           tokenizer=str(model_dir.resolve()), max_input_len=max_input_len)
        export(tmp, [task], s)
        res = run_lm_eval(model_dir, s.family, task_name(task), tmp, limit, max_new_tokens)
    samples = res.pop("samples", {}).get(task_name(task), [])
    return res, samples
