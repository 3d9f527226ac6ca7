"""Our majority vote against lm-eval's majority_vote filter on GSM8K chains (bench/crosscheck_lmeval.py):
identical wherever the answers are written identically; the other cases are counted, not hidden."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def load_bench():
    spec = importlib.util.spec_from_file_location("crosscheck_lmeval", ROOT / "bench" / "crosscheck_lmeval.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_agrees_with_lm_eval_wherever_answers_are_written_identically() -> None:
    if not (DATA / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"GSM8K test file not found under {DATA} (shared/data is missing)")
    bench = load_bench()
    golds = bench.load_gsm8k_test(DATA)
    assert len(golds) == 1319
    for seed in (0, 1):
        r = bench.crosscheck(golds, k=8, p=0.45, seed=seed)
        assert r.examples == 1319
        assert r.identical > 400 and r.identical_disagree == []
        # spellings that lm-eval splits (1,000 / 1000.00 / 1000) do change some outcomes, and
        # grouping them helps more often than it hurts
        assert r.equivalence_changed > 0 and r.equivalence_fixed > r.equivalence_broke
        assert r.ours_correct > r.lmeval_correct


def test_a_hand_made_case() -> None:
    from lm_eval.filters.selection import MajorityVoteFilter

    from harness.aggregate import decide, parse_scheme
    from harness.types import Chain
    from tasks import get_task

    gsm8k = get_task("gsm8k")
    strings = ["1,000", "999", "1000", "999", "1000.00"]
    lm = list(MajorityVoteFilter().apply([strings], [{}]))[0][0]
    ours = decide(parse_scheme("majority"), [Chain("e", "s", "", a) for a in strings], gsm8k.canonical, gsm8k.equivalent).answer
    assert lm == "999" and ours == "1,000"  # three spellings of 1000 are one answer for us
