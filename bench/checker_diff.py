"""Which MATH verdicts a checker change moves: ours on every TDG GPT-3.5 chain, two ways.

  boxed  -- the TDG import's rule: the last \\boxed{} of the chain vs the gold (its positive count)
  full   -- evaluation's rule: the math task's extract(chain) on the whole text vs the gold

    python bench/checker_diff.py --write bench/verdicts-before.jsonl      # on the old code
    python bench/checker_diff.py --against bench/verdicts-before.jsonl    # on the new code

The second call prints both positive counts, before and after, and every pair whose verdict
or extracted answer changed (explained in bench/CHECKER_NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checker import load_pairs
from tasks import checking
from tasks import math as math_task


def verdicts(data: Path, limit: int | None) -> list[dict]:
    """One row per chain: its boxed / full-text answers and verdicts."""
    task = math_task.MathTask()
    rows = load_pairs(data, limit, keep_text=True)
    out = []
    for r in rows:
        full = task.extract(r.pop("text"))
        gold = r["gold"]
        r["boxed_ok"] = r["pred"] is not None and gold is not None and checking.math_equivalent(r["pred"], gold)
        r["full"] = full
        r["full_ok"] = full is not None and gold is not None and task.equivalent(full, gold)
        out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tdg" / "GPT3.5-turbo-MATH")
    ap.add_argument("--limit", type=int, default=None)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="save this code's verdicts here")
    group.add_argument("--against", type=Path, help="compare this code's verdicts with a saved file")
    args = ap.parse_args()

    start = time.perf_counter()
    rows = verdicts(args.data, args.limit)
    print(f"{len(rows)} chains in {time.perf_counter() - start:.1f} s: "
          f"boxed positives {sum(r['boxed_ok'] for r in rows)}, full-text positives {sum(r['full_ok'] for r in rows)}")
    if args.write:
        with open(args.write, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        return
    before = [json.loads(line) for line in args.against.read_text(encoding="utf-8").splitlines()]
    if len(before) != len(rows):
        raise SystemExit(f"{args.against} has {len(before)} rows, this run {len(rows)}: use the same --limit")
    print(f"before: boxed positives {sum(r['boxed_ok'] for r in before)}, "
          f"full-text positives {sum(r['full_ok'] for r in before)}")
    for rule in ("boxed", "full"):
        moved = [(b, r) for b, r in zip(before, rows) if b[f"{rule}_ok"] != r[f"{rule}_ok"]]
        print(f"\n{rule}: {len(moved)} verdicts changed "
              f"({sum(r[f'{rule}_ok'] for _, r in moved)} to True, {sum(b[f'{rule}_ok'] for b, _ in moved)} to False)")
        for b, r in moved:
            pred = r["pred"] if rule == "boxed" else f"{b['full']!r} -> {r['full']!r}"
            print(f"  {r['file']}:{r['line']} #{r['k']}  {b[f'{rule}_ok']} -> {r[f'{rule}_ok']}  "
                  f"gold {r['gold']!r}  pred {pred}")
    extracted = sum(b["full"] != r["full"] for b, r in zip(before, rows))
    print(f"\nfull-text extraction changed the answer of {extracted} chains")


if __name__ == "__main__":
    main()
