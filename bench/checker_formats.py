r"""Answers as models write them: ours vs math-verify on the MATH500 golds in five formats, and
the cold-process speed of both on 2,000 whole TDG chains.

Formats (each gold g wrapped as a chain would end):
  boxed           "... Therefore, the answer is $\boxed{g}$."
  display         "... Putting it together, we get\n$$ g $$"
  final_answer    "... **Final Answer:** $g$"
  multiple_boxes  golds that are lists ("1, 2", "\{-1, 4\}"): each item boxed, joined by "and", reversed
  rounded         golds with a non-terminating or irrational value: "\boxed{0.67}" (2 and 4 decimals)

Every format has positives (the wrapped gold against itself) and negatives (the wrapped gold
against the next problem's different gold). Both checkers see the same (chain, gold) pairs:
ours = the math500 task's extract + equivalent (rounding off, and for `rounded` also on);
math-verify = verify(parse("$\boxed{gold}$"), parse(chain)), its defaults (5 s timeouts).

    python bench/checker_formats.py [--cold 2000] [--skip-formats]

--cold N: two fresh interpreters, one per checker, each importing its checker and checking
the first N TDG GPT-3.5 chains (whole text, so extraction included) against their golds; the
wall time includes interpreter start, imports and (ours) the sympy worker's start-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
FORMATS = ("boxed", "display", "final_answer", "multiple_boxes", "rounded")


def wrap(fmt: str, gold: str) -> list[str]:
    """The chain endings of one format for a gold (empty when the format does not apply)."""
    from tasks import checking

    lead = "We work through the problem step by step and simplify.\n\n"
    if fmt == "boxed":
        return [f"{lead}Therefore, the answer is $\\boxed{{{gold}}}$."]
    if fmt == "display":
        return [f"{lead}Putting it together, we get\n$$ {gold} $$"]
    if fmt == "final_answer":
        return [f"{lead}**Final Answer:** ${gold}$"]
    norm = checking.math_normalize(gold)
    if fmt == "multiple_boxes":
        inner = norm[2:-2] if norm.startswith("\\{") and norm.endswith("\\}") else norm
        items = checking._split_top(inner, ",")
        if len(items) < 2 or (norm[0] in "([" and checking._wrapped(norm)):
            return []
        return [lead + "The solutions are " + " and ".join(f"$\\boxed{{{x}}}$" for x in reversed(items)) + "."]
    if fmt == "rounded":
        exact = checking._math_number(norm)
        value = checking._point(norm)
        if value is None or value != value or abs(value) == float("inf") or abs(value) >= 1e6:
            return []
        if exact is not None and checking.format_number(exact).count("/") == 0:
            return []  # integers and terminating decimals are not rounded
        if exact is None and not any(c in norm for c in ("\\sqrt", "\\pi", "\\frac")):
            return []
        return [f"{lead}So the answer is $\\boxed{{{round(value, d):.{d}f}}}$." for d in (2, 4)
                if len(f"{round(value, d):.{d}f}".lstrip("-0.")) >= 2]
    raise ValueError(fmt)


def pairs(golds: list[str]) -> dict[str, list[tuple[str, str, bool]]]:
    """format -> [(chain, gold, truth)]: positives and negatives against the next different gold."""
    from tasks import checking

    out: dict[str, list[tuple[str, str, bool]]] = {f: [] for f in FORMATS}
    for i, gold in enumerate(golds):
        j = (i + 1) % len(golds)
        while checking.math_canonical(golds[j]) == checking.math_canonical(gold) or golds[j] == gold:
            j = (j + 1) % len(golds)
        for fmt in FORMATS:
            for chain in wrap(fmt, gold):
                out[fmt].append((chain, gold, True))
                out[fmt].append((chain, golds[j], False))
    return out


def load_golds() -> list[str]:
    rows = (SHARED / "math" / "prm800k_math_splits" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(r)["answer"] for r in rows]


def run(check: Callable[[str, str], bool], items: list[tuple[str, str, bool]]) -> tuple[list[bool], float]:
    verdicts, start = [], time.perf_counter()
    for chain, gold, _ in items:
        try:
            verdicts.append(bool(check(chain, gold)))
        except Exception:
            verdicts.append(False)
    return verdicts, time.perf_counter() - start


def formats_report() -> None:
    from math_verify import parse, verify

    from tasks import get_task

    logging.disable(logging.WARNING)
    task, rounding = get_task("math500"), get_task("math500", rounding=True)
    checkers: dict[str, Callable[[str, str], bool]] = {
        "ours": lambda c, g: task.equivalent(task.extract(c), g),
        "ours+rounding": lambda c, g: rounding.equivalent(rounding.extract(c), g),
        "math-verify": lambda c, g: verify(parse(f"$\\boxed{{{g}}}$"), parse(c)),
    }
    golds = load_golds()
    table = pairs(golds)
    print(f"{len(golds)} MATH500 golds; pairs per format: " + ", ".join(f"{f} {len(v)}" for f, v in table.items()))
    print(f"\n{'format':<15} {'checker':<14} {'accuracy':>9} {'pos. found':>11} {'false pos.':>11} {'agree w/ mv':>12}")
    totals: dict[str, list[int]] = {}
    for fmt, items in table.items():
        verdicts = {name: run(check, items)[0] for name, check in checkers.items()}
        truth = [t for _, _, t in items]
        n_pos = sum(truth)
        for name, v in verdicts.items():
            if name == "ours+rounding" and fmt != "rounded":
                continue
            right = sum(a == t for a, t in zip(v, truth))
            tp = sum(a and t for a, t in zip(v, truth))
            fp = sum(a and not t for a, t in zip(v, truth))
            agree = sum(a == b for a, b in zip(v, verdicts["math-verify"]))
            print(f"{fmt:<15} {name:<14} {100 * right / len(items):8.2f}% {tp:>5}/{n_pos:<5} {fp:>5}/{len(items) - n_pos:<5}"
                  f" {100 * agree / len(items):11.2f}%")
            t = totals.setdefault(name, [0, 0])
            t[0] += right
            t[1] += len(items)
        for i, (chain, gold, t) in enumerate(items):  # the first few disagreements, for the notes
            if verdicts["ours"][i] != verdicts["math-verify"][i] and fmt != "rounded":
                print(f"    differ: truth={t} ours={verdicts['ours'][i]} mv={verdicts['math-verify'][i]} "
                      f"gold={gold!r} chain end={chain[-60:]!r}")
    print("\noverall (formats each checker ran):")
    for name, (right, n) in totals.items():
        print(f"  {name:<14} {100 * right / n:.2f}% of {n} pairs")


def cold_worker(which: str, n: int) -> None:
    """Runs in a fresh interpreter: import the checker, check n whole chains, print the count."""
    sys.argv = sys.argv[:1]
    from bench.checker import load_pairs

    rows = load_pairs(SHARED / "tdg" / "GPT3.5-turbo-MATH", (n + 7) // 8, keep_text=True)[:n]
    if which == "ours":
        from tasks import get_task

        task = get_task("math500")
        positives = sum(r["gold"] is not None and task.equivalent(task.extract(r["text"]), r["gold"]) for r in rows)
    else:
        logging.disable(logging.WARNING)
        from math_verify import parse, verify

        positives = sum(r["gold"] is not None and verify(parse(f"$\\boxed{{{r['gold']}}}$"), parse(r["text"]))
                        for r in rows)
    print(json.dumps({"checker": which, "chains": len(rows), "positives": positives}))


def cold_report(n: int) -> None:
    walls = {}
    for which in ("ours", "math-verify"):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--cold-worker", which, "--cold", str(n)],
                             capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        walls[which] = time.perf_counter() - start
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"cold {which:<12} {result['chains']} whole chains, {result['positives']} positives, "
              f"{walls[which]:.2f} s wall (interpreter + imports + checks)")
    print(f"cold-process speed ours / math-verify: {walls['math-verify'] / walls['ours']:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=int, default=2000, help="chains for the cold-process run (0: skip)")
    ap.add_argument("--cold-worker", choices=("ours", "math-verify"), help=argparse.SUPPRESS)
    ap.add_argument("--skip-formats", action="store_true")
    args = ap.parse_args()
    if args.cold_worker:
        cold_worker(args.cold_worker, args.cold)
        return
    if not args.skip_formats:
        formats_report()
    if args.cold:
        print()
        cold_report(args.cold)


if __name__ == "__main__":
    main()
