"""harness/lmeval.py: our tasks exported as lm-eval tasks, loaded by lm-eval's TaskManager, and run
by lm-eval on tiny local students with parity against our own decoding (texts and verdicts)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from harness import lmeval
from harness.decoding import HFDecoder, SamplingParams
from harness.student import Student
from tasks import TASKS, get_task

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def _walk(d):
    for name, t in d.items():
        if isinstance(t, dict):
            yield from _walk(t)
        else:
            yield name, t


def test_every_task_exports_and_loads_in_lm_eval(tmp_path):
    from lm_eval.tasks import get_task_dict

    names = lmeval.export(tmp_path, None, lmeval.ExportSettings(limit=2, options={"arith": {"n_test": 5}}))
    assert len(names) == 2 * len(TASKS)
    tm = lmeval.task_manager(tmp_path)
    assert set(names) <= set(tm.all_tasks)
    for group in ("distillbench_math", "distillbench_arith", "distillbench_nli", "distillbench_arith_majority"):
        assert group in tm.all_tasks
    # the generated tasks (no data files needed) build completely and read their documents
    tasks = dict(_walk(get_task_dict(["distillbench_arith_greedy", "distillbench_arith_sc",
                                      "distillbench_gsm_symbolic_greedy"], tm)))
    greedy, sc = tasks["distillbench_arith_greedy"], tasks["distillbench_arith_sc"]
    docs = list(greedy.test_docs())
    ours = get_task("arith", n_test=5).load("test")[:2]
    assert [d["id"] for d in docs] == [e.id for e in ours] and [d["answer"] for d in docs] == [e.answer for e in ours]
    assert greedy.doc_to_text(docs[0]) == ours[0].question + "\n"  # a causal student continues after a newline
    assert greedy.config.generation_kwargs["do_sample"] is False and greedy.config.generation_kwargs["until"] == []
    assert sc.config.repeats == 8 and sc.config.generation_kwargs["temperature"] == 0.7
    assert greedy.config.metadata["task_version"] == "1"
    # every other task's config validates (its data is read only when it runs)
    for name in TASKS:
        for path in (tmp_path / f"distillbench_{name}_greedy.yaml", tmp_path / f"distillbench_{name}_sc.yaml"):
            text = path.read_text()
            assert f"task: {name}\n" in text and "!function 'utils.process_" in text


@pytest.mark.skipif(not (DATA / "anli_r1").is_dir(), reason="needs ../shared/data/anli_r1 beside the checkout")
def test_a_file_task_reads_its_configured_data(tmp_path):
    from lm_eval.tasks import get_task_dict

    lmeval.export(tmp_path, ["anli"], lmeval.ExportSettings(limit=3, family="seq2seq", options={"anli": {"data_dir": str(DATA)}}))
    task = dict(_walk(get_task_dict(["distillbench_anli_greedy"], lmeval.task_manager(tmp_path))))["distillbench_anli_greedy"]
    docs = list(task.test_docs())
    ours = get_task("anli", data_dir=str(DATA)).load("test")[:3]
    assert [d["id"] for d in docs] == [e.id for e in ours]
    assert task.doc_to_text(docs[0]) == get_task("anli").student_input(ours[0])  # seq2seq: the input alone


def test_utils_module_is_ours(tmp_path):
    lmeval.export(tmp_path, ["math500", "gsm8k"])
    spec = importlib.util.spec_from_file_location("db_utils", tmp_path / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    math500, gsm8k = get_task("math500"), get_task("gsm8k")
    doc = {"id": "x", "answer": r"\frac12", "task_spec": json.dumps({"name": "math500", "options": {}}, sort_keys=True)}
    for text in (r"so $\boxed{0.5}$", r"The answer is $\frac{1}{2}$.", r"$\boxed{2}$", "no answer"):
        assert utils.process_results(doc, [text])["acc"] == float(math500.equivalent(math500.extract(text), r"\frac12"))
    gdoc = {"id": "y", "answer": "1000", "task_spec": json.dumps({"name": "gsm8k", "options": {}}, sort_keys=True)}
    samples = ["The answer is 1,000.", "The answer is 999.", "The answer is 1000.", "The answer is 999.", "no idea"]
    voted = utils.majority_filter([samples], [gdoc])
    assert voted == [["1,000"]]  # 1,000 and 1000 vote together (lm-eval's own filter splits them)
    assert utils.process_voted(gdoc, voted[0]) == {"acc": 1.0}
    assert gsm8k.equivalent(voted[0][0], "1000")


def _ours(student: Student, task, examples, max_new: int) -> dict[str, tuple[str, bool]]:
    gens = HFDecoder(student).sample([task.student_input(e) for e in examples], SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new))
    return {e.id: (g[0].text, bool(task.equivalent(task.extract(g[0].text), e.answer))) for e, g in zip(examples, gens, strict=True)}


PARITY_TASKS = [
    ("arith", {"n_test": 10}),
    ("math500", {"data_dir": str(DATA)}),  # LaTeX answers: extraction + math_equivalent
    ("anli", {"data_dir": str(DATA)}),  # NLI: the label word
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), PARITY_TASKS, ids=[n for n, _ in PARITY_TASKS])
def test_parity_on_tiny_students(tiny_dir, name, options):
    """lm-eval generates exactly our greedy texts, so every verdict matches (both families)."""
    if "data_dir" in options and not (DATA / ("math" if name == "math500" else "anli_r1")).is_dir():
        pytest.skip(f"needs ../shared/data for {name}")
    family, path = tiny_dir
    task = get_task(name, **options)
    examples = task.load("test")[:10]
    ours = _ours(Student.load(path), task, examples, 10)
    results, samples = lmeval.evaluate_folder(path, family, name, options, max_new_tokens=10, limit=10)
    parity = lmeval.compare(ours, samples)
    assert parity.n == 10 and parity.ok and parity.same_text == 10, parity.differ
    assert len({t for t, _ in ours.values()}) > 3 and sum(bool(t) for t, _ in ours.values()) >= 7  # real, varied texts
    assert results["results"][f"distillbench_{name}_greedy"]["acc,none"] == pytest.approx(parity.ours_acc)


@pytest.mark.slow
def test_parity_through_peft_for_a_lora_student(tmp_path, arith):
    from harness.models import TinyConfig, build_tiny_model, corpus

    base = build_tiny_model("llama", corpus(arith, arith.load("train")), tmp_path / "base", TinyConfig(vocab_size=300))
    student = Student.load(base, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    with torch.no_grad():  # a fresh adapter is the identity (B = 0): move it so the test can fail
        gen = torch.Generator().manual_seed(0)
        for name, p in student.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    folder = tmp_path / "lora"
    student.model.save_pretrained(folder)
    student.tokenizer.save_pretrained(folder)
    task = get_task("arith", n_test=8)
    examples = task.load("test")[:8]
    ours = _ours(Student.load(folder), task, examples, 10)
    assert ours != _ours(Student.load(base), task, examples, 10)  # the adapter changes the texts
    _, samples = lmeval.evaluate_folder(folder, "llama", "arith", {"n_test": 8}, max_new_tokens=10, limit=8)
    parity = lmeval.compare(ours, samples)
    assert parity.ok and parity.same_text == 8, parity.differ


def test_compare_counts_differences():
    ours = {"a": ("The answer is 3", True), "b": ("The answer is 4", False)}
    samples = [{"doc": {"id": "a"}, "resps": [["The answer is 3"]], "acc": 1.0},
               {"doc": {"id": "b"}, "resps": [["The answer is 5"]], "acc": 1.0}]
    p = lmeval.compare(ours, samples)
    assert (p.n, p.same_verdict, p.same_text, p.ok) == (2, 1, 1, False)
    assert p.differ == [{"id": "b", "ours": "The answer is 4", "lm_eval": "The answer is 5", "ours_correct": False,
                         "lm_eval_correct": True}]


def test_export_rejects_bad_settings():
    from harness.errors import UserError

    with pytest.raises(UserError, match="--prompt"):
        lmeval.ExportSettings(prompt="nope")
    with pytest.raises(UserError, match="--family"):
        lmeval.ExportSettings(family="rnn")

