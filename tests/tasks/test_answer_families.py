r"""Answers as real models write them, one table per family: (chain text, gold, verdict).

Each row goes through the MATH task's own extract + equivalent (tasks/extraction.py, then
checking.math_equivalent), so a row tests where the answer is found and how it is compared.
Negatives (pairs that must not match) sit in the same tables. The last table holds real TDG
GPT-3.5 chains from ../shared/data whose verdict this layer decides.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks import checking, get_task

MATH = get_task("math500")
ROUNDING = get_task("math500", rounding=True)
TDG = Path(__file__).resolve().parents[3] / "shared" / "data" / "tdg" / "GPT3.5-turbo-MATH"


def verdict(text: str, gold: str, task=MATH) -> bool:
    return task.equivalent(task.extract(text), gold)


UNBOXED = [
    (r"The area is $$\frac{3}{4}$$", r"\frac34", True),
    (r"so the area is \[ 2\sqrt{2} \]", r"\sqrt{8}", True),
    (r"Hence \(x = 7\).", "7", True),
    (r"We get $x = 19.$", "19", True),
    ("Final answer: the smallest k is 12.", "12", True),
    ("Final answer: the smallest k is 13.", "12", False),
    (r"so the answer is: $\frac{1}{2}$", r"\frac12", True),
    (r"**Answer:** $-\frac{5}{3}$", r"-\frac53", True),
    (r"Final Answer: The final answer is $(2,5)$. I hope it is correct.", "(2, 5)", True),
    (r"<think>It is 5, no, 6. Hmm.</think> The answer is $\frac{3}{4}$.", r"\frac34", True),
    (r"<think>The answer is \boxed{5}</think> Therefore the result is $7$.", "7", True),
    (r"<think>The answer is \boxed{5}</think> Therefore the result is $7$.", "5", False),
    # priority: a box beats a stated answer, a stated answer beats the last display math
    (r"The answer is $3$. Check: $\boxed{4}$", "4", True),
    (r"The answer is $3$, since $x^2 = 9$ for $x = 3$ and then $y = 4$.", "3", True),
    ("I cannot decide.", "3", False),
    ("", "3", False),
]

SEVERAL = [
    (r"so $x = \boxed{4}$ and $x = \boxed{-1}$.", "-1, 4", True),
    (r"so $\boxed{4}$ and $\boxed{-1}$.", r"\{4, -1\}", True),
    (r"$\boxed{-1, 4}$", r"\{4, -1\}", True),
    (r"$\boxed{4}$, $\boxed{-1}$", r"4,-1", True),
    (r"$\boxed{4}$ and $\boxed{-2}$", "-1, 4", False),
    (r"$\boxed{4}$ and $\boxed{-1}$", "4", False),  # two answers for one: wrong
    (r"\boxed{(1,4)} and \boxed{(3,0)}", "(3, 0), (1, 4)", True),
    (r"\boxed{(4,1)} and \boxed{(3,0)}", "(3, 0), (1, 4)", False),  # tuples keep their order
    (r"First $\boxed{3}$ is wrong. After checking, the answer is $\boxed{5}$.", "5", True),  # not joined
    (r"The solutions are $\boxed{1}$ or $\boxed{2}$", "1,2", True),
]

RELATIONS = [
    (r"\boxed{y \geq 2}", "y >= 2", True),
    (r"\boxed{y >= 2}", r"2 \le y", True),
    (r"\boxed{y \ge 2}", r"[2, \infty)", True),
    (r"\boxed{y > 2}", r"y \ge 2", False),
    (r"\boxed{x \geq 2}", r"y \geq 2", False),
    (r"\boxed{y \neq 2}", "y != 2", True),
    (r"\boxed{y \ne 2}", r"(-\infty, 2) \cup (2, \infty)", True),
    (r"\boxed{-1 \le t \le 4}", r"t \in [-1, 4]", True),
    (r"\boxed{[-1, 4]}", r"-1 \le t \le 4", True),
    (r"\boxed{-1 < t \le 4}", r"t \in [-1, 4]", False),
    (r"\boxed{4 \geq t \geq -1}", r"[-1, 4]", True),
    (r"\boxed{(-3, 3)}", "|x| < 3", True),
    (r"\boxed{|x| < 3}", "(-3, 3)", True),
    (r"\boxed{[-3, 3]}", "|x| < 3", False),
    (r"\boxed{|x| \ge 3}", r"(-\infty,-3] \cup [3,\infty)", True),
    (r"\boxed{x < -1 \text{ or } x > 3}", r"(-\infty,-1)\cup(3,\infty)", True),
    (r"\boxed{(2,\infty) \cup (-\infty,1)}", r"(-\infty, 1) \cup (2, \infty)", True),
    (r"\boxed{(-\infty,-1] \cup [-1,3] \cup (3,\infty)}", r"(-\infty,\infty)", True),
    (r"\boxed{(-\infty,-1) \cup (-1,\infty)}", r"(-\infty,\infty)", False),
    (r"\boxed{\mathbb{R}}", r"(-\infty,\infty)", True),
    (r"\boxed{\frac{29}{5} \le x < 6}", "[5.8,6)", True),
    # an equation vs its bare right-hand side, as math-verify decides: a stated equation gives
    # its right side; a gold equation is not its right side
    (r"\boxed{3p + q}", "5 = 3p + q", False),
    (r"\boxed{5 = 3p + q}", "3p+q", True),
    (r"\boxed{5! = 120}", "120", True),
    (r"\boxed{120}", "0.56 = 56\\%", False),
    (r"\boxed{56\%}", "0.56 = 56\\%", True),  # a gold computation: its last member
]

EQUATIONS = [
    (r"\boxed{y = \frac12 x + \frac13}", "3x - 6y + 2 = 0", True),
    (r"\boxed{3x - 6y + 2 = 0}", r"y = \frac{1}{2}x + \frac{1}{3}", True),
    (r"\boxed{y = \frac12 x + \frac14}", "3x - 6y + 2 = 0", False),
    (r"\boxed{x + y = 1}", "2x + 2y - 2 = 0", True),
    (r"\boxed{x - y = 1}", "x + y = 1", False),
    (r"\boxed{y = 2x + 3}", "2x + 3", True),  # the gold assignment's value
    (r"\boxed{y = 2x + 3}", "y = 2x + 3", True),
    (r"\boxed{x = 3}", "y = 3", False),
]

MATRICES = [
    (r"\boxed{\begin{pmatrix} 1/2 & 0.25 \\ 3 & 4 \end{pmatrix}}",
     r"\begin{bmatrix} \frac12 & \frac14 \\ 3 & 4 \end{bmatrix}", True),
    (r"\boxed{\left[\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right]}", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", True),
    (r"$$\begin{pmatrix} 0.5 \\ -1 \end{pmatrix}$$", r"\begin{pmatrix} \frac{1}{2} \\ -1 \end{pmatrix}", True),
    (r"\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}", r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}", False),
    (r"\boxed{\begin{pmatrix} 1 & 2 & 3 & 4 \end{pmatrix}}", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", False),
    (r"\boxed{\begin{vmatrix} 1 & 2 \\ 3 & 4 \end{vmatrix}}", r"\begin{bmatrix} 1 & 2 \\ 3 & 4.0 \end{bmatrix}", True),
]

NUMBERS = [
    (r"The answer is $12,345.5$", "12345.5", True),
    ("The answer is 12,345.", "12345", True),
    ("The answer is 3,25 m.", "3.25", True),
    ("The answer is 3,250 m.", "3.25", False),  # three digits after a comma: thousands
    (r"\boxed{£5}", "5", True),
    (r"\boxed{\pounds 12.50}", "12.5", True),
    (r"\boxed{€3}", "4", False),
    (r"\boxed{5\text{ km}^2}", "5", True),
    (r"\boxed{5 km²}", "5", True),
    (r"\boxed{5 kg}", "5", True),
    (r"\boxed{50\%}", "50", True),
    (r"\boxed{50\%}", "0.5", True),
    (r"\boxed{0.5}", r"50\%", True),
    (r"\boxed{5\%}", "0.5", False),
    # a rounded decimal: only with rounding on (and then to the digits written)
    (r"\boxed{0.67}", r"\frac23", False),
]

ROUNDED = [
    (r"\boxed{0.67}", r"\frac23", True),
    (r"\boxed{0.667}", r"\frac23", True),
    (r"\boxed{0.66}", r"\frac23", False),  # truncated, not rounded
    (r"\boxed{1.4142}", r"\sqrt2", True),
    (r"\boxed{1.41}", r"\sqrt{2}", True),
    (r"\boxed{1.42}", r"\sqrt{2}", False),
    (r"\boxed{0.7}", r"\frac23", False),  # one significant digit is not enough
    (r"\boxed{3.14}", r"\pi", True),
]

TEXT = [
    (r"\boxed{\text{(C)}}", "C", True),
    (r"\boxed{C}", r"\text{(C)}", True),
    (r"\boxed{\textbf{(C)}}", r"\text{(C)}", True),
    (r"\boxed{(D)}", r"\text{(C)}", False),
    (r"\boxed{\text{even}}", r"\text{Even}", True),
    (r"\boxed{\text{odd}}", r"\text{even}", False),
    (r"The answer is \text{Monday}.", r"\text{Monday}", True),
]


FAMILIES = {
    "unboxed": UNBOXED, "several": SEVERAL, "relations": RELATIONS, "equations": EQUATIONS,
    "matrices": MATRICES, "numbers": NUMBERS, "text": TEXT,
}


@pytest.mark.parametrize(
    ("text", "gold", "ok"),
    [pytest.param(*row, id=f"{family}-{i}") for family, rows in FAMILIES.items() for i, row in enumerate(rows)],
)
def test_family(text, gold, ok):
    assert verdict(text, gold) is ok


@pytest.mark.parametrize(("text", "gold", "ok"), ROUNDED)
def test_rounded_decimals_only_when_asked(text, gold, ok):
    assert verdict(text, gold, ROUNDING) is ok
    if ok:
        assert verdict(text, gold) is False  # off by default


def test_answer_order_restricts_the_sources():
    boxed_only = get_task("math500", answer_order=["boxed"])
    assert boxed_only.extract("The answer is $5$.") is None
    assert boxed_only.extract(r"The answer is $\boxed{5}$.") == "5"
    stated_first = get_task("math500", answer_order=["stated", "boxed"])
    assert stated_first.extract(r"$\boxed{4}$ ... The answer is 5.") == "5"
    assert MATH.extract("The answer is 5") == "5"
    assert MATH.extract("so 5 apples") is None  # no last-number fallback for MATH by default
    assert get_task("math500", last_number_fallback=True).extract("so 5 apples") == "5"


def test_word_problems_keep_their_statement_first():
    gsm = get_task("gsm8k")
    assert gsm.extract(r"We box $\boxed{4}$ too. The answer is 5.") == "5"
    assert gsm.extract("<think>The answer is 3.</think>\nFinal answer: 12 apples") == "12 apples"
    assert gsm.equivalent(gsm.extract("**Answer:** $1,234"), "1234")


def _tdg_chain(subject: str, n: int, line: int, k: int) -> tuple[str, str]:
    path = TDG / f"train_gpt3.5_{subject}_8" / f"{n}.jsonl"
    row = json.loads(path.read_text(encoding="utf-8").splitlines()[line])
    return row["generated_answer"][k], checking.last_boxed(row["answer"])


REAL = [
    # (subject, file, line, sample, verdict): real GPT-3.5 chains (bench/CHECKER_NOTES.md)
    ("intermediate_algebra", 17, 1, 2, True),  # "\boxed{-3 < x < 2}" for (-3,2)
    ("intermediate_algebra", 37, 2, 6, True),  # a union that covers the line, for (-\infty,\infty)
    ("intermediate_algebra", 116, 4, 7, True),  # "\frac{29}{5} \le x < 6" for [5.8,6)
    ("intermediate_algebra", 3, 4, 4, False),  # "x = \boxed{17}, \boxed{18}, and \boxed{19}" for 19
    ("prealgebra", 107, 1, 5, False),  # "\boxed{4.0} and \boxed{4.5}" for 4.5
    ("prealgebra", 119, 9, 2, True),  # no box: "... = 0.625." in display math
]


@pytest.mark.skipif(not TDG.is_dir(), reason="needs ../shared/data/tdg (TDG's GPT-3.5 MATH chains) beside the checkout")
@pytest.mark.parametrize(("subject", "n", "line", "k", "ok"), REAL)
def test_real_tdg_chains(subject, n, line, k, ok):
    text, gold = _tdg_chain(subject, n, line, k)
    assert verdict(text, gold) is ok
