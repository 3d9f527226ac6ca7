"""The contamination check of a grid (README: Contamination check): before any cell trains, what
the student will train on is compared with the questions it is selected and scored on.

Training side (sources): `train` (the task's train questions; a teacher bank's questions are
these, its chains being keyed by train example), `chains` (the bank's chains of the train
examples, positives and negatives), and after training `generated` / `generated_chains` (the
problems a method wrote and kept, FDD, with their chains). Held-out side (targets): `valid`,
`test` and every out-of-distribution test set `ood_<name>` (eval.test_sets).

Questions are compared by `near_duplicates`, chains by `contained` (harness/contamination.py:
thresholds, n-grams, MinHash settings). A report is cached in the store by the content key of
what determines it (`contamination/<key>.json`: task, bank, test sets, settings), so the cells
of a grid that share a task and bank compute it once. `test` counts the test questions (in
distribution and OOD) duplicated by some training source: what `--strict` refuses. Overlaps with
`valid` are reported and logged but never refused: valid only selects a checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import RunSpec
from harness.contamination import (
    CONTAINMENT,
    MIN_CONTAINED_CHARS,
    NUM_PERM,
    SEED,
    THRESHOLD,
    Pair,
    contained,
    near_duplicates,
    summary,
)
from harness.store import Store, atomic_write_text, content_key, read_jsonl
from harness.types import Chain, Example

FORMAT = 1  # of a report; in its key
KIND = "char"  # n-grams of the check (contamination.KINDS)
MAX_PAIRS = 200  # pairs kept per comparison in a report (the counts cover all of them)
TRAIN_SOURCES = ("train", "chains")  # known before training
METRIC = "data/contamination"


def settings() -> dict[str, Any]:
    """What, besides the data, determines a report (part of its key, and shown in it)."""
    return {"format": FORMAT, "kind": KIND, "threshold": THRESHOLD, "containment": CONTAINMENT, "min_contained_chars": MIN_CONTAINED_CHARS,
            "num_perm": NUM_PERM, "seed": SEED}


def report_path(store: Store, key: str) -> Path:
    """`contamination/<key>/report.json`: a folder per report, so the run's artifact is report.json."""
    return store.dir("contamination", key) / "report.json"


def chain_texts(chains: Sequence[Chain]) -> list[tuple[str, str]]:
    """(id, text) per distinct chain text (the first chain's id: "<example id>#<i>")."""
    seen: set[str] = set()
    out, index = [], {}
    for c in chains:
        i = index[c.example_id] = index.get(c.example_id, -1) + 1
        if c.text and c.text not in seen:
            seen.add(c.text)
            out.append((f"{c.example_id}#{i}", c.text))
    return out


def questions(examples: Sequence[Example]) -> list[tuple[str, str]]:
    return [(e.id, e.question) for e in examples]


def compare(sources: dict[str, list[tuple[str, str]]], targets: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    """`<source>_vs_<target>`: counts (exact, near, share of the target's questions) and pairs, for
    every source and target; question sources by Jaccard, chain sources by containment. Each
    source is searched once against every target set together."""
    sets_of: dict[str, list[str]] = {}
    for t, held in targets.items():
        for tid, _ in held:
            sets_of.setdefault(tid, []).append(t)
    every = list({tid: (tid, text) for held in targets.values() for tid, text in held}.values())
    out: dict[str, Any] = {}
    for s, texts in sources.items():
        find = contained if s.endswith("chains") else near_duplicates
        by_set: dict[str, list[Pair]] = {t: [] for t in targets}
        for p in find(texts, every, kind=KIND):
            for t in sets_of[p.target]:
                by_set[t].append(p)
        for t, pairs in by_set.items():
            n = len(targets[t])
            out[f"{s}_vs_{t}"] = {
                "sources": len(texts), "targets": n, **summary(pairs, n), "pairs_total": len(pairs),
                "hit": sorted({p.target for p in pairs}), "pairs": [p.to_dict() for p in _first(pairs)],
            }
    return out


def _first(pairs: list[Pair]) -> list[Pair]:
    """The pairs kept in a report: exact ones first, then the most similar."""
    return sorted(pairs, key=lambda p: (not p.exact, -p.similarity, p.target, p.source))[:MAX_PAIRS]


def test_targets(report: dict[str, Any]) -> dict[str, set[str]]:
    """Per test set (`test`, `ood_<name>`): the ids of its questions some source duplicates."""
    out: dict[str, set[str]] = {}
    for name, c in report["comparisons"].items():
        target = name.split("_vs_", 1)[1]
        if target != "valid":
            out.setdefault(target, set()).update(c["hit"])
    return out


def totals(report: dict[str, Any]) -> dict[str, float]:
    """Test questions (in distribution, then all test sets) duplicated by some training source,
    and their share of the in-distribution test set."""
    hit = test_targets(report)
    n_test = report["sizes"]["test"]
    return {"test_total": len(hit.get("test", ())), "test_total_share": len(hit.get("test", ())) / n_test if n_test else 0.0,
            "all_tests_total": sum(len(v) for v in hit.values())}


def first_pair(report: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The first (comparison, pair) that touches a test set: exact before near."""
    found = [(name, p) for name, c in report["comparisons"].items() if not name.endswith("_vs_valid") for p in c["pairs"]]
    return min(found, key=lambda x: (not x[1]["exact"], -x[1]["similarity"]), default=None)


def describe(report: dict[str, Any]) -> str:
    """One line: how many test questions are duplicated, and the first pair."""
    t = totals(report)
    first = first_pair(report)
    if first is None:
        return f"{report['task']}: no test question duplicated by train questions or teacher chains"
    name, p = first
    how = "exactly" if p["exact"] else f"at {p['similarity']:.2f}"
    return (f"{report['task']}: {t['all_tests_total']:.0f} test question(s) duplicated by training data "
            f"(first: {name.split('_vs_')[0]} {p['source']} {_quote(p['source_text'])} matches {p['target']} "
            f"{_quote(p['target_text'])} {how})")


def _quote(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def held_out(spec: RunSpec, valid: Sequence[Example]) -> dict[str, list[tuple[str, str]]]:
    """The questions a training source must not duplicate, by set: `valid`, `test` and one
    `ood_<name>` per out-of-distribution test set (eval.test_sets)."""
    from tasks import get_task

    test = get_task(spec.task.name, **spec.task.options).load("test")
    oods = [get_task(t.name, **t.options) for t in spec.eval.test_sets]
    return {"valid": questions(valid), "test": questions(test), **{f"ood_{o.name}": questions(o.load("test")) for o in oods}}


def report_for(spec: RunSpec, store: Store) -> dict[str, Any]:
    """The report of a cell's task, bank and test sets before training (cached in the store; the
    bank is built or found as the cell would)."""
    from harness.run import prepare, teacher_bank

    p = prepare(spec)
    train, valid = p.task.load("train"), p.task.load("valid")
    bank_key, bank = teacher_bank(p.task, train, valid, spec, store)
    return cell_report(spec, train, valid, bank_key, bank, store)


def cell_report(spec: RunSpec, train: Sequence[Example], valid: Sequence[Example], bank_key: str, bank: Sequence[Chain], store: Store) -> dict[str, Any]:
    """The pre-training report of one cell: computed once per content key, then read back."""
    from tasks import get_task
    from tasks.base import task_key

    task = get_task(spec.task.name, **spec.task.options)
    oods = [get_task(t.name, **t.options) for t in spec.eval.test_sets]
    key = content_key({"task": task_key(task), "ood": [task_key(o) for o in oods], "bank": bank_key, **settings()})
    path = report_path(store, key)
    with store.lock("contamination", key):  # a second worker waits, then reads it
        if path.exists():
            return json.loads(path.read_text())
        targets = held_out(spec, valid)
        sources = {"train": questions(train), "chains": chain_texts(bank)}
        report = {"key": key, "task": task.name, "bank": bank_key, "settings": settings(),
                  "sizes": {name: len(v) for name, v in {**sources, **targets}.items()}, "comparisons": compare(sources, targets)}
        atomic_write_text(path, json.dumps(report, indent=1, ensure_ascii=False))
    return report


def generated(artifacts: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(questions, chains) of the problems a method wrote and trained on: the audit rows it left
    in its artifacts (FDD's fdd/round-<g>.jsonl: `problem`, `verdict`, `chains`), verdict kept."""
    qs: list[tuple[str, str]] = []
    chains: list[tuple[str, str]] = []
    for path in sorted(artifacts.rglob("*.jsonl")):
        for row in read_jsonl(path):
            if row.get("verdict") != "kept" or not isinstance(row.get("problem"), dict):
                continue
            pid, q = row["problem"]["id"], row["problem"]["question"]
            qs.append((pid, q))
            chains += [(f"{pid}#{i}", c) for i, c in enumerate(row.get("chains") or []) if c]
    return qs, chains


def generated_report(report: dict[str, Any], artifacts: Path, spec: RunSpec, valid: Sequence[Example], store: Store, key: str) -> dict[str, Any] | None:
    """The report with the generated problems' comparisons added (None when the method wrote
    none), cached under the trained checkpoint's key."""
    qs, chains = generated(artifacts)
    if not qs:
        return None
    gkey = f"generated-{content_key({'checkpoint': key, 'report': report['key']})}"
    path = report_path(store, gkey)
    if path.exists():
        return json.loads(path.read_text())
    targets = held_out(spec, valid)
    sources = {"generated": qs, "generated_chains": chains}
    out = {**report, "key": gkey, "base": report["key"], "sizes": {**report["sizes"], "generated": len(qs), "generated_chains": len(chains)},
           "comparisons": {**report["comparisons"], **compare(sources, targets)}}
    atomic_write_text(path, json.dumps(out, indent=1, ensure_ascii=False))
    return out


def metrics(report: dict[str, Any], only: Sequence[str] | None = None) -> dict[str, float]:
    """`data/contamination/<source>_vs_<target>_{exact,near,share}` (only the comparisons of the
    sources in `only`, when given) and the totals."""
    out: dict[str, float] = {}
    for name, c in report["comparisons"].items():
        if only is None or name.split("_vs_", 1)[0] in only:
            out |= {f"{METRIC}/{name}_{k}": float(c[k]) for k in ("exact", "near", "share")}
    return out | {f"{METRIC}/{k}": float(v) for k, v in totals(report).items()}


def log_report(log: Any, report: dict[str, Any], store: Store, step: int = 0, only: Sequence[str] | None = None) -> None:
    """A cell's metrics and its artifact `contamination/report.json` (counts and matched pairs)."""
    log.metrics(metrics(report, only), step)
    log.artifact(report_path(store, report["key"]), "contamination")


def scope(spec: RunSpec) -> str:
    """What a report depends on in a spec (task, teacher, test sets): cells with equal scopes share it."""
    # not teacher.noise: a noisy view's chains are the generated bank's (harness/noise.py)
    return content_key({"task": spec.task.model_dump(mode="json"), "teacher": spec.teacher.model_dump(mode="json", exclude={"noise"}),
                        "ood": [t.model_dump(mode="json") for t in spec.eval.test_sets]})


def load_specs(path: Path, overrides: Sequence[str] = ()) -> tuple[str, list[RunSpec]]:
    """(name, run specs) of a grid spec (a mapping with `base:`) or a run spec."""
    from harness.config import load_grid, load_run, load_yaml

    if "base" in load_yaml(path):
        g = load_grid(path, overrides)
        return g.name, [s for _, s in g.cells()]
    s = load_run(path, overrides)
    return s.name, [s]
