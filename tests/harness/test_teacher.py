import pytest

from harness.errors import UserError
from harness.teacher import oracle_chains, split_bank
from harness.types import Chain
from tasks.arith import ArithTask
from tasks.gsm_symbolic import GSMSymbolicTask


@pytest.fixture(scope="module")
def arith():
    task = ArithTask(n_train=100, n_valid=10, n_test=10)
    return task, task.load("train")


def test_deterministic(arith):
    task, examples = arith
    a = oracle_chains(task, examples[:20], k=3, wrong_rate=0.5, seed=7)
    b = oracle_chains(task, examples[:20], k=3, wrong_rate=0.5, seed=7)
    c = oracle_chains(task, examples[:20], k=3, wrong_rate=0.5, seed=8)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert [x.text for x in a] != [x.text for x in c]
    # one example's chains do not depend on which other examples are in the batch
    alone = oracle_chains(task, examples[5:6], k=3, wrong_rate=0.5, seed=7)
    assert [x.to_dict() for x in alone] == [x.to_dict() for x in a[15:18]]


def test_all_correct_at_rate_zero(arith):
    task, examples = arith
    chains = oracle_chains(task, examples, k=2, wrong_rate=0.0, seed=0)
    pos, neg = split_bank(chains)
    assert len(chains) == 200 and len(pos) == 200 and not neg


def test_all_wrong_at_rate_one(arith):
    task, examples = arith
    pos, neg = split_bank(oracle_chains(task, examples, k=2, wrong_rate=1.0, seed=0))
    assert not pos and len(neg) == 200
    assert all(c.meta["slipped"] and c.answer is not None for c in neg)


@pytest.mark.parametrize(
    "task",
    [
        ArithTask(n_train=100, n_valid=5, n_test=5),
        GSMSymbolicTask(n_train=100, n_valid=5, n_test=5),
    ],
)
def test_rate_is_roughly_respected(task):
    chains = oracle_chains(task, task.load("train"), k=4, wrong_rate=0.3, seed=1)
    share = sum(not c.correct for c in chains) / len(chains)
    assert 0.22 < share < 0.38
    assert all(c.correct == (not c.meta["slipped"]) for c in chains)


def test_labels(arith):
    task, examples = arith
    chains = oracle_chains(task, examples[:3], k=2, wrong_rate=0.5, seed=0)
    assert [c.meta["sample"] for c in chains] == [0, 1] * 3
    for c in chains:
        assert c.source == "teacher:oracle" and c.logprob is None
        assert c.meta["synthetic"] is True and c.meta["seed"] == 0 and c.meta["wrong_rate"] == 0.5
        assert c.n_tokens == len(c.text.split()) > 0


def test_split_bank_none_is_negative():
    c = Chain(example_id="e", source="s", text="?", answer=None, correct=None)
    ok = Chain(example_id="e", source="s", text="1", answer="1", correct=True)
    assert split_bank([c, ok]) == ([ok], [c])


def test_rejects_non_procedural_task_and_bad_rate(arith):
    from tasks.base import TaskDefaults

    class Plain(TaskDefaults):  # a task that cannot write its own chains
        name = "plain"

    with pytest.raises(UserError, match="only works for procedural tasks"):
        oracle_chains(Plain(), [], k=1, wrong_rate=0.0, seed=0)
    with pytest.raises(UserError, match="wrong_rate"):
        oracle_chains(arith[0], arith[1], k=1, wrong_rate=1.5, seed=0)


def test_gold_teacher_uses_reference_rationales():
    from harness.teacher import gold_chains
    from harness.types import Example

    class T:
        name = "t"
        extract = staticmethod(lambda text: text.rsplit("The answer is ", 1)[-1].rstrip(".") if "The answer is" in text else None)
        equivalent = staticmethod(lambda a, b: a == b)

    exs = [
        Example("a", "q1", "72", rationale="48 + 24 = 72 clips."),
        Example("b", "q2", "5", rationale="2 + 3 = 5. The answer is 5."),
        Example("c", "q3", "1"),  # no rationale: no chain
    ]
    chains = gold_chains(T, exs)
    assert [c.example_id for c in chains] == ["a", "b"]
    assert chains[0].text == "48 + 24 = 72 clips.\nThe answer is 72." and chains[1].text == exs[1].rationale
    assert all(c.correct and c.source == "teacher:gold" and c.meta["synthetic"] is False for c in chains)
    with pytest.raises(UserError, match="no reference rationales"):
        gold_chains(T, [exs[2]])
