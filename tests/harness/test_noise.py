"""Teacher noise on a bank (harness/noise.py) on hand-made chains, its spec section and its keys."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.config import GridSpec, RunSpec, TeacherSpec, axis_label, load_grid
from harness.errors import UserError
from harness.noise import apply_noise, is_positive, n_swaps, noise_key
from harness.types import Chain


def chain(ex: str, i: int, right: bool, answer: str | None = "1") -> Chain:
    return Chain(ex, "teacher:test", f"{ex} chain {i} {'right' if right else 'wrong'}", answer, right, meta={"sample": i})


def bank(spec: dict[str, tuple[int, int]]) -> list[Chain]:
    """example -> (positives, negatives): positives first, then negatives, samples 0..K-1."""
    out = []
    for ex, (p, n) in spec.items():
        out += [chain(ex, i, True) for i in range(p)] + [chain(ex, p + i, False) for i in range(n)]
    return out


def per_example(chains: list[Chain]) -> dict[str, list[Chain]]:
    out: dict[str, list[Chain]] = {}
    for c in chains:
        out.setdefault(c.example_id, []).append(c)
    return out


def test_own_swaps_exact_counts_keeps_k_and_slots():
    chains = bank({"a": (6, 2), "b": (4, 4), "c": (8, 0), "d": (0, 8)})  # K = 8 each
    out, rep = apply_noise(chains, 0.5, "own", seed=0)
    groups = per_example(out)
    assert {ex: len(cs) for ex, cs in groups.items()} == {"a": 8, "b": 8, "c": 8, "d": 8}  # K kept
    assert [c.meta["sample"] for c in groups["a"]] == list(range(8))  # each swap takes the replaced slot
    assert sum(map(is_positive, groups["a"])) == 3 and sum(map(is_positive, groups["b"])) == 2  # 6 - 3, 4 - 2
    # c has no negative of its own: its 4 positives drawn for a swap are kept and counted
    assert sum(map(is_positive, groups["c"])) == 8
    assert (rep.target, rep.swapped, rep.unswappable, rep.unswappable_examples) == (3 + 2 + 4, 5, 4, 1)
    assert rep.positives == 18 and rep.wrong_before == 14 and rep.wrong_after == 19 and rep.wrong_share == 19 / 32
    swapped = [c for c in out if "noise" in c.meta]
    assert len(swapped) == 5
    for c in swapped:  # a wrong chain, labelled wrong, of the example itself
        assert c.correct is False and c.meta["noise"]["swap"] == "own" and c.meta["noise"]["from_example"] == c.example_id
        assert "wrong" in c.text and c.text.startswith(c.example_id)
    # a's 3 swaps take its 2 negatives before reusing one
    assert len({c.text for c in groups["a"] if "noise" in c.meta}) == 2
    # untouched: d (no positives) and the chains not swapped
    assert groups["d"] == per_example(chains)["d"]
    assert Counter(map(is_positive, out))[True] == 18 - 5


def test_other_reattributes_a_negative_of_another_example():
    chains = bank({"a": (4, 0), "b": (4, 0), "c": (0, 2)})
    out, rep = apply_noise(chains, 0.75, "other", seed=3)
    assert (rep.target, rep.swapped, rep.unswappable) == (6, 6, 0)
    groups = per_example(out)
    for ex in ("a", "b"):
        swapped = [c for c in groups[ex] if "noise" in c.meta]
        assert len(swapped) == 3 and len(groups[ex]) == 4
        for c in swapped:  # c's wrong chains, re-attributed to this example, origin kept
            assert c.example_id == ex and c.correct is False and c.text.startswith("c ")
            assert c.meta["noise"] == {"swap": "other", "from_example": "c", "from_sample": c.meta["noise"]["from_sample"], "was_correct": False}
            assert c.meta["noise"]["from_sample"] in (0, 1)
    # an example whose negatives are the only ones in the bank has nothing to take
    lonely, rep2 = apply_noise(bank({"a": (2, 1), "b": (2, 0)}), 1.0, "other", seed=0)
    assert (rep2.target, rep2.swapped, rep2.unswappable, rep2.unswappable_examples) == (4, 2, 2, 1)
    assert all(c.text.startswith("b ") for c in lonely if c.example_id == "a" and "noise" in c.meta)


def test_deterministic_for_a_seed_and_seeds_differ():
    chains = bank({f"e{i}": (5, 3) for i in range(20)})
    a, _ = apply_noise(chains, 0.4, "own", seed=1)
    b, _ = apply_noise(list(chains), 0.4, "own", seed=1)
    c, _ = apply_noise(chains, 0.4, "own", seed=2)
    assert a == b and a != c
    # per example: a bank of a subset of the examples draws the same swaps for them (own)
    sub, _ = apply_noise([x for x in chains if x.example_id in ("e3", "e7")], 0.4, "own", seed=1)
    assert sub == [x for x in a if x.example_id in ("e3", "e7")]


def test_rate_zero_is_the_bank_itself_and_fractions_round_either_way():
    chains = bank({"a": (3, 1), "b": (1, 1)})
    out, rep = apply_noise(chains, 0.0, "own", seed=0)
    assert out == chains and rep.swapped == rep.target == 0
    # K = 1: 30% of one positive is 0 or 1 swap, 1 with probability 0.3 (not rounded to 0 for all)
    many = bank({f"e{i}": (1, 1) for i in range(1000)})
    _, rep = apply_noise(many, 0.3, "own", seed=0)
    assert 240 <= rep.swapped <= 360 and rep.unswappable == 0
    import random

    assert n_swaps(0.3, 10, random.Random(0)) == 3  # 0.3 * 10 is whole, however floats write it
    assert {n_swaps(0.5, 3, random.Random(s)) for s in range(50)} == {1, 2}


def test_no_answer_chains_are_negatives_and_bad_arguments_fail():
    chains = [chain("a", 0, True), Chain("a", "t", "no answer here", None, False, meta={"sample": 1})]
    out, rep = apply_noise(chains, 1.0, "own", seed=0)
    assert rep.swapped == 1 and out[0].text == "no answer here" and out[0].meta["sample"] == 0
    with pytest.raises(ValueError):
        apply_noise(chains, 0.5, "both", seed=0)
    with pytest.raises(ValueError):
        apply_noise(chains, 1.5, "own", seed=0)


def test_noise_key_changes_only_when_noise_is_set():
    assert noise_key("bank", {"rate": 0.0, "swap": "own", "seed": 0}) == "bank"
    keys = {noise_key("bank", {"rate": r, "swap": s, "seed": 0}) for r in (0.1, 0.3) for s in ("own", "other")}
    assert len(keys) == 4 and "bank" not in keys


def test_spec_section_leaves_unset_specs_and_bank_keys_unchanged():
    from harness.run import cell_hash, shared_key
    from harness.teacher import bank_manifest
    from tasks import get_task

    plain = RunSpec(task={"name": "arith"}, method={"name": "dss"})
    noisy = RunSpec(task={"name": "arith"}, method={"name": "dss"}, teacher={"noise": {"rate": 0.3, "swap": "other"}})
    # unset: not in the dump, so hashes and params of every existing spec stay as they were
    assert "noise" not in plain.teacher.model_dump() and not any("noise" in k for k in plain.flat())
    assert noisy.flat()["teacher.noise.rate"] == 0.3 and noisy.flat()["teacher.noise.swap"] == "other"
    assert cell_hash(plain) != cell_hash(noisy)
    # generation is shared: the same bank, the same shared stages, whatever the noise
    task = get_task("arith", n_train=10, n_valid=2, n_test=2)
    exs = task.load("train")
    assert bank_manifest(task, exs, plain.teacher) == bank_manifest(task, exs, noisy.teacher)
    assert shared_key(plain) == shared_key(noisy)
    with pytest.raises(UserError, match="teacher.noise.swap"):
        from harness.config import validate

        validate(RunSpec, {"task": {"name": "arith"}, "method": {"name": "dss"}, "teacher": {"noise": {"rate": 0.1, "swap": "mine"}}}, "spec")
    with pytest.raises(UserError, match="unknown spec key 'teacher.noise.rat'"):
        validate(RunSpec, {"task": {"name": "arith"}, "method": {"name": "dss"}, "teacher": {"noise": {"rat": 0.1}}}, "spec")
    assert TeacherSpec(noise={"rate": 1.0}).noise.swap == "own"


def test_noise_axes_label_cells_readably(tmp_path):
    assert axis_label("teacher.noise.rate") == "noise.rate" and axis_label("teacher.wrong_rate") == "wrong_rate"
    g = GridSpec(name="n", base={"task": {"name": "arith"}, "method": {"name": "dss"}, "teacher": {"noise": {"swap": "other"}}},
                 grid={"method.name": ["dss", "ul"], "teacher.noise.rate": [0, 0.3]})
    cells = dict(g.cells())
    assert list(cells) == ["method=dss,noise.rate=0", "method=dss,noise.rate=0.3", "method=ul,noise.rate=0", "method=ul,noise.rate=0.3"]
    assert cells["method=ul,noise.rate=0.3"].teacher.noise.model_dump() == {"rate": 0.3, "swap": "other", "seed": 0}
    spec = tmp_path / "g.yaml"
    spec.write_text("name: g\nbase: {task: {name: arith}, method: {name: dss}}\ngrid: {teacher.wrong_rate: [0, 0.5]}\n")
    assert [c for c, _ in load_grid(spec).cells()] == ["wrong_rate=0", "wrong_rate=0.5"]
    # an axis into the nested section without a base section, from the command line
    assert [s.teacher.noise.rate for _, s in load_grid(spec, ["grid.teacher.noise.rate=[0.1]"]).cells()] == [0.1, 0.1]
    with pytest.raises(UserError, match="unknown spec key 'teacher.noise.swp'"):
        load_grid(spec, ["grid.teacher.noise.swp=[own]"])
