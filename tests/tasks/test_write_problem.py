"""Tasks that write new problems (FDD's oracle teacher): arith and gsm_symbolic."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from typing import ClassVar

import pytest

from harness.errors import UserError
from harness.types import Example
from tasks import TASKS, get_task
from tasks import gsm_symbolic as gsm
from tasks.arith import ArithTask, evaluate, tokenize
from tasks.base import TaskDefaults
from tasks.checking import format_number
from tasks.gsm_symbolic import GSMSymbolicTask

KINDS = ("harder", "similar")
ARITH = dict(n_train=40, n_valid=5, n_test=5, max_terms=4, max_digits=3, operators=("+", "-", "*", "/"))
GSM = dict(n_train=60, n_valid=15, n_test=15)  # as test_gsm_symbolic.py: one cached load
SUFFIX = " Give the result as your final answer. Do not include units."


@pytest.fixture(scope="module")
def arith():
    return ArithTask(**ARITH)


@pytest.fixture(scope="module")
def arith_parents(arith):
    return arith.load("train")[:20]


@pytest.fixture(scope="module")
def gsm_task():
    return GSMSymbolicTask(**GSM)


@pytest.fixture(scope="module")
def gsm_parents(gsm_task):
    return gsm_task.load("train")[:12]


def shape(expression: str) -> tuple[list[int], list[str]]:
    tokens = tokenize(expression)
    return [len(str(int(n))) for n in tokens[::2]], [str(op) for op in tokens[1::2]]


def arith_expr(digits: list[int], ops: list[str]) -> str:
    numbers = ["9" * d for d in digits]
    return " ".join(p for pair in zip(numbers, [*ops, ""]) for p in pair).strip()


def arith_parent(expression: str) -> Example:
    return Example(id="p", question=f"Calculate {expression}.", answer=format_number(evaluate(expression)))


# --- arith ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_arith_deterministic(arith, arith_parents, kind):
    def written(seed):
        rng = random.Random(seed)
        return [arith.write_problem(ex, kind, rng).to_dict() for ex in arith_parents]

    assert written(7) == written(7)
    assert written(7) != written(8)


@pytest.mark.parametrize("kind", KINDS)
def test_arith_problem_is_new_right_and_chainable(arith, arith_parents, kind):
    rng, slip_rng = random.Random(0), random.Random(1)
    for parent in arith_parents:
        new = arith.write_problem(parent, kind, rng)
        expression = new.meta["expression"]
        assert expression != parent.meta["expression"]
        assert new.question == f"Calculate {expression}." and new.answer == format_number(evaluate(expression))
        assert new.id == "arith-" + hashlib.sha256(expression.encode()).hexdigest()[:12]
        assert new.meta == {"expression": expression, "index": None, "kind": kind, "parent": parent.id}
        chain, answer = arith.write_chain(new)
        assert answer == new.answer and arith.extract(chain) == new.answer
        _, wrong = arith.write_chain(new, slip_rng)
        assert not arith.equivalent(wrong, new.answer)


def test_arith_similar_keeps_terms_digits_and_operators(arith, arith_parents):
    rng = random.Random(2)
    for parent in arith_parents:
        new = arith.write_problem(parent, "similar", rng)
        assert shape(new.meta["expression"]) == shape(parent.meta["expression"])


def test_arith_harder_adds_a_term_or_a_digit(arith, arith_parents):
    rng = random.Random(3)
    routes = set()
    for parent in arith_parents:
        (digits, ops) = shape(parent.meta["expression"])
        (new_digits, new_ops) = shape(arith.write_problem(parent, "harder", rng).meta["expression"])
        if len(new_digits) == len(digits) + 1:
            routes.add("term")
            assert new_digits == [*digits, max(digits)] and new_ops[:-1] == ops
            assert new_ops[-1] in arith.operators
        else:
            routes.add("digits")
            assert new_digits == [d + 1 for d in digits] and new_ops == ops
    assert routes == {"term", "digits"}  # 50/50 over 20 parents


def test_arith_harder_at_the_limits(arith):
    eight = arith_parent(arith_expr([2] * 8, ["+", "-"] * 3 + ["*"]))
    for seed in range(5):  # 8 terms: only longer numbers
        digits, _ = shape(arith.write_problem(eight, "harder", random.Random(seed)).meta["expression"])
        assert digits == [3] * 8
    capped = arith_parent(arith_expr([12] * 8, ["+"] * 7))  # nothing to lengthen: a 9th term
    digits, ops = shape(arith.write_problem(capped, "harder", random.Random(0)).meta["expression"])
    assert digits == [12] * 9 and ops[:7] == ["+"] * 7


def test_arith_reads_the_question_when_meta_has_no_expression(arith):
    new = arith.write_problem(arith_parent("12 + 7"), "similar", random.Random(0))
    assert shape(new.meta["expression"]) == ([2, 1], ["+"]) and new.meta["parent"] == "p"


def test_arith_written_problem_equal_to_a_loaded_one_is_that_example():
    # the default pool (1-2 digits, 2 terms, + and -) is small: similar problems of a one-digit
    # parent soon hit loaded ones, which must come back with the loaded id, question and answer
    task = ArithTask(n_train=300, n_valid=40, n_test=40)
    loaded = {e.meta["expression"]: e for s in ("train", "valid", "test") for e in task.load(s)}
    parent = next(e for e in loaded.values() if shape(e.meta["expression"])[0] == [1, 1])
    rng = random.Random(0)
    hits = 0
    for _ in range(40):
        new = task.write_problem(parent, "similar", rng)
        old = loaded.get(new.meta["expression"])
        if old is not None:
            hits += 1
            assert (new.id, new.question, new.answer) == (old.id, old.question, old.answer)
    assert hits


def test_unknown_kind(arith, arith_parents, gsm_task, gsm_parents):
    with pytest.raises(ValueError, match="unknown problem kind"):
        arith.write_problem(arith_parents[0], "easier", random.Random(0))
    with pytest.raises(ValueError, match="unknown problem kind"):
        gsm_task.write_problem(gsm_parents[0], "easier", random.Random(0))


# --- gsm_symbolic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_gsm_deterministic(gsm_task, gsm_parents, kind):
    def written(seed):
        rng = random.Random(seed)
        return [gsm_task.write_problem(ex, kind, rng).to_dict() for ex in gsm_parents]

    assert written(7) == written(7)
    assert written(7) != written(8)


@pytest.mark.parametrize("kind", KINDS)
def test_gsm_problem_is_new_right_and_chainable(gsm_task, gsm_parents, kind):
    rng, slip_rng = random.Random(0), random.Random(1)
    for parent in gsm_parents:
        new = gsm_task.write_problem(parent, kind, rng)
        assert new.question != parent.question and new.question.endswith(SUFFIX)
        assert new.id == "gsm-" + hashlib.sha256(new.question.encode()).hexdigest()[:12]
        assert new.meta["template"] == parent.meta["template"] and new.meta["parent"] == parent.id
        assert new.meta["kind"] == kind and new.meta["index"] is None and new.meta["variables"]
        assert gsm_task.canonical(new.answer) == new.answer
        assert gsm_task.equivalent(new.rationale.rsplit("####", 1)[1].strip(), new.answer)
        chain, answer = gsm_task.write_chain(new)
        assert answer == new.answer and gsm_task.equivalent(gsm_task.extract(chain), new.answer)
        _, wrong = gsm_task.write_chain(new, slip_rng)
        assert not gsm_task.equivalent(wrong, new.answer)


def numbers_in(question: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", question)]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_gsm_harder_has_higher_difficulty_and_larger_numbers(gsm_task, gsm_parents):
    larger = 0
    harder, similar = [], []
    for i, parent in enumerate(gsm_parents):
        # the same generator seed for both: only the difficulty differs
        h = gsm_task.write_problem(parent, "harder", random.Random(i))
        s = gsm_task.write_problem(parent, "similar", random.Random(i))
        assert s.meta["difficulty"] == parent.meta["difficulty"] == 1.0
        assert h.meta["difficulty"] == 1.5 or h.meta["template"] == 2  # 2 may fall back
        larger += mean(numbers_in(h.question)) > mean(numbers_in(s.question))
        harder += numbers_in(h.question)
        similar += numbers_in(s.question)
    assert larger > len(gsm_parents) / 2 and mean(harder) > mean(similar)
    again = gsm_task.write_problem(h, "harder", random.Random(0))  # harder of harder
    assert again.meta["difficulty"] > h.meta["difficulty"]


def test_gsm_loaded_example_rebuilt_from_its_template_has_its_id(gsm_task, gsm_parents):
    # the written problems' question suffix, id and fields are those of loaded examples
    for ex in gsm_parents[:4]:
        item = gsm._generators()[ex.meta["template"]](random.Random(gsm_task.seed + ex.meta["index"]), 1.0)
        rebuilt = gsm._from_row({**item, "question": item["question"] + SUFFIX}, ex.meta)
        assert rebuilt == ex


def test_gsm_template_recovered_from_the_source_index(gsm_task, gsm_parents):
    for ex in gsm_parents:
        old_meta = {"index": ex.meta["index"], "variables": ex.meta["variables"]}
        old = dataclasses.replace(ex, meta=old_meta)
        assert gsm_task._template_of(old) == ex.meta["template"]
        assert gsm_task.write_problem(old, "harder", random.Random(0)) == gsm_task.write_problem(
            ex, "harder", random.Random(0)
        )
    with pytest.raises(ValueError, match="neither a template nor a source index"):
        gsm_task.write_problem(dataclasses.replace(ex, meta={}), "similar", random.Random(0))


def test_gsm_harder_falls_back_to_the_parents_difficulty(gsm_task, gsm_parents, monkeypatch):
    parent = gsm_parents[0]
    real = gsm._generators()[parent.meta["template"]]

    def fussy(rng, difficulty):
        if difficulty > 1:
            raise ValueError("cannot fit the numbers")
        return real(rng, difficulty)

    monkeypatch.setattr(gsm, "_generators", lambda: {parent.meta["template"]: fussy})
    new = gsm_task.write_problem(parent, "harder", random.Random(0))
    assert new.meta["difficulty"] == 1.0 and new.meta["kind"] == "harder"

    def broken(rng, difficulty):
        raise ValueError("never")

    monkeypatch.setattr(gsm, "_generators", lambda: {parent.meta["template"]: broken})
    with pytest.raises(ValueError, match="wrote no new problem"):
        gsm_task.write_problem(parent, "similar", random.Random(0))


# --- the contract ----------------------------------------------------------------------------------


def test_tasks_that_cannot_write_problems_say_so_in_one_line():
    @dataclasses.dataclass(frozen=True)
    class Dummy(TaskDefaults):
        name: ClassVar[str] = "dummy"

    ex = Example(id="x", question="q", answer="a")
    for task in (get_task("csqa"), Dummy()):
        assert not task.writes_problems and task.problem_family is None
        with pytest.raises(UserError) as err:
            task.write_problem(ex, "harder", random.Random(0))
        assert "\n" not in str(err.value) and f"task {task.name!r}" in str(err.value)
        with pytest.raises(ValueError, match="unknown problem kind"):
            task.write_problem(ex, "easier", random.Random(0))


def test_writes_problems_only_for_procedural_tasks():
    for name in ("arith", "gsm_symbolic", "gsm8k", "svamp", "csqa"):
        assert get_task(name).writes_problems == (name in ("arith", "gsm_symbolic")), name


@pytest.mark.parametrize(
    "name, family",
    [
        ("arith", "word"),
        ("gsm_symbolic", "word"),
        ("gsm8k", "word"),
        ("svamp", "word"),
        ("math", "math"),
        ("math500", "math"),
        ("csqa", None),
        ("esnli", None),
        ("anli", None),
    ],
)
def test_problem_family(name, family):
    assert TASKS[name].problem_family == family
