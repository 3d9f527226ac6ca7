"""harness/bank.py: append-only, resumable teacher banks; labelling; stats."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import bank as B
from harness.decoding import HFDecoder, SamplingParams
from harness.store import Store
from harness.student import Student
from harness.teacher import sampled
from harness.types import Chain, Example

ROOT = Path(__file__).resolve().parents[2]
PARAMS = SamplingParams(n=4, temperature=1.0, max_new_tokens=12)


def _manifest(**kw):
    return {"task": "arith", "teacher": "tiny", "k": 4, "seed": 0, **kw}


def _counting(generate):
    calls = []

    def wrapped(examples, seed):
        calls.append([e.id for e in examples])
        return generate(examples, seed)

    return wrapped, calls


@pytest.fixture
def teacher(tiny_dir, arith):
    family, path = tiny_dir
    decoder = HFDecoder(Student.load(path), batch_size=64)
    return sampled(arith, decoder, PARAMS, f"teacher:tiny-{family}")


def test_tiny_hf_teacher_end_to_end_and_a_second_build_makes_no_calls(tmp_path, arith, teacher):
    examples = arith.load("train")[:10]
    bank = B.Bank.create(Store(tmp_path), _manifest())
    gen, calls = _counting(teacher)
    report = B.build(bank, examples, gen, B.label_by_gold(arith), chunk_size=3)
    assert (report.chunks_total, report.chunks_generated) == (4, 4)
    chains = bank.chains()
    assert len(chains) == 40 and [c.example_id for c in chains[::4]] == [e.id for e in examples]
    assert all(c.correct == (c.answer is not None and arith.equivalent(c.answer, next(e for e in examples if e.id == c.example_id).answer)) for c in chains)
    assert all(c.meta["sample"] == i % 4 for i, c in enumerate(chains))

    again = B.Bank.create(Store(tmp_path), _manifest())
    assert again.key == bank.key
    gen2, calls2 = _counting(teacher)
    report = B.build(again, examples, gen2, B.label_by_gold(arith), chunk_size=3)
    assert calls2 == [] and report.chunks_done_before == 4
    assert [c.to_dict() for c in again.chains()] == [c.to_dict() for c in chains]


def test_a_torn_last_write_is_ignored_and_regenerated(tmp_path, arith, teacher):
    examples = arith.load("train")[:6]
    bank = B.Bank.create(Store(tmp_path), _manifest())
    B.build(bank, examples[:3], teacher, B.label_by_gold(arith), chunk_size=3)
    with bank.chains_file.open("a") as f:  # what a kill mid-write leaves: rows, no end row, a cut line
        f.write(json.dumps({"kind": "chain", "chain": Chain("x", "s", "t", None).to_dict()}) + "\n")
        f.write('{"kind": "chain", "cha')
    assert len(bank.chains()) == 12
    gen, calls = _counting(teacher)
    B.build(bank, examples, gen, B.label_by_gold(arith), chunk_size=3)
    assert calls == [[e.id for e in examples[3:]]]
    assert len(bank.chains()) == 24 and "x" not in {c.example_id for c in bank.chains()}


BUILD_SCRIPT = """
import sys, time
from harness import bank as B
from harness.decoding import HFDecoder, SamplingParams
from harness.store import Store
from harness.student import Student
from harness.teacher import sampled
from tasks import get_task
task = get_task("arith", n_train=200, n_valid=40, n_test=40, seed=0)
gen = sampled(task, HFDecoder(Student.load(sys.argv[2])), SamplingParams(n=4, temperature=1.0, max_new_tokens=12), "teacher:tiny")
def slow(done, total):
    print(f"chunk {done}/{total}", flush=True)
    time.sleep(float(sys.argv[3]))
bank = B.Bank.create(Store(sys.argv[1]), {"task": "arith", "k": 4})
B.build(bank, task.load("train")[:24], gen, B.label_by_gold(task), chunk_size=3, on_chunk=slow)
"""


def _run_build(store: Path, model: Path, pause: float) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(store), str(model), str(pause)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow
def test_sigkill_halfway_then_resume_equals_an_uninterrupted_build(tmp_path, tiny_dir, arith):
    _, model = tiny_dir
    full = _run_build(tmp_path / "full", model, 0.0)
    assert full.wait(timeout=300) == 0, full.stderr.read()

    proc = _run_build(tmp_path / "killed", model, 0.5)
    for line in proc.stdout:  # kill right after the third chunk is on disk
        if line.startswith("chunk 3/"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = B.Bank(next((tmp_path / "killed" / "banks").iterdir()))
    before = killed.chunks()
    assert 3 <= len(before) < 8

    generated: list[list[str]] = []
    teacher = sampled(arith, HFDecoder(Student.load(model)), PARAMS, "teacher:tiny")

    def gen(examples, seed):
        generated.append([e.id for e in examples])
        return teacher(examples, seed)

    B.build(killed, arith.load("train")[:24], gen, B.label_by_gold(arith), chunk_size=3)
    done_ids = {i for ids, _ in before.values() for i in ids}
    regenerated = [i for ids in generated for i in ids]
    assert not done_ids & set(regenerated) and len(regenerated) == len(set(regenerated))
    reference = B.Bank(next((tmp_path / "full" / "banks").iterdir()))
    assert [c.to_dict() for c in killed.chains()] == [c.to_dict() for c in reference.chains()]


class _Task:
    def canonical(self, a):
        return a.strip()

    def equivalent(self, a, b):
        return a.strip() == b.strip()


def _chains(answers, ex="e1"):
    return [Chain(ex, "t", f"so {a}", a, meta={"sample": i}) for i, a in enumerate(answers)]


def test_majority_labelling_is_label_free_and_records_agreement():
    ex = Example("e1", "q", "999")  # the gold is never consulted
    out = B.label_by_majority(_Task())(ex, _chains(["7", None, "7 ", "5", None, "5", "7"]))
    assert [c.correct for c in out] == [True, False, True, False, False, False, True]
    assert {c.meta["majority"] for c in out} == {"7"} and out[0].meta["agreement"] == pytest.approx(3 / 7)
    tie = B.label_by_majority(_Task())(ex, _chains(["5", "7", "7", "5"]))
    assert [c.correct for c in tie] == [True, False, False, True]  # tie: first seen wins
    none = B.label_by_majority(_Task())(ex, _chains([None, None]))
    assert [c.correct for c in none] == [False, False]


def test_gold_labelling_never_marks_no_answer_positive():
    out = B.label_by_gold(_Task())(Example("e1", "q", "7"), _chains(["7", None, "8"]))
    assert [c.correct for c in out] == [True, False, False]


def test_stats_count_examples_by_positives_out_of_k():
    label = B.label_by_gold(_Task())
    chains = (
        label(Example("a", "q", "1"), _chains(["1", "1"], "a"))
        + label(Example("b", "q", "1"), _chains(["2", None], "b"))
        + label(Example("c", "q", "1"), _chains(["1", "3"], "c"))
    )
    s = B.stats(chains)
    assert (s.examples, s.chains, s.positives, s.no_answer) == (3, 6, 3, 1)
    assert (s.only_positive, s.only_negative, s.mixed) == (1, 1, 1)
    assert s.per_example == {2: 1, 0: 1, 1: 1}
    assert dict(s.rows())["examples with only positives"] == "1 (33.3%)"


def test_a_chunk_with_other_examples_is_a_clear_error(tmp_path):
    bank = B.Bank.create(Store(tmp_path), _manifest())
    bank.append_chunk(0, ["a"], [])
    with pytest.raises(B.UserError, match="chunk 0 holds other examples"):
        B.build(bank, [Example("b", "q", "1")], lambda ex, s: [[]], B.label_by_gold(_Task()), chunk_size=1)


def test_not_a_bank(tmp_path):
    with pytest.raises(B.UserError, match="not a teacher bank"):
        B.Bank(tmp_path)


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "dss").is_dir(), reason="needs ../shared/data/dss (the DSS release) beside the checkout")
def test_the_dss_release_is_a_teacher_a_grid_can_use(tmp_path):
    """teacher: {name: dss} gives a bank of PaLM chains on our svamp examples (one each)."""
    from harness.config import TeacherSpec
    from harness.teacher import build_bank
    from tasks import get_task

    task = get_task("svamp", data_dir=str(SHARED), split_source="dss")
    examples = [*task.load("train"), *task.load("valid")]
    bank, report = build_bank(task, examples, TeacherSpec(name="dss"), Store(tmp_path))
    chains = bank.chains()
    assert report.chunks_generated > 0 and len(chains) == len(examples) == 800
    assert {c.example_id for c in chains} == {e.id for e in examples}
    assert 0.72 < sum(bool(c.correct) for c in chains) / len(chains) < 0.75  # PaLM on DSS train: 73.1%
    assert all(c.source.startswith("teacher:palm") for c in chains)
