"""MATH answer checkers side by side: ours (tasks.checking.math_equivalent), lm-eval's minerva_math
(normalize_final_answer + sympy simplify(a - b) == 0) and plain math-verify (parse + verify).

Every TDG GPT-3.5 teacher chain is one (pred, gold) pair: gold is the last \\boxed{} of the
reference solution, pred the last \\boxed{} of the generated chain (None -> wrong for all three).
The three checkers see the same pairs, one pass each, timed per check. Prints chains/s, positives,
pairwise agreement, worst latency and timeouts, and writes every disagreement to --out.

    python bench/checker.py [--data ../shared/data/tdg/GPT3.5-turbo-MATH] [--limit N]
                            [--out bench/checker_disagreements.jsonl]

lm-eval and math-verify are imported inside main(): our sympy workers are separate interpreters,
but keeping this module light costs nothing. math-verify and minerva use SIGALRM timeouts
(5 s each), so this runs single-threaded on the main thread.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks import checking

_BOXED_SPACE = re.compile(r"\\boxed ([^$\s]+)")


def boxed(text: str) -> str | None:
    r"""The last \boxed{...}; else the last "\boxed 9" (two reference solutions write it so)."""
    found = checking.last_boxed(text)
    if found is not None:
        return found
    spaced = _BOXED_SPACE.findall(text)
    return spaced[-1] if spaced else None


def load_pairs(data: Path, limit: int | None, keep_text: bool = False) -> list[dict]:
    """One row per generated chain: pred, gold and where it came from (and its text, if asked)."""
    rows: list[dict] = []
    files = sorted(glob.glob(str(data / "*" / "*.jsonl")), key=lambda f: (Path(f).parent.name, int(Path(f).stem)))
    if not files:
        raise SystemExit(f"no *.jsonl under {data}")
    n_records = 0
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh):
                if limit is not None and n_records >= limit:
                    return rows
                rec = json.loads(line)
                n_records += 1
                gold = boxed(rec["answer"])
                for k, chain in enumerate(rec["generated_answer"]):
                    rows.append({"file": f"{Path(f).parent.name}/{Path(f).name}", "line": line_no, "k": k,
                                 "type": rec["type"], "level": rec["level"], "gold": gold, "pred": boxed(chain),
                                 **({"text": chain} if keep_text else {})})
    return rows


def run_checker(name: str, check: Callable[[str, str], bool], rows: list[dict]) -> tuple[list[bool], list[float]]:
    """Verdicts and per-check seconds; an exception counts as False and is reported."""
    verdicts, latencies, crashes = [], [], 0
    for row in rows:
        start = time.perf_counter()
        if row["pred"] is None or row["gold"] is None:
            ok = False
        else:
            try:
                ok = bool(check(row["pred"], row["gold"]))
            except Exception as e:
                crashes += 1
                if crashes <= 5:
                    print(f"  {name} raised {type(e).__name__}: {e} on {row['pred']!r} vs {row['gold']!r}")
                ok = False
        latencies.append(time.perf_counter() - start)
        verdicts.append(ok)
    if crashes:
        print(f"  {name}: {crashes} checks raised")
    return verdicts, latencies


def load_minerva() -> tuple[Callable[[str, str], bool], Callable[[str], str]]:
    """lm-eval's minerva_math is_equiv and normalize_final_answer, called as they are.

    One substitution: the module insists on antlr4-python3-runtime 4.11 for sympy's parse_latex,
    but the venv has 4.13 (math-verify's latex2sympy2_extended needs it; one process cannot hold
    both). So the version check is told 4.11 and parse_latex is latex2sympy2_extended's parser,
    a descendant of the same ANTLR LaTeX grammar. Everything else -- normalisation, the 5 s
    SIGALRM timeout, simplify(a - b) == 0 -- is lm-eval's own code.
    """
    import importlib.metadata

    from latex2sympy2_extended import latex2sympy

    real_version = importlib.metadata.version
    importlib.metadata.version = lambda name: "4.11.0" if name == "antlr4-python3-runtime" else real_version(name)
    try:
        from lm_eval.tasks.minerva_math import utils
    finally:
        importlib.metadata.version = real_version
    utils.parse_latex = lambda s: latex2sympy(s, normalization_config=None)
    return utils.is_equiv, utils.normalize_final_answer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tdg" / "GPT3.5-turbo-MATH")
    ap.add_argument("--limit", type=int, default=None, help="records (8 chains each); default all 7,500")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "checker_disagreements.jsonl")
    ap.add_argument("--only", default="ours,minerva,math-verify", help="comma-separated subset to run")
    args = ap.parse_args()

    logging.disable(logging.WARNING)  # math-verify logs every timeout and parse failure
    is_equiv, normalize_final_answer = load_minerva()
    from math_verify import parse, verify

    def minerva(pred: str, gold: str) -> bool:
        # Exactly what minerva_math's process_results does with two final answers.
        return is_equiv(normalize_final_answer(pred), normalize_final_answer(gold))

    def math_verify(pred: str, gold: str) -> bool:
        # Both sides wrapped as a boxed answer, so math-verify extracts exactly this string;
        # its default timeouts (5 s parse, 5 s verify, SIGALRM) stay on.
        return verify(parse(f"$\\boxed{{{gold}}}$"), parse(f"$\\boxed{{{pred}}}$"))

    checkers: dict[str, Callable[[str, str], bool]] = {
        "ours": checking.math_equivalent, "minerva": minerva, "math-verify": math_verify}
    names = [n for n in args.only.split(",") if n in checkers]

    rows = load_pairs(args.data, args.limit)
    n_records = len(rows) // 8
    print(f"{len(rows)} chains ({sum(r['pred'] is None for r in rows)} without \\boxed), "
          f"{os.cpu_count()} CPU cores, sympy timeout {checking.SYMPY_TIMEOUT} s (ours)")
    if "ours" in names:
        checking.sympy_pool()  # start a worker so the first sympy check does not pay for it
        checking.math_equivalent("x+1", "1+x")

    results: dict[str, tuple[list[bool], list[float]]] = {}
    for name in names:
        start = time.perf_counter()
        results[name] = run_checker(name, checkers[name], rows)
        print(f"  {name}: done in {time.perf_counter() - start:.1f} s")

    header = ("checker", "chains/s", "total s", "positives", "p50 ms", "p99 ms", "worst s")
    print("\n{:<12} {:>10} {:>9} {:>10} {:>8} {:>8} {:>8}".format(*header))
    for name, (verdicts, lat) in results.items():
        total = sum(lat)
        srt = sorted(lat)
        print(f"{name:<12} {len(lat) / total:10.0f} {total:9.1f} {sum(verdicts):10d} "
              f"{srt[len(srt) // 2] * 1e3:8.3f} {srt[int(len(srt) * 0.99)] * 1e3:8.2f} {srt[-1]:8.3f}")
    if "ours" in results:
        print(f"ours, sympy step: {checking.SYMPY_STATS.snapshot()} (timeout = killed at {checking.SYMPY_TIMEOUT} s)")
        for name in ("math-verify", "minerva"):
            if name in results:
                ratio = sum(results[name][1]) / sum(results["ours"][1])
                print(f"throughput ours / {name}: {ratio:.1f}x")

    print("\nagreement (same verdict on the same pair)")
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = sum(x == y for x, y in zip(results[a][0], results[b][0]))
            a_only = sum(x and not y for x, y in zip(results[a][0], results[b][0]))
            b_only = sum(y and not x for x, y in zip(results[a][0], results[b][0]))
            print(f"  {a} vs {b}: {100 * same / len(rows):.2f}%  ({a} only True: {a_only}, {b} only True: {b_only})")
    if len(names) == 3:
        patterns: dict[tuple[bool, ...], int] = {}
        for v in zip(*(results[n][0] for n in names)):
            patterns[v] = patterns.get(v, 0) + 1
        print("  verdict patterns (" + ", ".join(names) + "): "
              + ", ".join(f"{''.join('TF'[not x] for x in k)}={c}" for k, c in sorted(patterns.items(), reverse=True)))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    n_out = 0
    with open(args.out, "w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            verdicts = {n: results[n][0][i] for n in names}
            if len(set(verdicts.values())) > 1:
                ms = {n: round(results[n][1][i] * 1e3, 2) for n in names}
                fh.write(json.dumps({**row, **verdicts, "ms": ms}) + "\n")
                n_out += 1
    print(f"\n{n_out} disagreements written to {args.out} ({n_records} records read)")


if __name__ == "__main__":
    main()
