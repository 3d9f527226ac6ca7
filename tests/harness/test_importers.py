"""The DSS (PaLM) and TDG (GPT-3.5) teacher importers, on the real shared files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.importers import DSS_SOURCE, TDG_SOURCE, import_dss, import_tdg
from harness.importers.dss import evaluate_expression, parse_anli, parse_cqa, parse_esnli, parse_svamp

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DSS = DATA / "dss"
TDG = DATA / "tdg" / "GPT3.5-turbo-MATH"

needs_dss = pytest.mark.skipif(not (DSS / "datasets").is_dir(), reason=f"no DSS data at {DSS}")
needs_tdg = pytest.mark.skipif(
    not TDG.is_dir() or not (DATA / "math").is_dir(), reason=f"no TDG / MATH data under {DATA}"
)


def _task(name: str):
    from tasks import get_task

    if name == "svamp":
        return get_task("svamp", data_dir=str(DATA), split_source="dss")
    return get_task(name, data_dir=str(DATA))


# --- the DSS cutting rules and the svamp evaluator (no data needed) ------------------------


def test_parse_rules():
    assert parse_svamp("So 10 * 45. The answer is (10 * 45).\n\nQ: next") == ("So 10 * 45.", "(10 * 45)")
    assert parse_svamp("no statement here\n\nQ: x")[1] is None
    assert parse_cqa("Beavers. So the answer is (c) wooded area.\n\nQ: x") == ("Beavers.", "wooded area")
    assert parse_cqa("Hmm. So the answer is wooded area.")[1] is None  # no "(x)" marker
    assert parse_anli("Because. So the answer is neutral.\n\nPremise: x") == ("Because.", "neutral")
    assert parse_esnli("It says so.\nAnswer: entailment\n\nPremise: x") == ("It says so.", "entailment")
    assert parse_esnli("no answer line")[1] is None


def test_evaluate_expression_is_safe_and_exact():
    from fractions import Fraction

    assert evaluate_expression("(10 * 45)") == 450
    assert evaluate_expression("( ( 12.0 - 2.0 ) - 7.0 )") == 3
    assert evaluate_expression("(45 - (-1))") == 46
    assert evaluate_expression("(1 / 3)") == Fraction(1, 3)
    for bad in ("(x + 1)", "(2 ** 10)", "(1 / 0)", "(__import__('os'))", "(print(1))", "()"):
        assert evaluate_expression(bad) is None


# --- DSS on the real files ----------------------------------------------------------------

# (task, DSS split, agreement in SOURCE.md)
AGREEMENT = [
    ("svamp", "test", 0.740),
    ("csqa", "test", 0.772),
    ("anli", "test", 0.656),
    ("anli", "valid", 0.668),
    ("esnli", "test", 0.730),
    ("esnli", "valid", 0.732),
]


@needs_dss
@pytest.mark.parametrize(("name", "split", "expected"), AGREEMENT)
def test_dss_agreement_matches_source_md(name, split, expected):
    task = _task(name)
    r = import_dss(name, DSS, split, task)
    assert abs(r.agreement - expected) <= 0.005, r.summary()
    assert r.n_unmatched == 0 and len(r.chains) == r.n_rows
    ids = {e.id for s in ("train", "valid", "test") for e in _loaded(task, s)}
    assert all(c.example_id in ids for c in r.chains)
    assert all(c.source == DSS_SOURCE for c in r.chains)
    assert sum(bool(c.correct) for c in r.chains) == r.n_agree
    for c in r.chains:
        assert set(c.meta) >= {"raw", "chunk", "index"}
        if c.answer is None:
            assert c.correct is False
        else:  # students see an answer statement the task reads back
            assert task.equivalent(task.extract(c.text), c.answer) or name == "csqa"
    if name == "svamp":
        assert r.n_parsed == 198
    if name == "csqa":  # the DSS rule is exact text; the task's checker is case-blind
        assert r.n_task_agree >= r.n_agree
        by_id = {e.id: e for e in task.load("test")}
        for c in r.chains[:200]:
            if c.answer is not None and c.answer.startswith("("):
                assert task.extract_for(by_id[c.example_id], c.text) == task.canonical(c.answer)


def _loaded(task, split):
    try:
        return task.load(split)
    except UserError:
        return []


@needs_dss
def test_dss_unparsable_completions_have_no_answer():
    r = import_dss("svamp", DSS, "test", _task("svamp"))
    none = [c for c in r.chains if c.answer is None]
    assert len(none) == r.n_rows - r.n_answered >= 2
    assert all(c.correct is False for c in none)
    assert sum(1 for c in none if c.meta["label"] is None) == 2  # no "The answer is (...)"


@needs_dss
def test_dss_train_splits():
    r = import_dss("svamp", DSS, "train", _task("svamp"))
    assert r.n_rows == len(r.chains) == 800
    r = import_dss("csqa", DSS, "train", _task("csqa"))
    assert r.n_rows == len(r.chains) == 9741 and r.n_unmatched == 0
    for name in ("anli", "esnli"):  # PaLM chains exist, but their inputs do not
        with pytest.raises(UserError, match="cannot be paired"):
            import_dss(name, DSS, "train", _task(name))


def test_dss_bad_names(tmp_path):
    with pytest.raises(UserError, match="unknown DSS task"):
        import_dss("gsm8k", tmp_path, "test")
    with pytest.raises(UserError, match="no 'valid' split"):
        import_dss("svamp", tmp_path, "valid")
    with pytest.raises(UserError, match="no folder"):
        import_dss("svamp", tmp_path, "test")


# --- TDG ------------------------------------------------------------------------------------


@needs_tdg
def test_tdg_first_problems(tmp_path):
    r = import_tdg(TDG, _task("math"), max_problems=50)
    assert r.n_records == 50 and len(r.chains) == 8 * r.n_problems
    assert all(c.source == TDG_SOURCE and c.meta["sample"] in range(8) for c in r.chains)
    assert all(c.correct is False for c in r.chains if c.answer is None)
    assert r.n_positive >= r.n_string_positive
    assert r.n_positive == sum(bool(c.correct) for c in r.chains)
    out = r.write_differences(tmp_path / "diff.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(r.differing)
    assert all(row["ours"] != row["theirs"] for row in rows)


@needs_tdg
@pytest.mark.slow
def test_tdg_all(tmp_path):
    task = _task("math")
    r = import_tdg(TDG, task)
    ids = {e.id for e in task.load("train")} | {e.id for e in task.load("valid")}
    assert r.n_records == 7500
    assert r.n_dropped_problems == len(task.dropped()) == 2
    assert len(r.chains) == 60000 - r.n_dropped_chains == 8 * len(ids)
    assert {c.example_id for c in r.chains} == ids
    assert abs(r.n_string_positive_all - 19944) <= 5 and r.n_string_no_boxed <= 786
    assert r.n_positive >= r.n_string_positive
    assert r.n_no_answer <= 786
    out = r.write_differences(tmp_path / "diff.jsonl")
    assert sum(1 for _ in out.open()) == len(r.differing) > 0
