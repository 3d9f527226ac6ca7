"""Every aggregation scheme and curve for 5,000 examples x 64 chains: seconds, and the share spent
checking answers.

The chains are MATH answers as a real teacher wrote them: for each of 5,000 TDG MATH problems,
64 answers drawn (with replacement) from the last \\boxed{} of its 8 GPT-3.5 chains, so spellings,
LaTeX and unparsable outputs are real; log-probabilities, token counts and ranker scores are
random. One extra greedy chain per example. Then, in one run:

* ours: harness.evaluate.evaluate -- greedy, majority, weighted, asc:0..3, esc:5 scored with
  bootstrap intervals, plus pass@k and every scheme@k curve for k = 1..64 with 200 random orders
  per example (numpy over group ids: each example's answers are checked once);
* baseline: the same curves computed the direct way, calling the aggregator on every prefix of
  every order (what a loop over `decide` costs), timed on a subset and scaled to 5,000 examples.

Printed: seconds (cold caches, then warm: the MATH checker caches canonical forms), the share
spent in answer checking, the ratio to the 60 s target and to the direct-way baseline.

    python bench/aggregate.py [--data ../shared/data/tdg/GPT3.5-turbo-MATH] [--examples 5000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checker import load_pairs

from harness.aggregate import RANKER_SCORE, Scheme, decide, parse_scheme
from harness.curves import random_orders
from harness.evaluate import evaluate
from harness.types import Chain, Example

SCHEMES = ["greedy", "majority", "weighted", "asc:0", "asc:1", "asc:2", "asc:3", "esc:5"]
TARGET_S = 60.0


def build(data: Path, n_examples: int, k: int, seed: int) -> tuple[list[Example], list[Chain]]:
    rows = load_pairs(data, limit=None)
    by_problem: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        by_problem.setdefault((r["file"], r["line"]), []).append(r)
    problems = [p for p in by_problem.values() if p[0]["gold"] is not None][:n_examples]
    rnd = random.Random(seed)
    examples, chains = [], []
    for i, p in enumerate(problems):
        ex = Example(f"p{i}", "", p[0]["gold"], meta={"subject": p[0]["type"], "level": p[0]["level"]})
        examples.append(ex)
        for j in range(k + 1):
            answer = rnd.choice(p)["pred"]
            n_tok = rnd.randint(20, 300)
            meta = {"temperature": 0.0 if j == 0 else 0.7, "sample": max(0, j - 1), RANKER_SCORE: rnd.random()}
            chains.append(Chain(ex.id, "synthetic", "", answer, logprob=-rnd.uniform(0.05, 1.5) * n_tok, n_tokens=n_tok, meta=meta))
    return examples, chains


def direct_curves(examples: list[Example], chains: list[Chain], task, subsamples: int, seed: int) -> float:
    """Seconds for the curves the direct way: `decide` on every prefix of every random order."""
    import numpy as np

    by_ex: dict[str, list[Chain]] = {}
    for c in chains:
        if c.meta["temperature"] > 0:
            by_ex.setdefault(c.example_id, []).append(c)
    rng = np.random.default_rng(seed)
    schemes = [parse_scheme(s) for s in SCHEMES if s != "greedy"]
    start = time.perf_counter()
    for ex in examples:
        cs = by_ex[ex.id]
        for order in random_orders(rng, subsamples, len(cs)):
            for s in schemes:
                for k in range(1, len(cs) + 1):
                    d = decide(Scheme(s.spec, s.name, s.arg), [cs[j] for j in order[:k]], task.canonical, task.equivalent)
                    task.equivalent(d.answer, ex.answer)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tdg" / "GPT3.5-turbo-MATH")
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--subsamples", type=int, default=200)
    ap.add_argument("--direct-examples", type=int, default=3, help="subset timed the direct way, then scaled")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from tasks import get_task

    task = get_task("math")
    t0 = time.perf_counter()
    examples, chains = build(a.data, a.examples, a.k, a.seed)
    print(f"{len(examples)} MATH examples x {a.k} sampled chains (+1 greedy) from TDG answers, built in {time.perf_counter() - t0:.1f} s")
    schemes = [parse_scheme(s) for s in SCHEMES]
    results = []
    for label in ("cold", "warm"):
        start = time.perf_counter()
        ev = evaluate(task, examples, chains, schemes, bootstrap=1000, seed=a.seed, curves=True, subsamples=a.subsamples)
        total = time.perf_counter() - start
        assert ev.curves is not None
        results.append((label, total, ev))
        print(
            f"{label:>4}: {total:6.1f} s in all; answer checking {ev.seconds_checking:5.1f} s ({100 * ev.seconds_checking / total:.0f}%),"
            f" curve votes {ev.curves.seconds_voting:5.1f} s, the rest (bootstrap, breakdowns, weights) {total - ev.seconds_checking - ev.curves.seconds_voting:4.1f} s"
        )
    warm = results[-1][1]
    direct = direct_curves(examples[: a.direct_examples], chains, task, a.subsamples, a.seed)
    direct_full = direct / a.direct_examples * len(examples)
    ev = results[-1][2]
    print(f"direct way (decide on every prefix of every order): {direct:.1f} s for {a.direct_examples} examples -> {direct_full / 3600:.1f} h for {len(examples)} (scaled)")
    print(f"figure: warm {warm:.1f} s = {warm / TARGET_S:.2f}x the 60 s target; the direct way takes {direct_full / ev.curves.seconds_voting:,.0f}x longer than our curves")
    c = ev.curves
    print("accuracy at k = 1 / 8 / 64: pass@k " + " / ".join(f"{100 * c.pass_at[k - 1]:.1f}" for k in (1, 8, 64)))
    for spec, curve in c.schemes.items():
        print(f"  {spec:>9}@k " + " / ".join(f"{100 * curve.acc[k - 1]:.1f}" for k in (1, 8, 64)) + (f"  (chains used at k=64: {curve.used[-1]:.1f})" if spec.startswith("esc") else ""))


if __name__ == "__main__":
    main()
