"""MATH (LaTeX) answer checking: hand-written cases from real MATH answers, properties, hang guards."""

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks import checking
from tasks.checking import SYMPY_TIMEOUT, equivalent, math_canonical, math_equivalent, math_normalize

HANG_GUARD = SYMPY_TIMEOUT + 5  # not a timing threshold: only catches a check that never returns


@pytest.mark.parametrize(
    "pred, gold",
    [
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac12", "0.5"),
        (r"\dfrac12", r"\frac{1}{2}"),
        (r"-\frac{17}{7}", r"-\frac{17}7"),
        (r"\frac{-1}{2}", r"-\frac{1}{2}"),
        (".5", "0.5"),
        ("1{,}008{,}016", "1008016"),
        ("1,008,016", "1008016"),
        ("x=5", "5"),
        ("x = 5", "5"),
        ("f(x+2) = 2", "2"),
        ("y = 2x+3", "2x+3"),
        (r"10\%", "10"),
        (r"5\text{ cm}", "5"),
        (r"3\text{ km/hr}", "3"),
        (r"20\text{ days}", "20"),
        (r"45^\circ", "45"),
        (r"45^{\circ}", "45"),
        (r"\$1.50", "1.5"),
        (r"-\frac{5}{3}.", r"-\frac{5}{3}"),
        (r"\boxed{7}", "7"),
        (r"\text{(A)}", "A"),
        (r"\textbf{(C)}", "C"),
        (r"\text{Monday}", r"\text{monday}"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"\{1,2\}", r"\{2,1\}"),
        ("1, 2, 3", "3,2,1"),
        (r"2, 3, \text{ and } 4", "2,3,4"),
        (r"(-\infty,3]\cup[4,\infty)", r"[4,\infty) \cup (-\infty, 3]"),
        (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"\begin{pmatrix} 1/2 \\ -3 \end{pmatrix}", r"\begin{pmatrix} \frac{1}{2} \\ -3 \end{pmatrix}"),
        (r"2\frac{1}{2}", "2.5"),  # a mixed number, as MATH writes them
        ("0.3333333", r"\frac{1}{3}"),  # decimals within REL_TOL
        (r"x \in [1,2)", "[1,2)"),
        (r"\sqrt2", r"\sqrt{2}"),
    ],
)
def test_equivalent_cheap(pred, gold):
    assert math_equivalent(pred, gold)
    assert math_equivalent(gold, pred)


@pytest.mark.parametrize(
    "pred, gold",
    [
        (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"),
        (r"\pi/2", r"\frac{\pi}{2}"),
        (r"2\sqrt{3}", r"\sqrt{12}"),
        (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
        ("x^2+7x+10", "(x+2)(x+5)"),
        (r"\frac{9\pi}{4}", r"\frac{9}{4}\pi"),
        ("1+i", "i+1"),
        ("(1+i)^2", "2i"),
        ("x<3", "3>x"),
        (r"(\sqrt{2}, 1)", r"(\frac{2}{\sqrt{2}}, 1)"),  # a tuple whose element needs sympy
        ("0.7071068", r"\frac{\sqrt{2}}{2}"),
    ],
)
def test_equivalent_sympy(pred, gold):
    assert math_equivalent(pred, gold)
    assert math_equivalent(gold, pred)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("(1,2)", "(2,1)"),
        ("[1,2)", "[1,2]"),
        ("(1,2)", "[1,2]"),
        (r"\{1,2\}", r"\{1,2,3\}"),
        ("3", "4"),
        ("12345679", "12345678"),
        (r"\frac{1}{2}", r"\frac{1}{3}"),
        (r"\sqrt{17}", "5"),
        ("2x", "2"),
        ("x^2+7x+11", "(x+2)(x+5)"),
        ("10_3", "3"),  # a base-3 numeral is not the integer 10
        ("3120_3", "10200_3"),
        (r"\text{(A)}", "B"),
        (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}2\\1\end{pmatrix}"),
        ("0.33", r"\frac{1}{3}"),
        ("0.7071", r"\frac{\sqrt{2}}{2}"),  # too rough a decimal for an exact answer
        ("", "5"),
    ],
)
def test_not_equivalent(pred, gold):
    assert not math_equivalent(pred, gold)
    assert not math_equivalent(gold, pred)


def test_none_is_wrong():
    assert not math_equivalent(None, "5")


@pytest.mark.parametrize(
    "raw, normal",
    [
        (r"$\dfrac12$", r"\frac{1}{2}"),
        (r"\left( 3, \frac14 \right)", r"(3,\frac{1}{4})"),
        (r"5\text{ cm}^2", "5"),
        (r"\boxed{\text{(B)}}", "B"),
        ("1,234", "1234"),
        (r"2 \pi r", r"2\pi r"),  # the space that keeps \pi and r apart survives
        (r"x^{2}", "x^2"),
        (r"\sqrt[3]2", r"\sqrt[3]{2}"),
    ],
)
def test_math_normalize(raw, normal):
    assert math_normalize(raw) == normal


@pytest.mark.parametrize(
    "raw, key", [(r"\frac{1}{2}", "0.5"), (r"-\dfrac{4}{8}", "-0.5"), ("2/6", "1/3"), ("x=1,000", "1000")]
)
def test_math_canonical_numbers(raw, key):
    assert math_canonical(raw) == key


def test_numeric_equivalent_accepts_latex_fractions():
    assert equivalent(r"\frac{1}{2}", "0.5")
    assert equivalent("0.5", r"\dfrac{1}{2}")
    assert not equivalent(r"\frac{1}{3}", "0.5")


# --- properties --------------------------------------------------------------------------------

_atoms = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["x", "y", r"\pi", r"\sqrt{2}", r"\sqrt3", "0.5", ".25", r"\infty", "e", "i"]),
    st.tuples(st.integers(-50, 50), st.integers(1, 50)).map(lambda t: rf"\frac{{{t[0]}}}{{{t[1]}}}"),
    st.tuples(st.integers(-50, 50), st.integers(1, 50)).map(lambda t: rf"\dfrac{t[0] % 10}{t[1] % 10}"),
)
_latexish = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", r"\cdot", "^", "/", ""]), inner).map("".join),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + ", ".join(xs) + ")"),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: r"\{" + ",".join(xs) + r"\}"),
        inner.map(lambda x: rf"\left( {x} \right)"),
        inner.map(lambda x: f"x = {x}"),
        inner.map(lambda x: rf"{x}\text{{ cm}}"),
    ),
    max_leaves=6,
)
_answers = st.one_of(_latexish, st.text(max_size=30), st.integers(-(10**9), 10**9).map(lambda n: f"{n:,}"))
_fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fast
@given(_answers)
def test_reflexive(s):
    assert math_equivalent(s, s)
    assert math_equivalent(s, math_normalize(s) or s) or not math_normalize(s)


@_fast
@given(_answers)
def test_normalize_and_canonical_idempotent(s):
    assert math_normalize(math_normalize(s)) == math_normalize(s)
    assert math_canonical(math_canonical(s)) == math_canonical(s)


@_fast
@given(_answers, _answers)
def test_symmetric(a, b):
    # Two rules are one-way on purpose: a predicted equation states its last member (a gold one
    # does not), and a predicted "3,25" may be a decimal comma (a gold one is a list).
    one_way = "=" in a + b or any(checking._DECIMAL_COMMA.fullmatch(math_normalize(x)) for x in (a, b))
    if not one_way:
        assert math_equivalent(a, b, timeout=10) == math_equivalent(b, a, timeout=10)


_numeric_forms = st.fractions(min_value=-1000, max_value=1000, max_denominator=64).flatmap(
    lambda q: st.sampled_from(
        [
            str(q),
            rf"\frac{{{q.numerator}}}{{{q.denominator}}}",
            rf"\dfrac{{{q.numerator}}}{{{q.denominator}}}",
            f"x = {q}",
            checking.format_number(q),
        ]
    )
)


@_fast
@given(st.one_of(_answers, _numeric_forms), st.one_of(_answers, _numeric_forms))
def test_equal_canonical_implies_equivalent(a, b):
    if math_canonical(a) == math_canonical(b):
        assert math_equivalent(a, b)


# --- adversarial inputs and the time limit ----------------------------------------------------

_ADVERSARIAL = [
    "9**9**9**9",
    "9^{9^{9^{9}}}",
    r"9^{9^{9^{9}}} - 1",
    r"\frac{" * 10_000 + "1" + "}" * 10_000,
    "(" * 10_000 + "1" + ")" * 10_000,
    r"\sqrt{" * 3_000 + "2" + "}" * 3_000,
    "x" * 1_000_000,
    "1," * 500_000,
    "",
    " ",
    "\x00",
    "1\x002",
    "\u00bd",
    "\u221a2",
    "\U0001f600",
    r"\boxed{",
    "}" * 50,
    r"\begin{pmatrix}" + "1&" * 2000 + r"1\end{pmatrix}",
    r"100000!",
    r"(10^{100})!",
]


@pytest.mark.parametrize("bad", _ADVERSARIAL, ids=range(len(_ADVERSARIAL)))
@pytest.mark.parametrize("other", ["1", r"\frac{1}{2}", r"9^{9^{9^{9}}}"])
def test_adversarial_returns_bool_in_time(bad, other):
    start = time.monotonic()
    for a, b in ((bad, other), (other, bad), (bad, bad)):
        assert isinstance(math_equivalent(a, b), bool)
        math_canonical(a)
    assert time.monotonic() - start < 3 * HANG_GUARD


def test_timeout_kills_and_recovers():
    before = checking.SYMPY_STATS.timeouts
    # Reaches sympy (the float pre-check does not know \log) and cannot finish in 1 ms: parsing
    # alone takes longer, so the worker is killed mid-request.
    hard = r"\log(x)\sin(x)^{40}+\frac{(x+1)^{40}-(y-1)^{40}}{x+y}"
    start = time.monotonic()
    assert math_equivalent(hard, r"\cos(x)+\log(y)", timeout=0.001) is False
    assert time.monotonic() - start < HANG_GUARD
    assert checking.SYMPY_STATS.timeouts == before + 1
    assert math_equivalent(r"2\sqrt{3}", r"\sqrt{12}")  # the pool came back


def test_works_from_threads():
    results: dict[int, bool] = {}
    pairs = [(r"2\sqrt{3}", r"\sqrt{12}"), (r"\sqrt{8}", r"2\sqrt{2}"), ("(x+1)^2", "x^2+2x+1"), (r"\sqrt{17}", "4")]

    def work(k: int) -> None:
        pred, gold = pairs[k % len(pairs)]
        results[k] = math_equivalent(pred + " " * k, gold)  # distinct strings: no shared cache hit

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD * 4)
    assert not any(t.is_alive() for t in threads)
    assert results == {k: k % len(pairs) != 3 for k in range(8)}


def test_pool_shutdown_leaves_no_process():
    pool = checking.SympyPool(size=1)
    assert pool.compare("x+1", "1+x", timeout=30) is True
    procs = [w.proc for w in pool._all]
    pool.close()
    assert procs and all(p.poll() is not None for p in procs)
