"""tasks/extraction.py: each source on its own, the priority order, and fuzzing for safety."""

from __future__ import annotations

import builtins
import contextlib
import subprocess
import time
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks import extraction
from tasks.extraction import boxed_answer, display_answer, find_answer, math_spans, stated_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (r"$\boxed{5}$", "5"),
        (r"\boxed{\frac{1}{2}} then \boxed{7}", "7"),
        (r"\boxed{4} and \boxed{-1}", "4, -1"),
        (r"$\boxed{4}$, $\boxed{5}$, or $\boxed{6}$.", "4, 5, 6"),
        (r"\boxed{4}. So the answer is \boxed{5}", "5"),
        (r"\boxed{\boxed{3}}", r"\boxed{3}"),  # the outer box (normalisation unwraps it)
        (r"\fbox{8}", "8"),
        (r"\boxed 9.", "9"),
        (r"\boxed{}", None),
        (r"\boxed{unclosed", None),
        ("no box", None),
    ],
)
def test_boxed(text, answer):
    assert boxed_answer(text) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The answer is 42.", "42"),
        ("So the answer is: 3.5 km.", "3.5 km"),
        ("Final answer: the smallest k is 12.", "12"),
        (r"Final answer: $\frac{1}{2}$", r"\frac{1}{2}"),
        (r"Final Answer: The final answer is $x^2$. I hope it is correct.", "x^2"),
        ("Answer: 17\nmore text", "17"),
        ("**Answer:** 17", "17"),
        (r"The final answer is $$\begin{pmatrix} 1 \\ 2 \end{pmatrix}$$", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"The answer is $4$ and $-1$.", "4, -1"),
        ("#### 1,234", "1,234"),
        ("The answer is 1. The answer is 2.", "2"),
        ("To answer this we add.", None),
        ("The answer is", None),
    ],
)
def test_stated(text, answer):
    assert stated_answer(text) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (r"so $x = 3$ and $$y = 4$$", "y = 4"),
        (r"we get \(\frac{3}{4}\).", r"\frac{3}{4}"),
        (r"\[ 2\sqrt{2} \] is it", r"2\sqrt{2}"),
        ("It costs $5 and $6 in total.", None),  # currency, not math (Pandoc's rule)
        ("between $5 and $6", None),
        (r"price \$5, then $x$", "x"),
        ("$x = 19.$", "x = 19"),
        ("$$ unclosed", None),
    ],
)
def test_display(text, answer):
    assert display_answer(text) == answer


def test_math_spans_are_linear_and_ordered():
    spans = math_spans(r"a $x$ b $$y$$ c \(z\) d \[w\]")
    assert [c for _, _, c in spans] == ["x", "y", "z", "w"]
    big = "$" * 20_000 + "$$ " * 20_000
    start = time.perf_counter()
    math_spans(big)
    assert time.perf_counter() - start < 5  # a pathological string, not a timing claim: linear scan


def test_priority_and_think():
    text = r"<think>\boxed{1}</think>The answer is $\boxed{3}$. We checked $\boxed{2}$ too"
    assert find_answer(text) == ("2", "boxed")
    assert find_answer(text, ("stated", "boxed")) == ("3", "stated")  # a box inside the statement
    assert find_answer("The answer is 2. Also $\\boxed{3}$", ("stated", "boxed")) == ("2", "stated")
    assert find_answer("<think>\\boxed{1}</think>") == ("1", "boxed")  # nothing after </think>: the whole text
    assert find_answer("so $x=2$, then 7", ("display",)) == ("x=2", "display")
    assert find_answer("so $x=2$, then 7", ("number",)) == ("7", "number")
    assert find_answer("nothing", extraction.SOURCES) is None
    assert find_answer(None) is None


def test_check_order():
    assert extraction.check_order(["number", "boxed"]) == ("number", "boxed")
    for bad in ([], ["boxd"], ["boxed", "boxed"]):
        with pytest.raises(ValueError, match="answer_order"):
            extraction.check_order(bad)


# --- fuzz: model text is untrusted ------------------------------------------------------------

_pieces = st.sampled_from(
    ["$", "$$", r"\(", r"\)", r"\[", r"\]", r"\boxed{", r"\fbox{", "{", "}", "The answer is", "Final answer:",
     "Answer:", "####", "</think>", " and ", ", ", ".", "\n", "x = ", "12", "3.5", r"\frac{1}{2}", "__import__('os')",
     "os.system('x')", "I hope it is correct", "**"]
)
_texts = st.one_of(st.text(max_size=200), st.lists(st.one_of(_pieces, st.text(max_size=5)), max_size=40).map("".join))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts, st.permutations(extraction.SOURCES))
def test_fuzz_extraction_never_evaluates(text, order):
    with _no_eval():
        found = find_answer(text, order)
    assert found is None or (isinstance(found.answer, str) and found.answer and found.source in order)


@contextlib.contextmanager
def _no_eval():
    """Any path from extraction to eval, exec, sympify or a subprocess fails the test."""
    import sympy

    def boom(*a, **k):
        raise AssertionError("model text reached eval / sympify / a shell")

    with (mock.patch.object(builtins, "eval", boom), mock.patch.object(builtins, "exec", boom),
          mock.patch.object(sympy, "sympify", boom), mock.patch.object(subprocess, "Popen", boom)):
        yield
