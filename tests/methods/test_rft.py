"""rft: distinct reasoning paths by their equations (Yuan et al. 2023, Sec. 4), and the items it
trains on. Training, determinism, resume, reload and what it reads: the method contract
(tests/methods/test_contract.py)."""

from __future__ import annotations

import pytest

from harness.types import Chain, Example
from methods import METHODS, make_config
from methods.rft import RftConfig, distinct, equations, items


def chain(text: str, i: int = 0) -> Chain:
    return Chain("q1", "teacher:t", text, "24", correct=True, meta={"sample": i})


def test_equations_from_calculator_annotations_first():
    text = "She sold 48/2 = <<48/2=24>>24 clips in May, 48 + 24 = <<48+24=72>>72 in all."
    assert equations(text) == ("48/2=24", "48+24=72")


def test_equations_stated_without_annotations():
    assert equations("First 1,200 / 3 = 400, then 400 * 2 = 800. The answer is 800.") == ("1200/3=400", "400*2=800")
    assert equations("The answer is 7.") == ()


def test_distinct_keeps_the_first_path_of_each_calculation():
    a = chain("12 + 12 = 24. The answer is 24.", 0)
    b = chain("We add: 12 + 12 = 24, so the answer is 24.", 1)  # same calculation, other words
    c = chain("2 * 12 = 24. The answer is 24.", 2)
    d = chain("Twenty-four. The answer is 24.", 3)
    e = chain("twenty-four.  The answer is 24.", 4)  # no equation: the same text after normalising
    assert distinct([a, b, c, d, e], "equations") == [a, c, d]
    assert distinct([a, b, c, d, e], "text") == [a, b, c, d]
    assert distinct([a, b, c, d, e], "none") == [a, b, c, d, e]


class Ctx:
    """What `items` reads of a TrainContext."""

    def __init__(self, positives):
        class Task:
            def student_input(self, ex):
                return ex.question

        self.task, self.logged = Task(), {}
        self.train = [Example("q1", "Q1?", "24", rationale="12 + 12 = 24."), Example("q2", "Q2?", "5")]
        self.positives = positives

    def log(self, metrics, step):
        self.logged.update(metrics)


def test_items_are_distinct_paths_plus_gold_solutions():
    ctx = Ctx({"q1": [chain("12 + 12 = 24."), chain("12+12 = 24 again."), chain("2 * 12 = 24.")]})
    out = items(ctx, RftConfig())
    assert [i["target"] for i in out] == ["12 + 12 = 24.", "2 * 12 = 24.", "12 + 12 = 24. The answer is 24."]
    assert ctx.logged == {"data/right_chains": 3, "data/distinct_paths": 2, "data/gold_solutions": 1}
    assert len(items(Ctx(ctx.positives), RftConfig(with_gold_rationale=False, max_chains=1))) == 1


def test_bad_options_are_one_line_errors():
    with pytest.raises(Exception, match="dedup must be"):
        make_config(METHODS["rft"], {"dedup": "paths"})
    assert make_config(METHODS["rft"], {}).dedup == "equations"
