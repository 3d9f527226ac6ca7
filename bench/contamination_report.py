"""What the contamination check finds on the real datasets (README: Contamination check).

    python bench/contamination_report.py --data-dir ../shared/data [--json out.json]

Every comparison goes through the tasks' own loaders (the splits a grid would use) and the check's
own functions (harness/contamination.py: exact after normalisation, near = char 5-gram Jaccard >=
0.8 with the same numbers, MinHash LSH candidates verified exactly; chains by containment >= 0.8).
Prints one Markdown row per comparison: held-out questions with an exact duplicate, with a near
one only, their share, and the time taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.contamination import contained, near_duplicates, summary  # noqa: E402
from harness.contamination_check import questions  # noqa: E402
from tasks import get_task  # noqa: E402

# (label, training side: task, split(s); held-out side: task, split)
QUESTIONS = [
    ("MATH train vs MATH500", ("math", ("train", "valid")), ("math500", "test")),
    ("MATH train vs MATH test (5,000)", ("math", ("train", "valid")), ("math", "test")),
    ("MATH500 vs MATH test (5,000)", ("math500", ("test",)), ("math", "test")),
    ("GSM8K train vs test", ("gsm8k", ("train", "valid")), ("gsm8k", "test")),
    ("SVAMP (all 1,000) vs ASDiv", ("svamp", ("test",)), ("asdiv", "test")),
    ("SVAMP (all 1,000) vs MultiArith", ("svamp", ("test",)), ("multiarith", "test")),
    ("SVAMP DSS train vs DSS test", ("svamp", ("train", "valid"), {"split_source": "dss"}), ("svamp", "test", {"split_source": "dss"})),
    ("ASDiv vs MultiArith", ("asdiv", ("test",)), ("multiarith", "test")),
    ("GSM8K train vs SVAMP", ("gsm8k", ("train", "valid")), ("svamp", "test")),
    ("AddSub vs ASDiv", ("addsub", ("test",)), ("asdiv", "test")),
    ("SingleEq vs ASDiv", ("singleeq", ("test",)), ("asdiv", "test")),
    ("CSQA train vs test (dev)", ("csqa", ("train", "valid")), ("csqa", "test")),
    ("ANLI R1 valid vs test", ("anli", ("valid",)), ("anli", "test")),
    ("e-SNLI valid vs test", ("esnli", ("valid",)), ("esnli", "test")),
]
# teacher releases: chains of the train examples against the test questions
CHAINS = [
    ("TDG GPT-3.5 chains vs MATH test (5,000)", ("math", "tdg"), ("math", "test")),
    ("DSS PaLM chains (SVAMP) vs SVAMP DSS test", ("svamp", "dss", {"split_source": "dss"}), ("svamp", "test", {"split_source": "dss"})),
    ("DSS PaLM chains (CQA) vs CQA test", ("csqa", "dss", {"source": "dss"}), ("csqa", "test", {"source": "dss"})),
]


def task(name: str, data_dir: str, options: dict | None = None):
    return get_task(name, data_dir=data_dir, **(options or {}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-chains", action="store_true")
    ap.add_argument("--chains-only", action="store_true", help="only the teacher releases' chains (the slow part: TDG's 58,931)")
    a = ap.parse_args()
    root = str(Path(a.data_dir).resolve())
    rows = []
    print("| comparison | training side | held out | exact | near | share | seconds |\n|---|---:|---:|---:|---:|---:|---:|")
    for label, src, tgt in [] if a.chains_only else QUESTIONS:
        start = time.perf_counter()
        s_task = task(src[0], root, src[2] if len(src) > 2 else None)
        sources = questions([e for split in src[1] for e in s_task.load(split)])
        targets = questions(task(tgt[0], root, tgt[2] if len(tgt) > 2 else None).load(tgt[1]))
        pairs = near_duplicates(sources, targets)
        rows.append(_row(label, sources, targets, pairs, time.perf_counter() - start))
    for label, src, tgt in [] if a.no_chains else CHAINS:
        from harness.config import TeacherSpec
        from harness.teacher import released_chains

        start = time.perf_counter()
        s_task = task(src[0], root, src[2] if len(src) > 2 else None)
        chains = released_chains(s_task, TeacherSpec(name=src[1], data_dir=root))
        texts = list({c.text: (f"{c.example_id}#{i}", c.text) for i, c in enumerate(chains) if c.text}.values())
        targets = questions(task(tgt[0], root, tgt[2] if len(tgt) > 2 else None).load(tgt[1]))
        rows.append(_row(label, texts, targets, contained(texts, targets), time.perf_counter() - start))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False))


def _row(label: str, sources: list, targets: list, pairs: list, seconds: float) -> dict:
    s = summary(pairs, len(targets))
    print(f"| {label} | {len(sources):,} | {len(targets):,} | {s['exact']:,} | {s['near']:,} | {s['share']:.1%} | {seconds:.0f} |", flush=True)
    first = sorted(pairs, key=lambda p: (not p.exact, -p.similarity))[:5]
    return {"comparison": label, "sources": len(sources), "targets": len(targets), **s, "examples": [p.to_dict(160) for p in first]}


if __name__ == "__main__":
    main()
