import random
import re

import pytest

from harness.types import Example
from tasks import get_task
from tasks.gsm_symbolic import GSMSymbolicTask, _load_gsm, slip_chain

SMALL = dict(n_train=60, n_valid=15, n_test=15)


@pytest.fixture(scope="module")
def task():
    return GSMSymbolicTask(**SMALL)


@pytest.fixture(scope="module")
def splits(task):
    return {s: task.load(s) for s in ("train", "valid", "test")}


def test_sizes_and_disjoint(splits):
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [60, 15, 15]
    qs = [{e.question for e in splits[s]} for s in ("train", "valid", "test")]
    assert len(qs[0] | qs[1] | qs[2]) == 90


def test_deterministic_and_ids(splits):
    _load_gsm.cache_clear()
    again = GSMSymbolicTask(**SMALL).load("test")
    assert [e.to_dict() for e in again] == [e.to_dict() for e in splits["test"]]
    assert all(re.fullmatch(r"gsm-[0-9a-f]{12}", e.id) for e in again)


def test_gold_matches_rationale(task, splits):
    for ex in splits["train"]:
        assert ex.rationale and "####" in ex.rationale
        assert task.equivalent(ex.rationale.rsplit("####", 1)[1].strip(), ex.answer)
        assert task.canonical(ex.answer) == ex.answer


def test_correct_chain(task, splits):
    for ex in splits["train"]:
        text, answer = task.write_chain(ex)
        assert "####" not in text and text.endswith(f"The answer is {ex.answer}.")
        assert answer == ex.answer and task.extract(text) == ex.answer


def test_slipped_chain(task, splits):
    rng = random.Random(0)
    for ex in splits["train"] + splits["valid"]:
        correct, _ = task.write_chain(ex)
        text, answer = task.write_chain(ex, rng)
        assert text != correct
        assert task.extract(text) == answer
        assert not task.equivalent(answer, ex.answer)
        assert text.count("\n") == correct.count("\n")  # same shape, one line per step


def test_slip_carries_through():
    body = "He bought 3*4 = 12 apples.\nThen he had 12+5 = 17 apples."
    slipped_first = 0
    for seed in range(30):
        text, answer = slip_chain(body, "17", random.Random(seed))
        first = int(re.search(r"3\*4 = (\d+)", text).group(1))
        a, b, c = map(int, re.search(r"(\d+)\+(\d+) = (\d+)", text.splitlines()[1]).groups())
        assert c == int(answer) != 17
        if first != 12:  # the slip was in line 1: line 2 uses the wrong value correctly
            slipped_first += 1
            assert (a, b, c) == (first, 5, first + 5)
        else:  # the slip was in line 2 itself
            assert (a, b) == (12, 5) and c != 17
    assert 0 < slipped_first < 30


def test_slip_handles_units_and_currency():
    body = (
        "He earns \u00a3195/day * 12 days/month = \u00a32340/month\n"
        "So per year \u00a32340/month * 12 months/year = \u00a328,080"
    )
    for seed in range(20):
        text, answer = slip_chain(body, "28080", random.Random(seed))
        assert answer != "28080"
        assert text.count("\u00a3") == 4 and text.endswith(f"\u00a3{int(answer):,}")


def test_prompt(task, splits):
    ex = splits["test"][0]
    p = task.prompt(ex)
    assert p.count("Q: ") == 4 and p.count("The answer is") == 3
    assert p.endswith(f"Q: {ex.question}\nA:")


def test_get_task():
    assert get_task("gsm_symbolic", n_train=1, n_valid=1, n_test=1).name == "gsm_symbolic"


def test_write_chain_needs_rationale(task):
    with pytest.raises(ValueError):
        task.write_chain(Example(id="x", question="q", answer="1"))
