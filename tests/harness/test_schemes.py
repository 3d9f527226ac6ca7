"""weighted, asc and esc: hand-computed cases and the properties issue 5 names."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.aggregate import RANKER_SCORE, decide, group, parse_scheme
from harness.errors import UserError
from harness.types import Chain
from tasks import get_task


def chain(answer: str | None, logprob: float = -1.0, n_tokens: int = 1, score: float | None = None) -> Chain:
    meta = {} if score is None else {RANKER_SCORE: score}
    return Chain(example_id="e", source="student:t", text="", answer=answer, logprob=logprob, n_tokens=n_tokens, meta=meta)


def pick(spec: str, chains: list[Chain], key=None, same=None) -> str | None:
    return decide(parse_scheme(spec), chains, key, same).answer


# --- weighted ---------------------------------------------------------------------------------


def test_weighted_uses_length_normalised_probability() -> None:
    # "a": exp(-0.1) = 0.905 (one confident chain); "b": 2 * exp(-2) = 0.271 (two unlikely ones)
    cs = [chain("a", logprob=-1.0, n_tokens=10), chain("b", -20.0, 10), chain("b", -20.0, 10)]
    assert pick("weighted", cs) == "a"
    assert pick("majority", cs) == "b"
    # without the length normalisation a long chain would lose: -5 over 50 tokens beats -1 over 1
    cs = [chain("long", -5.0, 50), chain("short", -1.0, 1)]
    assert math.exp(-5 / 50) > math.exp(-1 / 1)
    assert pick("weighted", cs) == "long"


def test_weighted_without_logprob_is_a_user_error() -> None:
    with pytest.raises(UserError, match="log-probability"):
        pick("weighted", [Chain("e", "s", "", "1")])


# --- asc --------------------------------------------------------------------------------------


def test_asc_flags_hand_computed() -> None:
    # a: s = 0.9 ; b, b: s = 0.2 each
    cs = [chain("a", score=0.9), chain("b", score=0.2), chain("b", score=0.2)]
    # flag 0: 1 vs 2 -> b; flag 1: 1+1.8 = 2.8 vs 2*(1.4) = 2.8 -> tie -> a (first seen)
    # flag 2: 1.9 vs 2.4 -> b; flag 3: 0.9 vs 0.4 -> a
    assert [pick(f"asc:{f}", cs) for f in range(4)] == ["b", "a", "b", "a"]
    assert pick("asc", cs) == pick("asc:3", cs)


def test_asc_needs_scores_except_flag_0() -> None:
    cs = [chain("a"), chain("b"), chain("b")]
    assert pick("asc:0", cs) == "b"
    with pytest.raises(UserError, match="ranker score"):
        pick("asc:1", cs)
    with pytest.raises(UserError, match="ranker score"):
        pick("asc", [chain("a", score=1.5)])


# --- esc --------------------------------------------------------------------------------------


def test_esc_stops_at_first_unanimous_window() -> None:
    cs = [chain(a) for a in ["1", "2", "3", "3", "3", "3", "9", "9", "9"]]
    d = decide(parse_scheme("esc:3"), cs)
    assert (d.answer, d.used) == ("3", 6)  # window 1 mixed, window 2 (3, 3, 3) unanimous
    d = decide(parse_scheme("esc:2"), cs)
    assert (d.answer, d.used) == ("3", 4)
    # no unanimous window: majority over all, all chains used
    cs = [chain(a) for a in ["1", "2", "1", "2", "1", None]]
    d = decide(parse_scheme("esc:2"), cs)
    assert (d.answer, d.used) == ("1", 6)


def test_esc_window_of_unparsable_answers_does_not_stop() -> None:
    cs = [chain(a) for a in [None, None, "4", "4"]]
    d = decide(parse_scheme("esc:2"), cs)
    assert (d.answer, d.used) == ("4", 4)


# --- properties -------------------------------------------------------------------------------

ANSWERS = ["1", "2", "0.5", "\\frac{1}{2}", "1/2", "3"]
answers = st.lists(st.one_of(st.none(), st.sampled_from(ANSWERS)), min_size=1, max_size=10)
MATH = get_task("math500")


def winner_group(spec: str, cs: list[Chain]) -> tuple[str, ...] | None:
    """The winning answer's canonical group (what 'the result' means up to spelling)."""
    a = pick(spec, cs, MATH.canonical, MATH.equivalent)
    return None if a is None else MATH.canonical(a)


def unique_top(cs: list[Chain], weights: list[float]) -> bool:
    g = group([c.answer for c in cs], MATH.canonical, MATH.equivalent)
    totals: dict[int, float] = {}
    for i, w in zip(g.ids, weights):
        if i >= 0:
            totals[i] = totals.get(i, 0.0) + w
    top = sorted(totals.values(), reverse=True)
    return len(top) < 2 or top[0] > top[1] + 1e-9


@settings(max_examples=60, deadline=None)
@given(answers, st.lists(st.floats(0, 1), min_size=10, max_size=10), st.randoms(use_true_random=False))
def test_permutation_never_changes_a_unique_winner(ans, scores, rnd) -> None:
    cs = [chain(a, logprob=-3 * s - 0.1, n_tokens=3, score=s) for a, s in zip(ans, scores)]
    for spec, weights in (
        ("majority", [1.0] * len(cs)),
        ("weighted", [math.exp(c.logprob / c.n_tokens) for c in cs]),
        ("asc:1", [1 + 2 * c.meta[RANKER_SCORE] for c in cs]),
    ):
        if not unique_top(cs, weights):
            continue  # a tie goes to the first-seen group: order decides, by design (module doc)
        shuffled = list(cs)
        rnd.shuffle(shuffled)
        assert winner_group(spec, cs) == winner_group(spec, shuffled)


@settings(max_examples=60, deadline=None)
@given(answers, st.lists(st.floats(0, 1), min_size=10, max_size=10))
def test_asc_flag_0_is_majority(ans, scores) -> None:
    cs = [chain(a, score=s) for a, s in zip(ans, scores)]
    assert pick("asc:0", cs, MATH.canonical, MATH.equivalent) == pick("majority", cs, MATH.canonical, MATH.equivalent)


@settings(max_examples=60, deadline=None)
@given(answers, st.floats(-50, 0), st.integers(1, 40))
def test_weighted_with_equal_weights_is_majority(ans, logprob, n_tokens) -> None:
    cs = [chain(a, logprob=logprob, n_tokens=n_tokens) for a in ans]
    assert pick("weighted", cs, MATH.canonical, MATH.equivalent) == pick("majority", cs, MATH.canonical, MATH.equivalent)


@pytest.mark.parametrize("spec", ["majority", "weighted", "asc:2", "esc:2"])
def test_equivalent_spellings_vote_together(spec: str) -> None:
    # 0.5, \frac{1}{2} and 1/2 are one answer with three votes; 3 has two
    cs = [chain(a, score=0.5) for a in ["3", "0.5", "3", "\\frac{1}{2}", "1/2"]]
    assert pick(spec, cs, MATH.canonical, MATH.equivalent) == "0.5"
    # raw strings (no equivalence) would let 3 win
    assert pick(spec, cs) == "3"
