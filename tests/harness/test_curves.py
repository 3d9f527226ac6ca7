"""pass@k and scheme@k curves: the estimator against enumeration, the vectorised votes against
the aggregators run on every prefix of the same orders."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.aggregate import RANKER_SCORE, Scheme, decide, parse_scheme
from harness.curves import breakdown, pass_at_k, prepare, random_orders, scheme_curves
from harness.errors import UserError
from harness.types import Chain, Example


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_enumeration(nck) -> None:
    n, c, k = nck
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_edges() -> None:
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 5, 1) == 1.0 and pass_at_k(4, 1, 1) == 0.25
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def make_chains(rnd: random.Random, k: int, ex_id: str) -> list[Chain]:
    out = []
    for _ in range(k):
        a = rnd.choice([None, "1", "2", "2", "3", "4"])
        out.append(Chain(ex_id, "s", "", a, logprob=-rnd.uniform(0.1, 5), n_tokens=rnd.randint(1, 5), meta={RANKER_SCORE: rnd.random()}))
    return out


SCHEMES = [parse_scheme(s) for s in ("weighted", "asc:0", "majority", "asc:1", "asc:3", "esc:2", "esc:3")]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curves_equal_the_aggregators_on_every_prefix(seed: int) -> None:
    rnd = random.Random(seed)
    K, S = 7, 5
    golds = {f"e{i}": rnd.choice(["1", "2", "3"]) for i in range(6)}
    chains = {e: make_chains(rnd, K, e) for e in golds}
    grouped = [prepare(chains[e], golds[e]) for e in golds]
    curves = scheme_curves(grouped, SCHEMES, subsamples=S, seed=seed)

    # the same orders, then each scheme on each prefix, the slow way
    rng = np.random.default_rng(seed)
    expect = {s.spec: np.zeros(K) for s in SCHEMES}
    used = {s.spec: np.zeros(K) for s in SCHEMES}
    for e in golds:
        orders = random_orders(rng, S, K)
        for s in SCHEMES:
            for order in orders:
                for k in range(1, K + 1):
                    d = decide(Scheme(s.spec, s.name, s.arg), [chains[e][j] for j in order[:k]])
                    expect[s.spec][k - 1] += (d.answer == golds[e]) / (S * len(golds))
                    used[s.spec][k - 1] += d.used / (S * len(golds))
    for s in SCHEMES:
        assert curves.schemes[s.spec].acc == pytest.approx(expect[s.spec].tolist(), abs=1e-12), s.spec
        assert curves.schemes[s.spec].used == pytest.approx(used[s.spec].tolist(), abs=1e-12), s.spec
    n_correct = [sum(c.answer == golds[e] for c in chains[e]) for e in golds]
    assert curves.pass_at == pytest.approx([np.mean([pass_at_k(K, c, k) for c in n_correct]) for k in range(1, K + 1)])


def test_majority_at_k_full_is_plain_majority_when_unique() -> None:
    ch = [Chain("e", "s", "", a) for a in ["2", "1", "2", None, "2"]]
    curves = scheme_curves([prepare(ch, "2")], [parse_scheme("majority")], subsamples=50)
    assert curves.schemes["majority"].acc[-1] == 1.0  # 2 wins in every order with all 5 chains
    assert curves.schemes["majority"].acc[0] == pytest.approx(0.6, abs=0.15)  # one random chain


def test_curves_need_equal_chain_counts() -> None:
    a = prepare([Chain("a", "s", "", "1")], "1")
    b = prepare([Chain("b", "s", "", "1")] * 2, "1")
    with pytest.raises(UserError, match="same number of chains"):
        scheme_curves([a, b], [parse_scheme("majority")])
    with pytest.raises(UserError, match="greedy"):
        scheme_curves([a], [parse_scheme("greedy")])


def test_breakdown_by_subject_and_level() -> None:
    exs = [Example(f"e{i}", "", "1", meta={"subject": s, "level": lv}) for i, (s, lv) in enumerate([("Algebra", 1), ("Algebra", 2), ("Geometry", 2)])]
    got = breakdown(exs, {"e0": True, "e1": False, "e2": True})
    assert got == {"subject": {"Algebra": (0.5, 2), "Geometry": (1.0, 1)}, "level": {"1": (1.0, 1), "2": (0.5, 2)}}
    assert breakdown([Example("x", "", "1")], {"x": True}) == {}
    assert math.isfinite(got["subject"]["Algebra"][0])


@pytest.mark.parametrize("answers, gold", [(["2", None, "2", "2"], "2"), ([None, None, "3", "3"], "2"), (["1", "3", None, "1"], "2"), ([None] * 4, "2")])
def test_shortcuts_equal_the_aggregators(answers: list[str | None], gold: str) -> None:
    # one answer group, or no right group: the curve is computed without votes
    chains = [Chain("e", "s", "", a, logprob=-1.0, n_tokens=2, meta={RANKER_SCORE: 0.0}) for a in answers]
    curves = scheme_curves([prepare(chains, gold)], SCHEMES, subsamples=4, seed=3)
    orders = random_orders(np.random.default_rng(3), 4, len(chains))
    for s in SCHEMES:
        want = [np.mean([decide(s, [chains[j] for j in o[:k]]).answer == gold for o in orders]) for k in range(1, 5)]
        assert curves.schemes[s.spec].acc == pytest.approx(want), s.spec


@pytest.mark.parametrize("seed", [0, 1])
def test_a_scheme_without_a_vectorised_curve_gets_one_from_its_own_decisions(seed: int, monkeypatch) -> None:
    """A newly registered scheme (no vote weights, no vectorised curve) has a k-curve at once:
    its own decide run on every prefix. Checked two ways: a throwaway 'first parsed answer'
    scheme against a hand loop, and 'majority' forced through the same path against its
    vectorised curve (they must be identical)."""
    import dataclasses

    from harness import aggregate
    from harness.aggregate import AGGREGATORS, Decision, SchemeDef

    def first_parsed(chains, groups, arg=None):
        for i, g in enumerate(groups.ids):
            if g >= 0:
                return Decision(groups.answer(g), i + 1)
        return Decision(None, len(chains))

    monkeypatch.setitem(AGGREGATORS, "first", SchemeDef("first", first_parsed, "the first parsed answer", reports_used=True))
    plain_majority = dataclasses.replace(AGGREGATORS["majority"], name="plain", weights=None)
    monkeypatch.setitem(AGGREGATORS, "plain", plain_majority)
    rnd = random.Random(seed)
    K, S = 6, 4
    golds = {f"e{i}": rnd.choice(["1", "2", "3"]) for i in range(5)}
    chains = {e: make_chains(rnd, K, e) for e in golds}
    grouped = [prepare(chains[e], golds[e]) for e in golds]
    first, plain, majority = (aggregate.parse_scheme(s) for s in ("first", "plain", "majority"))
    curves = scheme_curves(grouped, [first, plain, majority], subsamples=S, seed=seed)
    assert curves.schemes["plain"].acc == pytest.approx(curves.schemes["majority"].acc, abs=1e-12)

    rng = np.random.default_rng(seed)
    acc, used = np.zeros(K), np.zeros(K)
    for e in golds:
        order = random_orders(rng, S, K)
        for row in order:
            for k in range(1, K + 1):
                d = decide(first, [chains[e][j] for j in row[:k]])
                acc[k - 1] += d.answer == golds[e]
                used[k - 1] += d.used
    n = len(golds) * S
    assert curves.schemes["first"].acc == pytest.approx((acc / n).tolist(), abs=1e-12)
    assert curves.schemes["first"].used == pytest.approx((used / n).tolist(), abs=1e-12)


def test_greedy_at_1_is_greedy() -> None:
    s = parse_scheme("greedy@1")
    assert (s.name, s.k, s.sampled) == ("greedy", None, False)
    with pytest.raises(UserError, match="one chain per example"):
        parse_scheme("greedy@2")
    with pytest.raises(UserError, match=r"takes no ':' argument \(only asc:FLAG, esc:WINDOW do\)"):
        parse_scheme("majority:2")
