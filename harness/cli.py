"""The `distillbench` command line. Bad input exits with status 2 and one line, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import UserError

app = typer.Typer(
    name="distillbench",
    help="Benchmark chain-of-thought distillation from teacher chains, positives and negatives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# a pipe or a CI log gets wide lines instead of rich's 80-column default
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Store directory (default: $DISTILLBENCH_HOME or ./.distillbench).")]


def _tracking_uri(value: Optional[str]) -> Optional[str]:
    """--tracking-uri, checked before any work: a known scheme, a server that answers."""
    if value:
        from harness.tracking import check_tracking_uri

        try:
            check_tracking_uri(value)
        except UserError as e:
            raise typer.BadParameter(str(e)) from None
    return value


TrackingOpt = Annotated[Optional[str], typer.Option("--tracking-uri", callback=_tracking_uri, help="MLflow tracking URI (default: the store's SQLite database).")]
Overrides = Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. train.steps=100 or grid.method.name=[dss].")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DataDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        envvar="DISTILLBENCH_DATA",
        help="Folder with the original dataset files, one subfolder per dataset (gsm8k/, math/, tdg/, dss/, ...; see README: Data). Used by tasks whose spec gives no data_dir or hf_dataset.",
    ),
]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Skip malformed data rows (each one is reported) instead of stopping.")]
KOpt = Annotated[Optional[int], typer.Option("--k", min=1, help="Sampled chains per test example (decode.k).")]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature of the student (decode.temperature).")]
TopPOpt = Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling threshold (decode.top_p).")]
SeedOpt = Annotated[Optional[int], typer.Option("--decode-seed", help="Sampling seed of the student (decode.seed).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Refuse, before any training, a grid whose train questions or teacher chains duplicate a test question (README: Contamination check).")]


def _decode_overrides(k: int | None, temperature: float | None, top_p: float | None, seed: int | None) -> list[str]:
    """--k/--temperature/--top-p/--decode-seed as the spec overrides they abbreviate."""
    given = {"k": k, "temperature": temperature, "top_p": top_p, "seed": seed}
    return [f"decode.{name}={value}" for name, value in given.items() if value is not None]


def _store(store: Path | None):
    from harness.store import Store

    return Store(store)


def _dir(data_dir: Path | None) -> str | None:
    if data_dir is None:
        return None
    if not data_dir.expanduser().is_dir():
        raise UserError(f"--data-dir {str(data_dir)!r} is not a folder")
    # absolute, so a cell's spec (and its cache key) names the same files from any directory
    return str(data_dir.expanduser().resolve())


@app.command()
def run(
    spec: Path,
    overrides: Overrides = None,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
    data_dir: DataDirOpt = None,
    skip_bad: SkipBadOpt = False,
    k: KOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    decode_seed: SeedOpt = None,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Run one cell from a run spec (YAML) and print its results."""
    from harness.config import load_run, with_data
    from harness.grid import run_grid

    s = with_data(load_run(spec, [*(overrides or []), *_decode_overrides(k, temperature, top_p, decode_seed)]), _dir(data_dir), skip_bad)
    st = _store(store)
    results = run_grid([(s.name, s)], s.name, st, tracking_uri, err, show_progress=not quiet, strict=strict)
    _finish(results, tracking_uri or st.tracking_uri, s.name)


def _finish(results: list, tracking_uri: str, name: str) -> None:
    """The results table, then the failed cells (exit code 1 when there are any)."""
    from harness.tracking import is_outage
    from leaderboard.table import print_table

    try:
        print_table(tracking_uri, name, out)
    except Exception as e:
        if not (tracking_uri.startswith(("http://", "https://")) and is_outage(e)):
            raise
        err.print(f"no results table: the tracking server {tracking_uri} is unreachable; the results wait in the store's outbox (distillbench sync)", markup=False)
    failed = [r for r in results if r.error]
    if failed:
        err.print(f"{len(failed)} of {len(results)} cells failed (rerunning the grid retries only them):", markup=False)
        for r in failed:
            err.print(f"  {r.cell}: {r.error}" + (f" (MLflow run {r.run_id})" if r.run_id else ""), markup=False)
        # every failure a mistake in the input (data, spec, options): the usage exit code, 2
        user = all(r.error.removeprefix("shared stage: ").startswith(("UserError:", "UserError (")) for r in failed)
        raise typer.Exit(2 if user else 1)


@app.command()
def grid(
    spec: Path,
    overrides: Overrides = None,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
    data_dir: DataDirOpt = None,
    skip_bad: SkipBadOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and list the cells; run nothing.")] = False,
    k: KOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    decode_seed: SeedOpt = None,
    quiet: QuietOpt = False,
    executor: Annotated[Optional[str], typer.Option("--executor", help="local (a process per cell), ray, or sequential (in this process); default: the spec's executor: section, else local.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Cells at once (local) / CPUs of a local Ray instance.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch threads per cell (default: CPU cores / workers).")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="An existing Ray cluster (default: a local instance on 127.0.0.1).")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Start no cell after the first failure.")] = False,
    strict: StrictOpt = False,
) -> None:
    """Run every cell of a grid spec (YAML), skipping finished cells, and print the table."""
    from harness.config import load_grid, with_data
    from harness.dryrun import dry_run as print_dry_run  # not `dry_run`: that is the option
    from harness.executors import get_executor
    from harness.grid import run_grid

    g = load_grid(spec, [*(overrides or []), *_decode_overrides(k, temperature, top_p, decode_seed)])
    cells = [(cell, with_data(s, _dir(data_dir), skip_bad)) for cell, s in g.cells()]
    if dry_run:
        print_dry_run(cells, out)
        return
    given = {"name": executor, "workers": workers, "threads": threads, "ray_address": ray_address}
    ex = get_executor(g.executor.model_copy(update={k: v for k, v in given.items() if v is not None}))
    st = _store(store)
    results = run_grid(cells, g.name, st, tracking_uri, err, show_progress=not quiet, executor=ex, fail_fast=fail_fast, strict=strict or g.contamination.strict)
    _finish(results, tracking_uri or st.tracking_uri, g.name)


@app.command()
def contamination(
    spec: Path,
    overrides: Overrides = None,
    store: StoreOpt = None,
    data_dir: DataDirOpt = None,
    skip_bad: SkipBadOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON (counts and matched pairs).")] = False,
    pairs: Annotated[int, typer.Option("--pairs", min=0, help="Matched pairs shown per comparison.")] = 3,
) -> None:
    """The contamination check of a run or grid spec, without training: train questions and
    teacher chains against valid and test questions, per distinct task, bank and test sets (the
    teacher bank is built when missing)."""
    import json

    from harness import contamination_check as cc
    from harness.config import with_data

    name, specs = cc.load_specs(spec, list(overrides or []))
    st = _store(store)
    reports = []
    for s in {cc.scope(s): s for s in (with_data(s, _dir(data_dir), skip_bad) for s in specs)}.values():
        reports.append(cc.report_for(s, st))
    if as_json:
        out.print_json(json.dumps(reports, ensure_ascii=False))
        return
    for r in reports:
        t = Table("comparison", "training side", "held out", "exact", "near", "share", title=f"{escape(name)}: {escape(r['task'])}, bank {r['bank'][:12]}")
        for what, c in r["comparisons"].items():
            flag = "red" if (c["exact"] or c["near"]) and not what.endswith("_vs_valid") else None
            cell = (lambda v: f"[{flag}]{v}[/]") if flag else str
            t.add_row(what, f"{c['sources']:,}", f"{c['targets']:,}", cell(f"{c['exact']:,}"), cell(f"{c['near']:,}"), f"{c['share']:.1%}")
        out.print(t)
        for what, c in r["comparisons"].items():
            for p in c["pairs"][:pairs]:
                how = "exact" if p["exact"] else f"{p['similarity']:.2f}"
                out.print(f"  {what} ({how}): {p['source']} {p['source_text'][:80]!r} ~ {p['target']} {p['target_text'][:80]!r}", markup=False)
        sets = r["settings"]
        out.print(f"{cc.describe(r)}. Near: {sets['kind']} n-gram Jaccard >= {sets['threshold']} with the same numbers (questions), "
                  f"containment >= {sets['containment']} (chains); MinHash {sets['num_perm']} permutations, seed {sets['seed']}.", markup=False)


@app.command()
def status(
    spec: Path,
    overrides: Overrides = None,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
    data_dir: DataDirOpt = None,
    skip_bad: SkipBadOpt = False,
) -> None:
    """Where every cell of a grid stands (done / running / failed / stale / pending, with the
    reason for failures) and the state of the stages its cells share."""
    from harness.config import load_grid, with_data
    from harness.status import grid_status

    g = load_grid(spec, list(overrides or []))
    cells = [(cell, with_data(s, _dir(data_dir), skip_bad)) for cell, s in g.cells()]
    rows, stages, note = grid_status(cells, g.name, _store(store), tracking_uri)
    t = Table("cell", "state", "MLflow run", "detail", title=f"{g.name}: {len(cells)} cells")
    colour = {"done": "green", "running": "cyan", "failed": "red", "stale": "yellow", "pending": "dim"}
    for r in rows:
        t.add_row(escape(r.cell), f"[{colour[r.state]}]{r.state}[/]", r.run_id, escape(r.detail))
    out.print(t)
    counts = {s: sum(r.state == s for r in rows) for s in colour}
    out.print(", ".join(f"{n} {s}" for s, n in counts.items() if n), markup=False)
    if stages:
        st = Table("shared stage", "state", title="shared stages")
        for what, state in stages:
            st.add_row(escape(what), escape(state))
        out.print(st)
    if note:
        err.print(note, markup=False)


@app.command()
def sync(store: StoreOpt = None, tracking_uri: TrackingOpt = None) -> None:
    """Upload what runs wrote to the store's outbox while their tracking server was away
    (idempotent: runs are found by their cell, metric points are not written twice)."""
    from harness.tracking import outbox_journals
    from harness.tracking import sync as upload

    st = _store(store)
    pending = outbox_journals(st)
    if not pending:
        out.print(f"the outbox of {st.root} is empty: nothing to sync", markup=False)
        return
    counts = upload(st, tracking_uri, out=lambda line: out.print(line, markup=False))
    out.print(
        f"{counts['runs']} runs synced ({counts['created']} created), {counts['points']} metric points uploaded, "
        f"{counts['skipped_points']} already there; {counts['already_finished']} cells already finished on the server",
        markup=False,
    )


SchemesOpt = Annotated[
    Optional[str],
    typer.Option(
        "--schemes",
        help="Comma-separated schemes: greedy, majority, weighted, asc[:flag], esc[:window], each with an optional @k "
        "(default: greedy if there are greedy chains, and majority, weighted, esc if there are sampled ones).",
    ),
]


@app.command()
def aggregate(
    predictions: Annotated[str, typer.Argument(help="A predictions folder (a run's 'predictions' artifact) or an MLflow run id.")],
    schemes: SchemesOpt = None,
    scores: Annotated[Optional[Path], typer.Option("--scores", help="JSONL of ranker scores {example_id, sample, score} for asc.")] = None,
    curves: Annotated[bool, typer.Option("--curves/--no-curves", help="pass@k and scheme@k for k = 1..K.")] = True,
    subsamples: Annotated[int, typer.Option("--subsamples", min=1, help="Random orders per example for the curves.")] = 200,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=100, help="Resamples for the 95% intervals.")] = 2000,
    seed: int = 0,
    re_extract: Annotated[bool, typer.Option("--re-extract", help="Read each chain's answer again with the task's current extraction (e.g. a run graded by an older task version).")] = False,
    log_to: Annotated[Optional[str], typer.Option("--run", help="Log to this MLflow run (default: the run given as PREDICTIONS, if any).")] = None,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Re-score saved chains with any schemes and curves, without decoding again; log to the run."""
    import tempfile

    from harness.aggregate import parse_scheme
    from harness.evaluate import (
        attach_scores,
        evaluate,
        locate_predictions,
        log_evaluation,
        read_predictions,
        split_chains,
    )

    parsed = [parse_scheme(s) for s in schemes.split(",") if s.strip()] if schemes is not None else None
    if parsed == []:
        raise UserError("--schemes names no scheme")
    st = _store(store)
    uri = tracking_uri or st.tracking_uri
    with tempfile.TemporaryDirectory(prefix="distillbench-aggregate-") as scratch:
        folder, run_id = locate_predictions(predictions, uri, Path(scratch))
        preds = read_predictions(folder)
        chains = attach_scores(preds.chains, scores) if scores is not None else preds.chains
        if parsed is None:
            greedy, sampled = split_chains(chains)
            parsed = [parse_scheme(s) for s in (["greedy"] if greedy else []) + (["majority", "weighted", "esc"] if sampled else [])]
        task = preds.task()
        if re_extract:
            import dataclasses

            chains = [dataclasses.replace(c, answer=task.extract(c.text)) for c in chains]
        ev = evaluate(task, preds.examples, chains, parsed, bootstrap, seed, curves=curves, subsamples=subsamples)
        _print_evaluation(ev, task.name, len(preds.examples))
        target = log_to or run_id
        if target is not None:
            from harness.tracking import RunLog, _quiet_mlflow

            _quiet_mlflow()
            from mlflow.tracking import MlflowClient

            from leaderboard.data import AGGREGATED_TAG

            client = MlflowClient(tracking_uri=uri)
            log = RunLog(client, target)
            log_evaluation(log, "test", ev, Path(scratch) / "evaluation")
            before = client.get_run(target).data.tags.get(AGGREGATED_TAG, "")
            known = [s for s in before.split(",") if s]
            log.tags({AGGREGATED_TAG: ",".join(known + [s.spec for s in parsed if s.spec not in known])})
            log.flush()
            err.print(f"logged to MLflow run {target}")


def _print_evaluation(ev, task_name: str, n: int) -> None:
    from harness.aggregate import parse_scheme

    t = Table(f"{task_name}: {n} examples", "accuracy", "95% interval", "chains used")
    for spec, s in ev.scores.items():
        t.add_row(spec, f"{100 * s.acc:.1f}", f"[{100 * s.lo:.1f}, {100 * s.hi:.1f}]", f"{ev.used[spec]:.2f}")
    out.print(t)
    if ev.curves is not None:
        c = ev.curves
        ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, 128, c.k) if k <= c.k})
        t = Table(f"curves (accuracy %, {c.subsamples} random orders per example)", *[f"k={k}" for k in ks])
        t.add_row("pass@k", *[f"{100 * c.pass_at[k - 1]:.1f}" for k in ks])
        for spec, curve in c.schemes.items():
            t.add_row(f"{spec}@k", *[f"{100 * curve.acc[k - 1]:.1f}" for k in ks])
            if parse_scheme(spec).definition.reports_used:
                t.add_row(f"{spec} chains used", *[f"{curve.used[k - 1]:.1f}" for k in ks])
        out.print(t)
    for spec, tables in ev.breakdowns.items():
        for fld, rows in tables.items():
            t = Table(f"{spec} by {fld}", "accuracy", "n")
            for value, (acc, count) in rows.items():
                t.add_row(value, f"{100 * acc:.1f}", str(count))
            out.print(t)


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="Run A: a predictions folder or an MLflow run id.")],
    b: Annotated[str, typer.Argument(help="Run B, scored on the same test examples.")],
    scheme: Annotated[str, typer.Option("--scheme", help="The scheme both runs are compared under.")] = "greedy",
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Paired-bootstrap resamples.")] = 10_000,
    seed: int = 0,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Is B better than A? Paired bootstrap and McNemar's exact test on the same examples."""
    from harness.compare import compare as paired

    (correct_a, _), (correct_b, _) = _correct_per_example((a, b), scheme, tracking_uri or _store(store).tracking_uri, seed)
    c = paired(correct_a, correct_b, resamples, seed)
    t = Table(f"{scheme}: B - A over {c.n} paired examples", "")
    t.add_row("accuracy A / B", f"{100 * c.acc_a:.2f} / {100 * c.acc_b:.2f}")
    t.add_row("difference B - A [95% paired bootstrap]", f"{100 * c.diff:+.2f} [{100 * c.lo:+.2f}, {100 * c.hi:+.2f}]")
    t.add_row("p (paired bootstrap, two-sided)", f"{c.p_bootstrap:.4g}")
    t.add_row("only A right / only B right", f"{c.only_a} / {c.only_b}")
    t.add_row("p (McNemar exact, two-sided)", f"{c.p_mcnemar:.4g}")
    out.print(t)


def _correct_per_example(refs: tuple[str, ...], scheme: str, uri: str, seed: int = 0) -> list[tuple[dict[str, bool], list[Any]]]:
    """For each run (a predictions folder or an MLflow run id): (example id -> right under
    `scheme`, the scored examples)."""
    import tempfile

    from harness.aggregate import parse_scheme
    from harness.evaluate import evaluate, locate_predictions, read_predictions

    s = parse_scheme(scheme)
    out = []
    with tempfile.TemporaryDirectory(prefix="distillbench-correct-") as scratch:
        for i, ref in enumerate(refs):
            folder, _ = locate_predictions(ref, uri, Path(scratch) / str(i))
            preds = read_predictions(folder)
            ev = evaluate(preds.task(), preds.examples, preds.chains, [s], bootstrap=100, seed=seed, curves=False)
            out.append((ev.correct[s.spec], list(preds.examples)))
    return out


@app.command()
def diagnose(
    a: Annotated[str, typer.Argument(help="Run A (e.g. trained on positives only): a predictions folder or an MLflow run id.")],
    b: Annotated[str, typer.Argument(help="Run B (e.g. trained on negatives only), scored on the same test examples.")],
    scheme: Annotated[str, typer.Option("--scheme", help="The scheme both runs are scored under.")] = "greedy",
    by: Annotated[str, typer.Option("--by", help="Example meta field to break down by ('' for none).")] = "subject",
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Do two runs solve the same problems? Solved sets, their intersection and IoU (TDG Table 1)."""
    from leaderboard.data import solved_overlap

    (correct_a, examples), (correct_b, _) = _correct_per_example((a, b), scheme, tracking_uri or _store(store).tracking_uri)
    groups = {ex.id: ex.meta.get(by) for ex in examples} if by and any(by in ex.meta for ex in examples) else None

    t = Table(title=f"{scheme}: problems solved by A, by B and by both")
    for col in ("group", "examples", "solved by A", "solved by B", "both", "IoU"):
        t.add_column(col, justify="left" if col == "group" else "right")
    for o in solved_overlap(correct_a, correct_b, groups):
        t.add_row(escape(o.group), str(o.examples), str(o.solved_a), str(o.solved_b), str(o.both), f"{o.iou:.3f}")
    out.print(t)


@app.command()
def power(
    a: Annotated[str, typer.Argument(help="Run A: a predictions folder or MLflow run id; several seeds as ID1,ID2,...; or GRID/CELL, every seed of a grid's cell.")],
    b: Annotated[str, typer.Argument(help="Run B, in the same forms, scored on the same test examples.")],
    scheme: Annotated[str, typer.Option("--scheme", help="The scheme both runs are compared under.")] = "greedy",
    gap: Annotated[float, typer.Option("--gap", help="The accuracy gap to resolve (0.01 = 1 point).")] = 0.01,
    alpha: Annotated[float, typer.Option("--alpha", help="Level of the two-sided test.")] = 0.05,
    target: Annotated[float, typer.Option("--power", help="Wanted power (chance of resolving the gap when it is real).")] = 0.8,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """How many test examples (McNemar) and seeds (t-test) resolve a gap; the smallest gap resolvable now."""
    import numpy as np

    from harness import power as pw

    for name, value in (("--gap", gap), ("--alpha", alpha), ("--power", target)):
        if not 0 < value < 1:
            raise UserError(f"{name} must be between 0 and 1 (exclusive), got {value}")
    uri = tracking_uri or _store(store).tracking_uri
    refs_a, refs_b = _seed_runs(a, uri), _seed_runs(b, uri)
    results = [correct for correct, _ in _correct_per_example((*refs_a, *refs_b), scheme, uri)]
    ids = sorted(results[0])
    if not ids:
        raise UserError("nothing to plan: no scored examples")
    for ref, correct in zip((*refs_a, *refs_b), results):
        if set(correct) != set(ids):
            raise UserError(f"run {ref} was scored on different test examples ({len(correct)} vs {len(ids)}): power planning needs one test set")
    outcomes = np.array([[bool(c[i]) for i in ids] for c in results], dtype=np.float64)
    p = pw.plan(outcomes[: len(refs_a)], outcomes[len(refs_a) :], gap, alpha, target)

    def pts(x: float) -> str:
        return "n/a" if x != x else f"{100 * x:.2f}"  # nan != nan

    t = Table(f"{scheme}: resolving a gap of {pts(gap)} points (two-sided α {alpha:g}, power {target:g})", "")
    t.add_row("seeds A / B", f"{p.seeds_a} / {p.seeds_b}")
    t.add_row("accuracy A / B (mean over seeds)", f"{pts(p.acc_a)} / {pts(p.acc_b)}")
    t.add_row("observed gap B - A (points)", f"{100 * p.observed_gap:+.2f}")
    t.add_row("discordant pairs ψ", f"{100 * p.discordance:.2f}%")
    t.add_row("test examples needed (exact McNemar; Connor's formula) / at hand", f"{p.examples_needed:,} ({p.examples_needed_approx:,}) / {p.n:,}")
    t.add_row(f"smallest gap resolvable with {p.n:,} examples (points)", pts(p.min_gap_now))
    both = pw.seed_variances(p.var_a, p.var_b)
    if both is None:
        t.add_row("seeds needed per side (t-test)", "n/a: one seed per side, no seed-to-seed variance")
    else:
        va, vb = both
        t.add_row(
            f"seed-to-seed std of accuracy A / B at {p.n:,} examples (points)",
            f"{pts(va.at(p.n) ** 0.5)} / {pts(vb.at(p.n) ** 0.5)} (between-seed {pts(va.between**0.5)} / {pts(vb.between**0.5)})",
        )
        seeds = f">{pw.MAX_SEEDS:,}" if p.seeds_needed is None else str(p.seeds_needed)
        t.add_row(f"seeds needed per side (t-test at {p.planned_n:,} examples)", seeds)
        t.add_row(f"smallest gap resolvable with {min(p.seeds_a, p.seeds_b)} seeds per side (points)", pts(p.min_gap_seeds))
    out.print(t)
    out.print(_power_verdict(p), markup=False, highlight=False)


def _power_verdict(p: Any) -> str:
    """The plan in one sentence."""
    g = f"{100 * p.gap:.2f}-point gap"
    if p.examples_needed <= p.n:
        words = f"{p.n:,} test examples are enough for a {g} with McNemar's test ({p.examples_needed:,} needed)"
    else:
        words = f"too few test examples for a {g}: {p.examples_needed:,} needed, {p.n:,} at hand, which resolve {100 * p.min_gap_now:.2f} points or more"
    if p.var_a is not None or p.var_b is not None:
        have = min(p.seeds_a, p.seeds_b)
        if p.seeds_needed is None:
            from harness.power import MAX_SEEDS

            words += f"; over seeds, not even {MAX_SEEDS:,} per side resolve it"
        else:
            enough = "enough" if p.seeds_needed <= have else "too few"
            words += f"; over seeds, {p.seeds_needed} per side needed at {p.planned_n:,} examples ({have} at hand: {enough})"
    return words + "."


def _seed_runs(ref: str, uri: str) -> list[str]:
    """The runs a `power` argument names: a folder or run id, ID1,ID2,... (one per seed), or
    GRID/CELL (every finished seed of the cell; CELL with or without its seed=... part)."""
    if Path(ref).expanduser().is_dir():
        return [ref]
    if "/" in ref and "=" in ref:
        from leaderboard.data import group_by_seed, group_label, load_cells

        grid, cell = ref.split("/", 1)
        groups = [g for g in group_by_seed(load_cells(uri, grid)) if g.label == group_label(cell)]
        if len(groups) != 1:
            found = "no finished cell" if not groups else f"{len(groups)} groups of cells"
            raise UserError(f"{ref!r}: {found} {group_label(cell)!r} in grid {grid!r} ({uri})")
        return [r.run_id for r in groups[0].rows]
    refs = [r for r in ref.split(",") if r]
    if not refs:
        raise UserError(f"{ref!r} names no run")
    return refs


@app.command()
def leaderboard(
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """Start the Streamlit leaderboard on 127.0.0.1 (Ctrl-C stops it)."""
    import os
    import subprocess

    st = _store(store) if store is not None or tracking_uri is None else None
    uri = tracking_uri or st.tracking_uri  # type: ignore[union-attr]
    page = Path(__file__).resolve().parent.parent / "leaderboard" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(page), "--server.address", "127.0.0.1", "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]  # fmt: skip
    out.print(f"leaderboard of {uri} on http://127.0.0.1:{port} (Ctrl-C stops it)")
    import signal

    # the store (when local) is where the drill-down finds the teacher banks
    env = {**os.environ, "DISTILLBENCH_TRACKING_URI": uri, **({"DISTILLBENCH_STORE": str(st.root)} if st is not None else {})}
    proc = subprocess.Popen(cmd, env=env)
    # stopping this command stops the server it started (SIGTERM from a supervisor, or Ctrl-C)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    raise typer.Exit(code if code > 0 else 0)


@app.command()
def results(experiment: Annotated[Optional[str], typer.Argument(help="Experiment (grid) name; all when omitted.")] = None, store: StoreOpt = None, tracking_uri: TrackingOpt = None) -> None:
    """Print the results table from MLflow."""
    from leaderboard.table import print_table

    print_table(tracking_uri or _store(store).tracking_uri, experiment, out)


@app.command("noise-curve")
def noise_curve(
    grid: Annotated[str, typer.Argument(help="A grid spec (YAML) or a grid's name (its MLflow experiment).")],
    overrides: Overrides = None,
    scheme: Annotated[str, typer.Option("--scheme", help="The scheme whose test accuracy is plotted.")] = "greedy",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write the chart: .png, .json (Vega-Lite) or .html.")] = None,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Each method's test accuracy (95% interval) against the teacher-noise rate of a grid
    (teacher.wrong_rate or teacher.noise.rate), with its drop and slope; --out writes the chart."""
    from harness.config import load_grid
    from harness.errors import check_name
    from leaderboard.data import load_cells
    from leaderboard.noise import AXES, fmt_rate, latest_per_cell, noise_curves, table, write_chart

    path = Path(grid)
    axis, cells = None, None
    if path.suffix in (".yaml", ".yml") or path.is_file():
        g = load_grid(path, overrides or [])
        name, cells = g.name, {c for c, _ in g.cells()}
        axes = [a for a in AXES if a in g.grid]
        if not axes:
            raise UserError(f"grid {g.name!r} has no noise axis: add grid: {{teacher.wrong_rate: [...]}} or {{teacher.noise.rate: [...]}}")
        axis = axes[-1]  # both: the noise on the bank is what the grid varies last
    else:
        if overrides:
            raise UserError("overrides need the grid spec, not its name")
        name = check_name(grid, "grid name")
    uri = tracking_uri or _store(store).tracking_uri
    rows = load_cells(uri, name)
    if cells is not None:  # only this spec's cells (the experiment may hold other versions' runs)
        rows = [r for r in rows if r.cell in cells]
    if not rows:
        raise UserError(f"no finished runs of grid {name!r} at {uri} (run it first: distillbench grid SPEC)")
    rows, older = latest_per_cell(rows)
    nc = noise_curves(rows, scheme, axis)
    header, body = table(nc)
    finished = f"; {len(rows)} of {len(cells)} cells finished" if cells is not None else ""
    t = Table(title=escape(f"{name}: test accuracy, {scheme} (%), against {nc.axis}: mean over seeds [95% interval]{finished}"))
    for h in header:
        t.add_column(escape(h), justify="left" if h == "method" else "right")
    for r in body:
        t.add_row(*(escape(x) for x in r))
    out.print(t)
    out.print(f"drop: accuracy at {fmt_rate(nc.rates[0])} minus at {fmt_rate(nc.rates[-1])}, in points "
              "(paired bootstrap over the same test examples); slope: least squares over the rates", markup=False)
    for s in nc.skipped:
        err.print(f"not shown: {s}", markup=False)
    if older:
        err.print(f"{older} older runs of the same cells ignored (the latest of each cell is shown)", markup=False)
    if out_file is not None:
        out.print(f"chart: {write_chart(nc, out_file, title=f'{name}: teacher-noise curves ({scheme})')}", markup=False)


@app.command()
def tasks(data_dir: DataDirOpt = None, skip_bad: SkipBadOpt = False) -> None:
    """List the tasks and their options; with --data-dir, load every file task and count its splits."""
    from tasks import TASKS, get_task, task_options

    root = _dir(data_dir)
    if root is None:
        t = Table("task", "options (defaults)")
        for name in TASKS:
            t.add_row(name, ", ".join(f"{k}={v!r}" for k, v in task_options(name).items()))
        out.print(t)
        return
    t = Table("task", "train", "valid", "test", f"data in {root}")
    for name in TASKS:
        if "data_dir" in task_options(name):
            t.add_row(name, *_counts(get_task(name, data_dir=root, **({"skip_bad": True} if skip_bad else {}))))
        else:
            t.add_row(name, "", "", "", "generated, no files")
    out.print(t)


def _counts(task) -> list[str]:
    """[train, valid, test, note] for one loaded task; a split that cannot load shows why."""

    cells, errors = [], {}
    for split in ("train", "valid", "test"):
        try:
            cells.append(f"{len(task.load(split)):,}")
        except UserError as e:
            cells.append("-")
            errors.setdefault(str(e), []).append(split)
    notes = [msg if len(splits) == 3 else f"{'/'.join(splits)}: {msg}" for msg, splits in errors.items()]
    if "-" not in cells and (n_bad := len(task.skipped())):
        notes.append(f"{n_bad} bad rows skipped")
    return cells + ["; ".join(notes) or "ok"]


@app.command()
def methods() -> None:
    """List the methods, what they train on, and their citation."""
    import dataclasses

    from methods import METHODS

    t = Table("method", "consumes", "options (defaults)", "citation")
    for name, m in METHODS.items():
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(m.config))
        t.add_row(name, m.consumes, opts or "-", m.citation)
    out.print(t)


@app.command()
def contract(
    names: Annotated[Optional[list[str]], typer.Argument(help="Methods to check (default: every registered method).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Check again even when this version of the method was checked.")] = False,
) -> None:
    """Check methods against the method contract (what `grid` requires), clause by clause."""
    from harness import contract as contracts
    from methods import METHODS, get_method

    failed = []
    for name in names or list(METHODS):
        get_method(name)  # a one-line error with "did you mean" for an unknown name
        report = contracts.cached(name, lambda m: err.print(f"checking the contract of {m} ...", markup=False), fresh=fresh)
        t = Table(title=f"{name}: {'passes' if report.ok else 'FAILS'} its contract ({report.seconds:.0f} s when checked)")
        t.add_column("clause")
        t.add_column("")
        t.add_column("detail", overflow="fold")
        for c in report.clauses:
            t.add_row(c.name, {True: "ok", False: "FAILED", None: "-"}[c.ok], c.detail)
        out.print(t)
        if not report.ok:
            failed.append(name)
    if failed:
        err.print(f"{len(failed)} method(s) fail their contract: {', '.join(failed)} (grid refuses them)", markup=False)
        raise typer.Exit(1)


@app.command("new-method")
def new_method(
    name: Annotated[str, typer.Argument(help="The method's name: a Python module name, e.g. rft.")],
    root: Annotated[Path, typer.Option("--root", help="The project folder holding methods/ and tests/.")] = Path("."),
) -> None:
    """Write methods/NAME.py and its test from a commented template, and register it."""
    from harness.scaffold import write

    for path in write(name, root):
        out.print(f"wrote {path}", markup=False)
    out.print(f"next: edit the loss and items in methods/{name}.py, then `distillbench contract {name}` "
              f"and `pytest tests/methods/test_{name}.py`", markup=False)


@app.command("tiny-model")
def tiny_model(
    family: Annotated[str, typer.Option(help="t5 (seq2seq) or llama (causal).")],
    task: Annotated[str, typer.Option(help="Task whose train split trains the tokenizer.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the model to.")],
    option: Annotated[Optional[list[str]], typer.Option("--option", help="Task option key=value (repeatable).")] = None,
) -> None:
    """Build a tiny randomly initialised student (tokenizer trained on the task's text)."""
    from harness.config import parse_override
    from harness.models import FAMILIES, build_tiny_model, corpus
    from tasks import get_task

    if family not in FAMILIES:
        from harness.errors import unknown

        raise unknown("model family", family, FAMILIES)
    t = get_task(task, **dict(parse_override(o) for o in option or []))
    path = build_tiny_model(family, corpus(t, t.load("train")), out_dir)  # type: ignore[arg-type]
    out.print(f"wrote a tiny {family} model to {path}")


export_app = typer.Typer(help="Export our tasks to other harnesses.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("lm-eval")
def export_lm_eval(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the task YAMLs and utils.py (lm_eval --include_path DIR).")],
    task_names: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated tasks (default: all).")] = None,
    data_dir: DataDirOpt = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", help="TASK.key=value task option (repeatable), e.g. arith.n_test=200.")] = None,
    prompt: Annotated[str, typer.Option(help="student: the student input; teacher: the task's few-shot teacher prompt.")] = "student",
    family: Annotated[str, typer.Option(help="causal (a causal LM continues from input + newline) or seq2seq (T5: the input alone).")] = "causal",
    max_new_tokens: Annotated[int, typer.Option(help="max_gen_toks: ours is decode.max_new_tokens.")] = 256,
    k: Annotated[int, typer.Option("--k", help="Samples per example of the self-consistency (_sc) tasks.")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the _sc tasks.")] = 0.7,
    limit: Annotated[Optional[int], typer.Option(help="Test examples per task (default: all).")] = None,
) -> None:
    """Write every task (or --tasks) as lm-eval tasks: distillbench_<task>_greedy and _sc, groups per family."""
    from harness.config import parse_override
    from harness.lmeval import ExportSettings, export
    from tasks import TASKS, task_options

    names = [n.strip() for n in task_names.split(",") if n.strip()] if task_names else list(TASKS)
    options: dict[str, dict] = {}
    for o in option or []:
        key, value = parse_override(o)
        name, dot, opt = key.partition(".")
        if not dot or not opt:
            raise UserError(f"--option {o!r}: give TASK.key=value")
        options.setdefault(name, {})[opt] = value
    root = _dir(data_dir)
    for name in names:
        if root is not None and "data_dir" in task_options(name):
            options.setdefault(name, {}).setdefault("data_dir", str(root))
    settings = ExportSettings(prompt=prompt, family=family, max_new_tokens=max_new_tokens, k=k,
                              temperature=temperature, limit=limit, options=options)
    exported = export(out_dir, names, settings)
    out.print(f"wrote {len(exported)} lm-eval tasks to {out_dir}: lm_eval --include_path {out_dir} --tasks "
              f"{exported[0]} (groups: distillbench_<family>, distillbench_<family>_majority)")


@app.command("eval-lm-eval")
def eval_lm_eval(
    run_id: Annotated[str, typer.Argument(help="An MLflow run id of a finished cell.")],
    limit: Annotated[Optional[int], typer.Option(help="The first N test examples (default: all the run decoded).")] = None,
    task_names: Annotated[Optional[str], typer.Option("--tasks", help="Also these tasks (comma-separated), lm-eval's accuracy only: the run has no chains of theirs.")] = None,
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Evaluate a run's trained student with lm-eval on the exported task; parity with our greedy score.

    Logs lm_eval/<task>/acc, lm_eval/parity and the results and samples to the run; exits 1 when
    the per-example verdicts differ. --tasks evaluates the student on other tasks too.
    """
    import json
    import tempfile

    from harness.evaluate import locate_predictions, read_predictions
    from harness.lmeval import compare, evaluate_folder, task_name
    from harness.tracking import _quiet_mlflow

    st = _store(store)
    uri = tracking_uri or st.tracking_uri
    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory(prefix="distillbench-lmeval-") as scratch:
        folder, _ = locate_predictions(run_id, uri, Path(scratch))
        preds = read_predictions(folder)
        run = client.get_run(run_id)
        key = run.data.tags.get("checkpoint")
        model_dir = st.root / "checkpoints" / str(key) / "best"
        if not key or not model_dir.is_dir():
            raise UserError(f"run {run_id}: its trained student ({model_dir}) is not in this store (give --store)")
        task = preds.task()
        info = preds.task_info
        family = _family(model_dir)
        max_new = int(run.data.params.get("decode.max_new_tokens", 256))
        max_in = int(run.data.params.get("student.max_input_len", 256))
        greedy = {c.example_id: c for c in preds.chains if not c.meta.get("temperature")}
        gold = {e.id: e.answer for e in preds.examples}
        ours = {i: (c.text, bool(task.equivalent(c.answer, gold[i]))) for i, c in greedy.items() if i in gold}
        n = min(limit or len(ours), len(ours))
        results, samples = evaluate_folder(model_dir, family, info["name"], info.get("options", {}), max_new, n, max_in)
        parity = compare(ours, samples)
        name = task_name(info["name"])
        acc = results["results"][name]["acc,none"]
        t = Table(f"{info['name']}: {parity.n} test examples", "ours (greedy)", "lm-eval")
        t.add_row("accuracy", f"{100 * parity.ours_acc:.1f}", f"{100 * acc:.1f}")
        t.add_row("same verdict", f"{parity.same_verdict}/{parity.n}", "")
        t.add_row("same text", f"{parity.same_text}/{parity.n}", "")
        out.print(t)
        metrics = {f"lm_eval/{info['name']}/acc": acc, "lm_eval/parity": parity.same_verdict / max(parity.n, 1),
                   "lm_eval/same_text": parity.same_text / max(parity.n, 1)}
        for k_, v in metrics.items():
            client.log_metric(run_id, k_, v)
        art = Path(scratch) / "lm_eval"
        art.mkdir()
        (art / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        (art / "samples.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in samples), encoding="utf-8")
        (art / "parity.json").write_text(json.dumps(parity.__dict__, indent=1, default=str), encoding="utf-8")
        from tasks import task_options

        root = _dir(data_dir)
        for other in [n.strip() for n in (task_names or "").split(",") if n.strip() and n.strip() != info["name"]]:
            opts = {"data_dir": str(root)} if root is not None and "data_dir" in task_options(other) else {}
            res_o, samples_o = evaluate_folder(model_dir, family, other, opts, max_new, limit, max_in)
            acc_o = res_o["results"][task_name(other)]["acc,none"]
            out.print(f"{other}: lm-eval accuracy {100 * acc_o:.1f} on {len(samples_o)} test examples")
            client.log_metric(run_id, f"lm_eval/{other}/acc", acc_o)
            (art / f"results-{other}.json").write_text(json.dumps(res_o, indent=1, default=str), encoding="utf-8")
        client.log_artifacts(run_id, str(art), "lm_eval")
    if not parity.ok:
        for d in parity.differ[:5]:
            out.print(f"  differs: {d}")
        err.print(f"parity: {parity.n - parity.same_verdict} of {parity.n} examples get another verdict from lm-eval")
        raise typer.Exit(1)


def _family(model_dir: Path) -> str:
    """seq2seq or causal, from the student folder's config (a LoRA folder: its base's)."""
    import json

    adapter = model_dir / "adapter_config.json"
    folder = Path(json.loads(adapter.read_text())["base_model_name_or_path"]) if adapter.is_file() else model_dir
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    return "seq2seq" if config.get("is_encoder_decoder") else "causal"


teacher_app = typer.Typer(help="Teacher banks: build, inspect.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("build")
def teacher_build(
    spec: Path,
    overrides: Overrides = None,
    store: StoreOpt = None,
    data_dir: DataDirOpt = None,
    skip_bad: SkipBadOpt = False,
) -> None:
    """Sample K teacher chains for every train and valid example of a run spec's task and
    label them (gold or majority); resumes a killed build, and a finished bank costs nothing."""
    from harness import teacher as teachers
    from harness.config import load_run, with_data
    from tasks import get_task

    s = with_data(load_run(spec, overrides or []), _dir(data_dir), skip_bad)
    task = get_task(s.task.name, **s.task.options)
    generate = teachers.generator(task, s.teacher)  # before loading data: a missing API key fails first
    examples = [*task.load("train"), *task.load("valid")]
    bank, report = teachers.build_bank(
        task, examples, s.teacher, _store(store), generate,
        on_chunk=lambda done, total: err.print(f"chunk {done}/{total}", highlight=False),
    )
    out.print(f"bank {bank.path}: {report.chunks_generated} chunks generated, {report.chunks_done_before} already there", markup=False)
    _print_stats(bank)


@teacher_app.command("stats")
def teacher_stats(bank: Annotated[str, typer.Argument(help="A bank folder, or a bank key in the store.")], store: StoreOpt = None) -> None:
    """Positives per example out of K, examples with only positives / only negatives, answer
    extraction failures and tokens (QCRD App. Table 2 style)."""
    from harness.bank import Bank

    path = Path(bank)
    _print_stats(Bank(path if path.is_dir() else _store(store).dir("banks", bank)))


@teacher_app.command("import")
def teacher_import(
    release: Annotated[str, typer.Argument(help="dss (PaLM chains: svamp, csqa, anli, esnli) or tdg (GPT-3.5 chains for MATH train).")],
    task: Annotated[Optional[str], typer.Option(help="dss: svamp, csqa, anli or esnli.")] = None,
    split: Annotated[str, typer.Option(help="dss: the DSS split (train, valid or test).")] = "train",
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
) -> None:
    """Import a public teacher release into a bank (one chunk), labelled, with its agreement report."""
    from harness import bank as banks
    from tasks import get_task
    from tasks.base import task_key

    root = _dir(data_dir)
    if root is None:
        raise UserError("teacher import needs --data-dir (the data root holding dss/ or tdg/)")
    if release == "dss":
        from harness.importers.dss import import_dss

        if task is None:
            raise UserError("teacher import dss needs --task (svamp, csqa, anli or esnli)")
        t = get_task(task, data_dir=root)
        result = import_dss(task, Path(root) / "dss", split, t)
        manifest = {"import": "dss", "task": task_key(t), "split": split}
    elif release == "tdg":
        from harness.importers.tdg import import_tdg

        t = get_task("math", data_dir=root)
        result = import_tdg(Path(root) / "tdg" / "GPT3.5-turbo-MATH", t)
        manifest = {"import": "tdg", "task": task_key(t)}
    else:
        from harness.errors import unknown

        raise unknown("teacher release", release, ("dss", "tdg"))
    bank = banks.Bank.create(_store(store), manifest)
    if not bank.chunks():
        ids = list(dict.fromkeys(c.example_id for c in result.chains))
        bank.append_chunk(0, ids, result.chains)
    for k, v in result.summary().items():
        out.print(f"{k}: {v}", markup=False, highlight=False)
    if release == "tdg":
        path = result.write_differences(bank.path / "differences.jsonl")
        out.print(f"chains where our checker and TDG's string match differ: {path}", markup=False)
    out.print(f"bank {bank.path}", markup=False)
    _print_stats(bank)


def _print_stats(bank) -> None:
    from harness.bank import stats

    t = Table("bank " + bank.key[:12], "")
    if bank.manifest.get("kind") == "fdd-problems":  # problems FDD's teacher wrote, not chains of a task's examples
        from methods.fdd import bank_summary

        for k, v in bank_summary(bank):
            t.add_row(k, v)
        out.print(t)
        return
    for k, v in stats(bank.chains()).rows():
        t.add_row(k, v)
    usage = bank.usage()
    if usage:
        t.add_row("API prompt / completion tokens", f"{usage.get('prompt_tokens', 0):,.0f} / {usage.get('completion_tokens', 0):,.0f}")
        t.add_row("API requests (retries, failed prompts)", f"{usage.get('requests', 0):,.0f} ({usage.get('retries', 0):,.0f}, {usage.get('errors', 0):,.0f})")
        t.add_row("cost", f"{usage['cost']:.4f}" if "cost" in usage else "no prices given")
    out.print(t)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:
        if _is_click_error(e):  # usage errors: the usage line and one "Error: ..." line
            e.show()  # type: ignore[attr-defined]
            sys.exit(e.exit_code if isinstance(getattr(e, "exit_code", None), int) and e.exit_code else 2)  # type: ignore[attr-defined]
        raise


def _is_click_error(e: BaseException) -> bool:
    """click's ClickException, from click itself or from the copy typer bundles (typer._click),
    whose classes are not click's."""
    return hasattr(e, "show") and any(c.__name__ == "ClickException" for c in type(e).__mro__)


if __name__ == "__main__":
    main()
