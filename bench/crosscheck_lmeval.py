"""Our `majority` against lm-eval's `majority_vote` filter on GSM8K chains.

lm-eval's gsm8k_cot_self_consistency task extracts "The answer is (-?[0-9.,]*[0-9]+)" from each
sample (falling back to "[invalid]") and votes on the raw strings (Counter.most_common). Ours votes
on the same extracted strings grouped by the task's equivalence, with unparsable answers never
voting. Both get exactly the same strings, so any difference comes from the vote alone:

* written identically: every equivalence group of an example is spelled one way and no
  "[invalid]" wins the lm-eval vote -> the two MUST agree (the test asserts it);
* equivalence changes the outcome: "1,000" and "1000" vote together for us, apart for lm-eval;
* "[invalid]" wins lm-eval's vote: it counts unparsable answers as one more answer.

The chains are synthetic but built on the real GSM8K test set (questions and gold answers from
../shared/data/gsm8k): K samples per question, each right with probability p, right answers
written as models write them (1000, 1,000, 1000.00, $1000) and wrong ones near the gold value;
a share end without "The answer is". Accuracy uses lm-eval's own exact-match normalisation
(regexes_to_ignore of gsm8k-cot.yaml) for its vote and our equivalence for ours.

    python bench/crosscheck_lmeval.py [--data ../shared/data] [--k 8] [--p 0.45] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.aggregate import decide, group, parse_scheme
from harness.types import Chain

LMEVAL_REGEX = r"The answer is (\-?[0-9\.\,]*[0-9]+)"
LMEVAL_IGNORE = [",", r"\$", r"(?s).*#### ", r"\.$"]  # gsm8k-cot.yaml exact_match regexes_to_ignore


def spellings(value: int) -> list[str]:
    """How models write an integer answer."""
    return [str(value), f"{value:,}", f"{value}.00", f"${value}", f"{value}."]


def synth_chain(rnd: random.Random, gold: int, p: float) -> str:
    value = gold if rnd.random() < p else gold + rnd.choice([-10, -2, -1, 1, 2, 10, gold])
    if rnd.random() < 0.08:
        return f"So she has {value} left in total."  # no "The answer is": unparsable for both
    written = rnd.choice(spellings(value)) if rnd.random() < 0.5 else str(value)
    return f"Step by step... The answer is {written}."


def lmeval_normalise(text: str) -> str:
    for pattern in LMEVAL_IGNORE:
        text = re.sub(pattern, "", text)
    return text.strip()


@dataclass
class Report:
    examples: int = 0
    identical: int = 0  # examples written identically (the two must agree there)
    identical_disagree: list[str] = field(default_factory=list)
    equivalence_changed: int = 0  # outcome differs because spellings were grouped
    equivalence_fixed: int = 0  # ... and ours became right where lm-eval's was wrong
    equivalence_broke: int = 0  # ... and ours became wrong where lm-eval's was right
    invalid_won: int = 0  # lm-eval's vote went to "[invalid]"
    lmeval_correct: int = 0
    ours_correct: int = 0
    samples: list[dict] = field(default_factory=list)


def crosscheck(golds: list[tuple[str, str]], k: int = 8, p: float = 0.45, seed: int = 0) -> Report:
    """golds: (example id, gold answer) pairs from GSM8K."""
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import MajorityVoteFilter

    from tasks import get_task

    task = get_task("gsm8k")
    rnd = random.Random(seed)
    texts = [[synth_chain(rnd, int(g), p) for _ in range(k)] for _, g in golds]
    extracted = list(RegexFilter(regex_pattern=LMEVAL_REGEX).apply(texts, [{}] * len(texts)))
    lm_votes = [v[0] for v in MajorityVoteFilter().apply(extracted, [{}] * len(texts))]
    majority = parse_scheme("majority")
    rep = Report()
    for (ex_id, gold), strings, lm_vote in zip(golds, extracted, lm_votes, strict=True):
        rep.examples += 1
        answers = [None if s == "[invalid]" else s for s in strings]
        chains = [Chain(ex_id, "synthetic", "", a) for a in answers]
        ours = decide(majority, chains, task.canonical, task.equivalent).answer
        lm_right = lmeval_normalise(lm_vote) == gold
        ours_right = task.equivalent(ours, gold)
        rep.lmeval_correct += lm_right
        rep.ours_correct += ours_right
        g = group(answers, task.canonical, task.equivalent)
        spelled_one_way = all(len({a for a, i in zip(answers, g.ids) if i == gid}) == 1 for gid in range(len(g.reps)))
        if lm_vote == "[invalid]":
            rep.invalid_won += 1
        elif spelled_one_way:
            rep.identical += 1
            if ours != lm_vote:
                rep.identical_disagree.append(ex_id)
        elif ours is None or not task.equivalent(ours, lm_vote):
            rep.equivalence_changed += 1
            rep.equivalence_fixed += ours_right and not lm_right
            rep.equivalence_broke += lm_right and not ours_right
            if len(rep.samples) < 5:
                rep.samples.append({"id": ex_id, "gold": gold, "answers": strings, "lm_eval": lm_vote, "ours": ours})
    return rep


def load_gsm8k_test(data: Path) -> list[tuple[str, str]]:
    from tasks import get_task

    return [(e.id, e.answer) for e in get_task("gsm8k", data_dir=str(data)).load("test")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--p", type=float, default=0.45)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    golds = load_gsm8k_test(a.data)
    r = crosscheck(golds, a.k, a.p, a.seed)
    n = r.examples
    print(f"GSM8K test, {n} questions x {a.k} synthetic chains (p right = {a.p}, seed {a.seed})")
    print(f"written identically:            {r.identical:5d}  disagreements: {len(r.identical_disagree)}")
    print(f"equivalence changed the outcome: {r.equivalence_changed:5d}  (ours right, lm-eval wrong: {r.equivalence_fixed}; the reverse: {r.equivalence_broke})")
    print(f"'[invalid]' won lm-eval's vote: {r.invalid_won:5d}")
    print(f"maj@{a.k} accuracy: lm-eval {100 * r.lmeval_correct / n:.1f}%  ours {100 * r.ours_correct / n:.1f}%")
    for s in r.samples:
        print(f"  e.g. {s['id']}: gold {s['gold']}, answers {s['answers']} -> lm-eval {s['lm_eval']!r}, ours {s['ours']!r}")
    if r.identical_disagree:
        raise SystemExit(f"FAIL: {len(r.identical_disagree)} identically written examples disagree, e.g. {r.identical_disagree[0]}")


if __name__ == "__main__":
    main()
