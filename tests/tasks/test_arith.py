import hashlib
import random
import re

import pytest

from harness.errors import UserError
from harness.types import Example
from tasks import get_task, task_options
from tasks.arith import ArithTask, _load_arith, evaluate, tokenize
from tasks.checking import format_number

SMALL = dict(n_train=300, n_valid=40, n_test=40)


@pytest.fixture(scope="module")
def task():
    return ArithTask(**SMALL)


@pytest.fixture(scope="module")
def splits(task):
    return {s: task.load(s) for s in ("train", "valid", "test")}


def test_sizes_exact(splits):
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [300, 40, 40]


def test_default_sizes():
    t = ArithTask()
    assert (len(t.load("train")), len(t.load("valid")), len(t.load("test"))) == (2000, 200, 200)


def test_splits_disjoint(splits):
    questions = [{e.question for e in splits[s]} for s in ("train", "valid", "test")]
    assert sum(map(len, questions)) == 380  # no duplicates inside a split either
    assert not questions[0] & questions[1] and not questions[0] & questions[2]
    assert not questions[1] & questions[2]


def test_test_split_does_not_depend_on_other_sizes():
    # an expression's split comes from its hash alone, so bigger train sets never absorb test
    a = ArithTask(n_train=10, n_valid=5, n_test=20).load("test")
    b = ArithTask(n_train=500, n_valid=50, n_test=20).load("test")
    assert [e.id for e in a] == [e.id for e in b]


def test_deterministic(splits):
    _load_arith.cache_clear()  # really regenerate, not just hit the cache
    again = ArithTask(**SMALL)
    for s in ("train", "test"):
        assert [e.to_dict() for e in again.load(s)] == [e.to_dict() for e in splits[s]]
    other_seed = ArithTask(**SMALL, seed=1).load("test")
    assert [e.id for e in other_seed] != [e.id for e in splits["test"]]


def test_ids_stable(splits):
    ex = splits["train"][0]
    assert re.fullmatch(r"arith-[0-9a-f]{12}", ex.id)
    assert ex.id == "arith-" + hashlib.sha256(ex.meta["expression"].encode()).hexdigest()[:12]
    assert len({e.id for s in splits.values() for e in s}) == 380


def test_gold_is_evaluated_expression(splits, task):
    for ex in splits["valid"]:
        a, op, b = ex.meta["expression"].split()
        expected = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert ex.answer == str(expected)
        assert task.canonical(ex.answer) == ex.answer


def test_precedence_not_left_to_right():
    assert evaluate("2 + 3 * 4") == 14
    assert evaluate("8 - 6 / 4") == evaluate("13 / 2")
    with pytest.raises(ValueError):
        tokenize("__import__('os')")


def test_correct_chain(task, splits):
    for ex in splits["test"]:
        text, answer = task.write_chain(ex)
        assert answer == ex.answer
        assert task.extract(text) == ex.answer
        assert task.equivalent(task.extract(text), ex.answer)


def test_chain_format():
    task = ArithTask(**SMALL)
    ex = Example(
        id="x", question="Calculate 4 - 1 - 7.", answer="-4", meta={"expression": "4 - 1 - 7"}
    )
    assert task.write_chain(ex) == ("4 - 1 = 3. 3 - 7 = -4. The answer is -4.", "-4")


STEP = r"-?\d+(?:/\d+)? [-+*/] \d+ = -?\d+(?:/\d+)?\."
CHAIN = re.compile(rf"(?:{STEP} )+The answer is -?\d+(?:/\d+)?\.")


@pytest.mark.parametrize(
    "options",
    [
        SMALL,
        dict(
            min_terms=2, max_terms=5, operators=("+", "-", "*"), n_train=100, n_valid=10, n_test=10
        ),
    ],
)
def test_slipped_chains_are_wrong_and_well_formed(options):
    task = ArithTask(**options)
    rng = random.Random(0)
    for ex in task.load("train"):
        correct, _ = task.write_chain(ex)
        text, answer = task.write_chain(ex, rng)
        assert CHAIN.fullmatch(text), text
        assert CHAIN.fullmatch(correct), correct
        assert task.extract(text) == answer
        assert not task.equivalent(answer, ex.answer)
        assert text.count("=") == correct.count("=")


def test_prompt(task, splits):
    ex = splits["test"][0]
    p = task.prompt(ex)
    assert p.count("Q: ") == 4 and p.endswith(f"Q: {ex.question}\nA:")
    assert task.student_input(ex) == ex.question


def test_unknown_option_did_you_mean():
    with pytest.raises(
        UserError, match=r"unknown option 'n_trian' for task 'arith' \(did you mean 'n_train'"
    ):
        get_task("arith", n_trian=5)


def test_unknown_task():
    with pytest.raises(UserError, match="did you mean 'arith'"):
        get_task("arithm")


def test_bad_options():
    with pytest.raises(UserError, match="operators"):
        ArithTask(operators=("^",))
    with pytest.raises(UserError, match="integer"):
        get_task("arith", n_train="many")
    with pytest.raises(UserError, match="split"):
        ArithTask(**SMALL).load("dev")


def test_pool_too_small():
    with pytest.raises(UserError, match=r"test=\d+/500"):
        ArithTask(min_digits=1, max_digits=1, n_train=10, n_valid=10, n_test=500).load("test")


def test_get_task_and_options():
    assert task_options("arith")["operators"] == ("+", "-")
    t = get_task("arith", operators=["+"], n_train=5, n_valid=1, n_test=1)
    assert t.operators == ("+",) and t.name == "arith"
    assert all(" + " in e.question for e in t.load("train"))
    assert format_number(evaluate("1 + 2")) == "3"
