"""Near-duplicate detection (harness/contamination.py): the normal form, the rule, and the index
against brute force."""

from __future__ import annotations

import random

import pytest

from harness.contamination import THRESHOLD, HeldOut, jaccard, normalise, numbers, shingles

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
