"""Near-duplicate detection (harness/contamination.py): the normal form, the rule, and the index
against brute force."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.contamination import (
    CONTAINMENT,
    MIN_CONTAINED_CHARS,
    RECALL,
    THRESHOLD,
    HeldOut,
    contained,
    containment,
    grams,
    jaccard,
    lsh_bands,
    minhashes,
    near_duplicates,
    normalise,
    numbers,
    shingles,
    summary,
)

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = (
    "Emma can peel 5 clams a minute and saute 30 clams in 8 minutes. "
    "How long will it take her to peel and saute 120 clams?"
)


def test_normal_form_canonicalises_numbers_case_and_spacing():
    assert normalise("Tom paid $1,000.50 for 3.0  apples.\nThen 2 MORE!") == "tom paid 1000.5 for 3 apples then 2 more"
    assert normalise("x = 007 + 0.50") == "x = 7 + 0.5"
    assert normalise("It costs 2.5 dollars.") == "it costs 2.5 dollars"  # a decimal point stays, a full stop goes
    assert numbers("Calculate 12 + 7.") == ("12", "7")


def test_exact_duplicate_after_normalisation():
    held = HeldOut(["Calculate 12 + 7.", PROBLEM])
    m = held.match("calculate   12+7")
    assert m is None  # "12+7" and "12 + 7" are different spellings of the text, not numbers
    m = held.match("CALCULATE 12 + 7")
    assert m is not None and m.index == 0 and m.exact and m.similarity == 1.0


def test_a_renamed_or_reworded_problem_is_a_near_duplicate():
    held = HeldOut(["Calculate 3 + 4.", PROBLEM])
    for variant in (PROBLEM.replace("Emma", "Sophia"), PROBLEM.replace("How long will it take her", "How long does it take her")):
        m = held.match(variant)
        assert m is not None and m.index == 1 and not m.exact
        assert m.similarity == pytest.approx(jaccard(shingles(variant), shingles(PROBLEM))) and m.similarity >= THRESHOLD


def test_other_numbers_make_another_problem():
    held = HeldOut(["Calculate 12 + 7.", PROBLEM])
    assert jaccard(shingles("Calculate 12 + 8."), shingles("Calculate 12 + 7.")) > THRESHOLD  # text alone would flag it
    assert held.match("Calculate 12 + 8.") is None
    assert held.match(PROBLEM.replace("120 clams", "240 clams")) is None
    # a threshold of 1.0 keeps only exact duplicates
    assert HeldOut([PROBLEM], 1.0).match(PROBLEM.replace("Emma", "Sophia")) is None


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        HeldOut([], 0.0)


WORDS = "apples pears boxes cars the a of and in has gives sells buys each more less how many".split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randrange(10)) for _ in range(rng.randrange(5, 80)))


def _mutate(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(rng.randrange(1, 3)):
        i = rng.randrange(len(words))
        if not words[i].isdigit():  # keep the numbers, so a mutation can stay a near-duplicate
            words[i] = rng.choice(WORDS)
    return " ".join(words)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_index_finds_what_brute_force_finds(threshold):
    """Prefix filtering is exact: the index's answer equals comparing with every held-out text."""
    rng = random.Random(threshold)
    held_texts = [_text(rng) for _ in range(150)]
    held = HeldOut(held_texts, threshold)
    queries = [_mutate(rng.choice(held_texts), rng) for _ in range(150)] + [_text(rng) for _ in range(50)]
    exact = {normalise(t) for t in held_texts}
    sets = [(shingles(t), numbers(t)) for t in held_texts]
    hits = 0
    for q in queries:
        m = held.match(q)
        best = None
        if normalise(q) in exact:
            assert m is not None and m.exact
            continue
        a, nums = shingles(q), numbers(q)
        for i, (b, b_nums) in enumerate(sets):
            s = jaccard(a, b)
            if s >= threshold and nums == b_nums and (best is None or s > best[1]):
                best = (i, s)
        assert (m is None) == (best is None), q
        if best is not None:
            hits += 1
            assert m.similarity == pytest.approx(best[1])
    assert hits > 5  # the property was exercised on near matches, not only on misses


# --- the grid's check over whole sets (MinHash LSH, verified) -------------------------------------

HELD = [("test-0", PROBLEM), ("test-1", "Calculate 12 + 7."), ("test-2", "A farmer has 14 cows and buys 9 more. How many cows does he have now?")]


def test_near_duplicates_exact_near_and_not_near():
    sources = [
        ("a", "EMMA can peel 5 clams a minute and saute 30 clams in 8 minutes.  How long will it take her to peel and saute 120 clams?"),
        ("b", PROBLEM.replace("Emma", "Sophia")),  # renamed: near
        ("c", PROBLEM.replace("120 clams", "240 clams")),  # other numbers: another problem
        ("d", "Calculate 12 + 8."),  # 0.85 of the text, another answer
        ("e", "A baker sells 14 loaves and bakes 9 more. How many loaves are left?"),  # same numbers, other words
    ]
    pairs = near_duplicates(sources, HELD)
    assert [(p.source, p.target, p.exact) for p in pairs] == [("a", "test-0", True), ("b", "test-0", False)]
    near = pairs[1]
    assert near.similarity == pytest.approx(jaccard(grams(near.source_text), grams(PROBLEM))) and near.similarity >= THRESHOLD
    assert summary(pairs, len(HELD)) == {"exact": 1, "near": 0, "share": 1 / 3}  # test-0 counts once, as exact
    assert summary(pairs[1:], len(HELD)) == {"exact": 0, "near": 1, "share": 1 / 3}


def test_a_chain_that_holds_a_test_question_is_caught():
    chains = [
        ("x#0", f"Question: {PROBLEM} She peels 120 / 5 = 24 minutes, sautes 120 / 30 * 8 = 32 minutes. The answer is 56."),
        ("x#1", "Q: Sophia can peel 5 clams a minute and saute 30 clams in 8 minutes. How long will it take her to peel "
                "and saute 120 clams? 24 + 32 = 56. The answer is 56."),  # the question renamed: near
        ("x#2", "Emma can peel 5 clams a minute and saute 30 clams in 8 minutes. How long will it take her to peel "
                "and saute 100 clams? The answer is 52."),  # 120 is missing: another question
        ("x#3", "14 + 9 = 23. The answer is 23."),  # the numbers of test-2, not its question
    ]
    pairs = contained(chains, HELD)
    assert [(p.source, p.target, p.exact) for p in pairs] == [("x#0", "test-0", True), ("x#1", "test-0", False)]
    assert pairs[1].similarity == pytest.approx(containment(grams(PROBLEM), grams(chains[1][1])))
    assert CONTAINMENT <= pairs[1].similarity < 1.0


@pytest.mark.parametrize("kind", ["char", "word"])
def test_the_check_finds_what_brute_force_finds(kind):
    """LSH candidates verified exactly: the pairs equal comparing every pair (no false positive, and
    here no miss), for both n-gram kinds; a higher threshold only removes pairs."""
    rng = random.Random(7)
    held = [(f"t{i}", _text(rng)) for i in range(120)]
    sources = [(f"s{i}", _mutate(rng.choice(held)[1], rng)) for i in range(150)] + [(f"r{i}", _text(rng)) for i in range(40)]
    by_threshold = {}
    form = {x: (normalise(x), grams(x, kind), numbers(x)) for x in {t for _, t in [*sources, *held]}}
    for t in (0.7, THRESHOLD, 0.9):
        got = {(p.source, p.target): p.similarity for p in near_duplicates(sources, held, t, kind)}
        want = {}
        for sid, s in sources:
            for tid, h in held:
                (ns, gs, xs), (nh, gh, xh) = form[s], form[h]
                sim = jaccard(gs, gh)
                if ns == nh:
                    want[(sid, tid)] = 1.0
                elif sim >= t and xs == xh:
                    want[(sid, tid)] = sim
        assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k]) for k in got)
        by_threshold[t] = set(got)
    assert by_threshold[0.9] <= by_threshold[THRESHOLD] <= by_threshold[0.7] and len(by_threshold[THRESHOLD]) > 20


def test_containment_search_finds_what_brute_force_finds():
    rng = random.Random(3)
    held = [(f"t{i}", _text(rng)) for i in range(80)]
    chains = [(f"c{i}", f"{_text(rng)} {_mutate(rng.choice(held)[1], rng)} {_text(rng)}") for i in range(100)]
    got = {(p.source, p.target) for p in contained(chains, held)}
    form = {x: (normalise(x), grams(x), Counter(numbers(x))) for x in {t for _, t in [*chains, *held]}}
    want = set()
    for cid, c in chains:
        for tid, h in held:
            (nc, gc, xc), (nh, gh, xh) = form[c], form[h]
            if len(nh) >= MIN_CONTAINED_CHARS and (nh in nc or (containment(gh, gc) >= CONTAINMENT and not xh - xc)):
                want.add((cid, tid))
    assert got == want and len(got) > 20
    # a short question is never searched inside chains (a coincidence, not a restated question)
    short = [("s0", "Compute cos 180 degrees.")]
    assert contained([("c", "We compute cos 180 degrees = -1, so the answer is -1.")], short) == []
    assert len(contained([("c", "We compute cos 180 degrees = -1, so the answer is -1.")], short, min_chars=10)) == 1


def test_lsh_bands_keep_the_promised_recall():
    for t in (0.5, THRESHOLD, 0.9):
        b, r = lsh_bands(t)
        assert b * r <= 128 and 1 - (1 - t**r) ** b >= RECALL
        b2 = 128 // (r + 1)  # one more row per band would miss more than promised
        assert 1 - (1 - t ** (r + 1)) ** b2 < RECALL
    assert lsh_bands(THRESHOLD) == (21, 6)


def test_the_check_is_deterministic_across_processes():
    """Same inputs, same MinHashes and pairs: in this process and in another with another hash seed."""
    sets = [grams(t) for _, t in HELD]
    here = [list(m.hashvalues) for m in minhashes(sets)]
    assert here == [list(m.hashvalues) for m in minhashes(sets)]
    code = "from harness.contamination import grams, minhashes; import sys, json; " \
           f"print(json.dumps([[int(v) for v in m.hashvalues] for m in minhashes([grams(t) for t in {[t for _, t in HELD]!r}])]))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "123"}, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [[int(v) for v in h] for h in here]
    sources = [("a", PROBLEM.replace("Emma", "Sophia")), ("b", "Calculate 12 + 7")]
    assert near_duplicates(sources, HELD) == near_duplicates(list(reversed(sources)), HELD)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="threshold"):
        near_duplicates([], [], 1.5)
    with pytest.raises(ValueError, match="threshold"):
        contained([], [], 0.0)
    with pytest.raises(ValueError, match="kind"):
        near_duplicates([], [], kind="byte")
    with pytest.raises(ValueError, match="kind"):
        grams("x", "byte")
