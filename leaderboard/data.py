"""MLflow runs -> tables. Pure data code: no printing, no Streamlit, so the CLI, the app and the
tests share it.

Cells that differ only in their `seed` form a group: the tables give each seed's own bootstrap
interval and, beside them, the group's mean ± standard deviation over its seeds (n shown). The
spread over seeds is what varies from machine to machine (README: Reproducibility), so methods
are compared on seed means, and the best cell is picked on the valid split, never on test.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.aggregate import metric_name
from harness.compare import paired_bootstrap
from harness.scoring import bootstrap_means

PAGE = 1000  # runs per MLflow search request in load_cells
AGGREGATED_TAG = "aggregated_schemes"  # comma-separated schemes `distillbench aggregate` logged to a run
SEED_PARAM = "seed"  # the run spec's seed: cells that differ only here are seeds of one group
MACHINE_TAGS = ("cpu", "gpu", "torch_threads")  # harness.tracking.machine_tags

Interval = tuple[float, float, float]  # (accuracy, 95% lo, 95% hi)


@dataclass
class CellRow:
    """One finished grid cell as logged in MLflow."""

    run_id: str
    experiment: str
    cell: str
    task: str
    method: str
    student: str
    schemes: list[str]
    acc: dict[str, Interval] = field(default_factory=dict)  # scheme -> test (acc, lo, hi)
    untrained: dict[str, Interval] = field(default_factory=dict)
    valid: dict[str, Interval] = field(default_factory=dict)  # scheme -> valid (acc, lo, hi): for selection
    baseline: float = math.nan
    train_seconds: float = math.nan
    params: dict[str, str] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)  # cpu, gpu, torch_threads tags
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def seed(self) -> str:
        return self.params.get(SEED_PARAM, "")

    @property
    def grid(self) -> str:
        return self.tags.get("grid", self.experiment)

    @property
    def teacher_bank(self) -> str:
        return self.tags.get("teacher_bank", "?")

    @property
    def task_version(self) -> str:
        return self.tags.get("task_version", "?")

    @property
    def prompt_version(self) -> str:
        return self.tags.get("prompt_version", "?")

    @property
    def test_set(self) -> str:
        """The test set's identity: a hash of its example ids ('' for runs that did not log it)."""
        return self.tags.get("test/ids", "")

    @property
    def method_label(self) -> str:
        """The method with the options its spec set, sorted: 'qcrd[judge=False,k=0]'."""
        return method_label(self.method, {k[len("method.") :]: v for k, v in self.params.items() if k.startswith("method.") and k != "method.name"})

    @property
    def budget(self) -> str:
        """The training budget: optimizer steps (or epochs) x micro-batch x accumulation."""
        p = self.params
        length = f"{p['train.steps']} steps" if p.get("train.steps") not in (None, "None") else f"{p.get('train.epochs', '?')} epochs"
        return f"{length} x {p.get('train.batch_size', '?')}x{p.get('train.grad_accum', '?')}"

    @property
    def selection(self) -> str:
        """How the checkpoint was chosen (every run here: best greedy valid accuracy)."""
        return self.tags.get("selection", f"best valid, every {self.params.get('train.eval_every', '?')} steps")

    def has_correct(self, scheme: str) -> bool:
        return bool(self.tags.get(f"test/correct/{metric_name(scheme)}"))

    def correct(self, scheme: str) -> list[bool] | None:
        """Per-example correctness on test under `scheme` (sorted example ids), when logged."""
        from harness.evaluate import decode_bits

        value = self.tags.get(f"test/correct/{metric_name(scheme)}")
        if not value:
            return None
        try:
            return decode_bits(value)
        except ValueError:
            return None


def run_label(r: CellRow) -> str:
    """How views name one run: method (with options), task, seed, grid and run id."""
    return f"{r.method_label} · {r.task} · seed {r.seed or '0'} · {r.grid} · {r.run_id[:8]}"


def method_label(method: str, options: dict[str, Any]) -> str:
    """A method and its options in one canonical form (options sorted): how the leaderboard names
    rows, and how a reported row names the ablation cell it belongs to."""
    if not options:
        return method
    return f"{method}[{','.join(f'{k}={v}' for k, v in sorted(options.items()))}]"


def parse_method_label(label: str) -> tuple[str, dict[str, str]]:
    """'qcrd[k=0,judge=False]' -> ('qcrd', {'k': '0', 'judge': 'False'}) (values as text)."""
    name, _, rest = label.partition("[")
    if not rest:
        return name, {}
    return name, dict(kv.split("=", 1) for kv in rest.rstrip("]").split(",") if "=" in kv)


def load_cells(tracking_uri: str, experiment: str | None = None) -> list[CellRow]:
    """Every FINISHED distillbench run (of one experiment, or all), oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exps = client.search_experiments()
    if experiment is not None:
        exps = [e for e in exps if e.name == experiment]
    rows: list[CellRow] = []
    for exp in exps:
        token = None
        while True:  # page through: a grid may hold more runs than one search returns
            runs = client.search_runs(
                [exp.experiment_id],
                filter_string="attributes.status = 'FINISHED'",
                order_by=["attributes.start_time ASC"],
                max_results=PAGE,
                page_token=token,
            )
            for r in runs:
                if "cell_hash" in r.data.tags:
                    rows.append(cell_row(exp.name, r.info.run_id, r.data.tags, r.data.params, r.data.metrics))
            token = runs.token
            if not token:
                break
    return rows


def cell_row(experiment: str, run_id: str, tags: dict[str, str], params: dict[str, str], metrics: dict[str, float]) -> CellRow:
    schemes = _parse_list(params.get("eval.schemes", "[]"))
    # schemes added later by `distillbench aggregate` (tag written there), after the spec's own
    schemes += [s for s in tags.get(AGGREGATED_TAG, "").split(",") if s and s not in schemes]
    row = CellRow(
        run_id=run_id,
        experiment=experiment,
        cell=tags.get("cell", run_id),
        task=tags.get("task", "?"),
        method=tags.get("method", "?"),
        student=tags.get("student", "?"),
        schemes=schemes,
        baseline=metrics.get("baseline/most_frequent", math.nan),
        train_seconds=metrics.get("train/seconds", math.nan),
        params=dict(params),
        machine={k: tags[k] for k in MACHINE_TAGS if k in tags},
        tags=dict(tags),
        metrics=dict(metrics),
    )
    for s in schemes:
        m = metric_name(s)
        for prefix, target in (("test", row.acc), ("untrained", row.untrained), ("valid", row.valid)):
            if f"{prefix}/acc/{m}" in metrics:
                target[s] = (metrics[f"{prefix}/acc/{m}"], metrics.get(f"{prefix}/lo/{m}", math.nan), metrics.get(f"{prefix}/hi/{m}", math.nan))
    return row


def _parse_list(text: str) -> list[str]:
    import ast

    # params are logged with str(); a list of plain strings round-trips through literal_eval
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(x) for x in v] if isinstance(v, list) else []


# ---------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class SeedStats:
    """Mean and sample standard deviation (n - 1) of one number over a group's seeds."""

    mean: float
    std: float  # NaN for a single seed
    n: int

    @classmethod
    def of(cls, values: list[float]) -> SeedStats:
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return cls(math.nan, math.nan, 0)
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return cls(statistics.fmean(values), std, len(values))


_SEED_PART = re.compile(rf"^{SEED_PARAM}=")


@dataclass
class Group:
    """Cells that differ only in their seed (one per seed, in the order they ran)."""

    label: str
    rows: list[CellRow]

    @property
    def n(self) -> int:
        return len(self.rows)

    def stats(self, scheme: str, which: str = "acc") -> SeedStats:
        """`which`: acc (test), valid or untrained, over the seeds that logged it."""
        return SeedStats.of([getattr(r, which)[scheme][0] for r in self.rows if scheme in getattr(r, which)])


def group_label(cell: str) -> str:
    """A cell's name without its seed part: 'method=dss,seed=1' -> 'method=dss'."""
    parts = [p for p in cell.split(",") if not _SEED_PART.match(p)]
    return ",".join(parts) or cell


def group_by_seed(rows: list[CellRow]) -> list[Group]:
    """Groups of cells whose logged specs are equal but for the seed, in order of first appearance."""
    groups: dict[tuple[Any, ...], Group] = {}
    for r in rows:
        label = group_label(r.cell)
        key = (r.experiment, label, tuple(sorted((k, v) for k, v in r.params.items() if k != SEED_PARAM)))
        if key not in groups:
            groups[key] = Group(label, [])
        groups[key].rows.append(r)
    return list(groups.values())


# ---------------------------------------------------------------------------- verdict


@dataclass
class Verdict:
    """The best group (a cell, or a cell over its seeds) and scheme, chosen by valid accuracy, with
    its test accuracy: whether it learned (its test interval lies above its untrained score and the
    most-frequent-answer baseline, for every seed) and how the other groups compare on seed means.

    For one seed `acc` is that seed's (acc, lo, hi); over several it is (mean, lowest lo, highest
    hi), `untrained` and `baseline` the highest over the seeds.
    """

    cell: str
    scheme: str
    acc: Interval
    untrained: float
    baseline: float
    per_seed: list[Interval] = field(default_factory=list)
    std: float = math.nan  # of test accuracy over seeds
    valid: float = math.nan  # mean valid accuracy of the scheme: what selected this cell
    selected_on: str = "valid"  # "test" only for runs that logged no valid accuracy per scheme
    # test accuracy on this scheme over seeds, (label, stats, each seed's accuracy): this group
    # first, then every other group from the highest mean down
    comparison: list[tuple[str, SeedStats, list[float]]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return max(1, len(self.per_seed))

    @property
    def learned(self) -> bool:
        # an untrained score that was not measured (eval.untrained: false) is no reference
        above_untrained = math.isnan(self.untrained) or self.acc[1] > self.untrained
        return above_untrained and self.acc[1] > self.baseline


def _max(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else math.nan


def best_cell(rows: list[CellRow]) -> Verdict | None:
    """The group and scheme with the highest mean VALID accuracy over seeds (test never selects:
    picking the best of many on test would bias its score upward), reported with its test interval.

    Runs that logged no valid accuracy per scheme (older runs) fall back to selecting on test,
    and the verdict says so (`selected_on`). Ties go to the group and scheme listed first.
    """
    groups = [g for g in group_by_seed(rows) if any(r.acc for r in g.rows)]
    on = "valid" if any(r.valid for g in groups for r in g.rows) else "acc"
    best: tuple[float, Group, str] | None = None
    for g in groups:
        schemes: list[str] = []
        for r in g.rows:
            schemes += [s for s in r.acc if s not in schemes]
        for s in schemes:
            m = g.stats(s, on).mean
            if not math.isnan(m) and (best is None or m > best[0]):
                best = (m, g, s)
    if best is None:
        return None
    sel, g, s = best
    seeds = [r.acc[s] for r in g.rows if s in r.acc]
    test = g.stats(s, "acc")
    acc = seeds[0] if len(seeds) == 1 else (test.mean, min(x[1] for x in seeds), max(x[2] for x in seeds))
    others = []
    for other in groups:
        accs = [r.acc[s][0] for r in other.rows if s in r.acc]
        # test accuracies compare only on the same test set: never across tasks
        if accs and other is not g and other.rows[0].task == g.rows[0].task:
            others.append((other.label, other.stats(s, "acc"), accs))
    others.sort(key=lambda c: -c[1].mean)
    comparison = [(g.label, test, [a[0] for a in seeds]), *others]
    return Verdict(
        cell=g.label,
        scheme=s,
        acc=acc,
        untrained=_max([r.untrained.get(s, (math.nan,))[0] for r in g.rows if s in r.acc]),
        baseline=_max([r.baseline for r in g.rows if s in r.acc]),
        per_seed=seeds,
        std=test.std,
        valid=sel if on == "valid" else math.nan,
        selected_on="valid" if on == "valid" else "test",
        comparison=comparison,
    )


def separated(a: list[float], b: list[float]) -> bool:
    """Every seed of `a` scored above every seed of `b` (for a few seeds, a plainer statement
    than a test: with n = 3 per side no rank test can reach p < 0.05 two-sided)."""
    return bool(a) and bool(b) and min(a) > max(b)


# ---------------------------------------------------------------------------- tables


def table_rows(rows: list[CellRow]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for printing: one row per cell, one column per scheme (test accuracy with
    its interval). After the cells of a group with several seeds, one more row: the group's mean
    ± std over its seeds (SeedStats), labelled with n."""
    schemes: list[str] = []
    for r in rows:
        schemes += [s for s in r.schemes if s not in schemes]
    header = ["cell"] + schemes + [f"untrained {s}" for s in schemes] + ["most-frequent", "train s"]
    out: list[list[Any]] = []
    for g in group_by_seed(rows):
        for r in g.rows:
            out.append(
                [r.cell]
                + [r.acc.get(s) for s in schemes]
                + [r.untrained.get(s, (math.nan,))[0] for s in schemes]
                + [r.baseline, r.train_seconds]
            )
        if g.n > 1:
            out.append(
                [f"{g.label}: mean ± std, n={g.n}"]
                + [g.stats(s, "acc") for s in schemes]
                + [g.stats(s, "untrained") for s in schemes]
                + [SeedStats.of([r.baseline for r in g.rows]), SeedStats.of([r.train_seconds for r in g.rows]).mean]
            )
    return header, out


def machines(rows: list[CellRow]) -> list[str]:
    """The distinct machines the rows ran on ('cpu / gpu / N torch threads'), as logged."""
    seen: list[str] = []
    for r in rows:
        if r.machine:
            m = r.machine
            text = f"{m.get('cpu', '?')}, GPU {m.get('gpu', '?')}, {m.get('torch_threads', '?')} torch threads"
            if text not in seen:
                seen.append(text)
    return seen


# ---------------------------------------------------------------------------- negative-data diagnostics


@dataclass(frozen=True)
class Overlap:
    """Two runs' solved sets on one group of test examples (TDG Table 1: a positives-only and a
    negatives-only student). IoU = |A ∩ B| / |A ∪ B| (0 when neither solves anything)."""

    group: str
    examples: int
    solved_a: int
    solved_b: int
    both: int

    @property
    def union(self) -> int:
        return self.solved_a + self.solved_b - self.both

    @property
    def iou(self) -> float:
        return self.both / self.union if self.union else 0.0


def solved_overlap(correct_a: dict[str, bool], correct_b: dict[str, bool], groups: dict[str, str] | None = None) -> list[Overlap]:
    """Per group (e.g. MATH subject; `groups` maps example id -> group) and "overall": how many
    examples each run solves, how many both solve, and the IoU. Both runs must be scored on the
    same examples."""
    from harness.errors import UserError

    if set(correct_a) != set(correct_b):
        only = len(set(correct_a) ^ set(correct_b))
        raise UserError(f"the two runs were scored on different test examples ({only} ids in one only): compare runs on the same test set")
    ids = sorted(correct_a)
    by_group: dict[str, list[str]] = {}
    if groups:
        for i in ids:
            by_group.setdefault(str(groups.get(i) or "?"), []).append(i)
    out = [_overlap(g, members, correct_a, correct_b) for g, members in sorted(by_group.items())]
    return out + [_overlap("overall", ids, correct_a, correct_b)]


def _overlap(group: str, ids: list[str], a: dict[str, bool], b: dict[str, bool]) -> Overlap:
    return Overlap(group, len(ids), sum(a[i] for i in ids), sum(b[i] for i in ids), sum(a[i] and b[i] for i in ids))


# ---------------------------------------------------------------------------- the main table

TIE_RESAMPLES = 1000  # paired-bootstrap resamples per tie test (one per cell and column)


@dataclass
class Cell:
    """One (method, test set) cell of the main table: the accuracy (%) over its seeds."""

    mean: float
    std: float  # over seeds; NaN for one
    n: int  # seeds
    lo: float  # 95% interval: one seed's bootstrap interval, or the paired-bootstrap interval of the seed mean
    hi: float
    runs: list[str] = field(default_factory=list)
    best: bool = False
    tie: bool = False  # not significantly different from the column's best (paired test on the same examples)
    flags: list[str] = field(default_factory=list)  # fairness: what differs from the rest of the column
    # per-example correctness averaged over seeds (None when the runs did not log it)
    per_example: list[float] | None = field(default=None, repr=False)


@dataclass
class Row:
    label: str  # the method (with its options), or "reported: ..." for a paper's number
    kind: str  # "measured" or "reported"
    cells: dict[str, Cell]  # column -> cell
    note: str = ""  # reported rows: student, teacher, source

    def average(self, columns: list[str]) -> float:
        """Mean over the columns that have a cell (NaN when none)."""
        values = [self.cells[c].mean for c in columns if c in self.cells]
        return statistics.fmean(values) if values else math.nan


@dataclass
class MainTable:
    scheme: str
    columns: list[str]  # test sets: the task, with a suffix where one task has several versions or test sets
    rows: list[Row]
    skipped: list[str] = field(default_factory=list)  # runs left out, and why


FILTERS = ("student", "teacher_bank", "grid", "task_version", "prompt_version")


def filter_rows(rows: list[CellRow], **criteria: str | None) -> list[CellRow]:
    """The rows matching every given criterion (student, teacher_bank, grid, task_version,
    prompt_version); None or "" means any."""
    for k in criteria:
        if k not in FILTERS:
            raise ValueError(f"unknown filter {k!r} (choose from: {', '.join(FILTERS)})")
    return [r for r in rows if all(not v or getattr(r, k) == v for k, v in criteria.items())]


def options(rows: list[CellRow]) -> dict[str, list[str]]:
    """The values each filter can take, in order of appearance."""
    out: dict[str, list[str]] = {k: [] for k in FILTERS}
    for r in rows:
        for k in FILTERS:
            v = getattr(r, k)
            if v not in out[k]:
                out[k].append(v)
    return out


def column_of(r: CellRow, versions: dict[str, set[tuple[str, str]]]) -> str:
    """The row's test-set column: its task, suffixed where the task comes in several versions or
    test sets (cells are only ever compared on one test set)."""
    if len(versions.get(r.task, ())) <= 1:
        return r.task
    return f"{r.task} (v{r.task_version}" + (f", test {r.test_set[:6]})" if r.test_set else ")")


def main_table(rows: list[CellRow], scheme: str = "greedy", reported: list[Any] | None = None, resamples: int = TIE_RESAMPLES) -> MainTable:
    """Methods x test sets for `scheme`: seeds averaged, the best cell of each column marked, the
    cells not significantly different from it marked as ties (paired bootstrap over the same test
    examples, 95%), and fairness flags on cells whose teacher bank, student, budget or selection
    differ from the rest of their column. `reported` (leaderboard.reported rows) adds the papers'
    numbers as rows of their own on the columns of their task."""
    skipped = [f"{r.cell} ({r.experiment}): no test accuracy for {scheme}" for r in rows if scheme not in r.acc]
    rows = [r for r in rows if scheme in r.acc]
    versions: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        versions.setdefault(r.task, set()).add((r.task_version, r.test_set))
    columns: list[str] = []
    groups: dict[tuple[str, str], list[CellRow]] = {}
    for r in rows:
        col = column_of(r, versions)
        if col not in columns:
            columns.append(col)
        groups.setdefault((r.method_label, col), []).append(r)
    labels: list[str] = []
    for label, _ in groups:
        if label not in labels:
            labels.append(label)
    table_rows = [Row(label, "measured", {}) for label in labels]
    by_label = {row.label: row for row in table_rows}
    for (label, col), runs in groups.items():
        by_label[label].cells[col] = _cell(runs, scheme)
    for col in columns:
        _mark([row.cells[col] for row in table_rows if col in row.cells], [groups[(row.label, col)] for row in table_rows if col in row.cells], resamples)
    measured = set(labels)
    for rep in reported or []:
        # an ablation's number only beside the measured cell of its setting
        # (its rows without options repeat the main tables' numbers: not shown twice)
        if rep.ablation and (rep.method is None or "[" not in rep.method or method_label(*parse_method_label(rep.method)) not in measured):
            continue
        label = f"{rep.label} · {rep.student}"
        cols = [c for c in columns if c == rep.task or c.startswith(f"{rep.task} (")]
        if not cols:
            continue
        row = next((x for x in table_rows if x.label == label and x.kind == "reported"), None)
        if row is None:
            row = Row(label, "reported", {}, note=f"{rep.paper}; {rep.source}")
            table_rows.append(row)
        for c in cols:
            row.cells[c] = Cell(rep.acc, math.nan, 1, math.nan, math.nan)
    return MainTable(scheme, columns, table_rows, skipped)


def _cell(runs: list[CellRow], scheme: str) -> Cell:
    accs = [100 * r.acc[scheme][0] for r in runs]
    stats = SeedStats.of(accs)
    vectors = [r.correct(scheme) for r in runs]
    per_example = None
    if all(v is not None for v in vectors) and len({len(v) for v in vectors}) == 1 and len({r.test_set for r in runs}) == 1:  # type: ignore[arg-type]
        per_example = [statistics.fmean(x) for x in zip(*vectors, strict=True)]  # type: ignore[arg-type]
    if len(runs) == 1:
        lo, hi = 100 * runs[0].acc[scheme][1], 100 * runs[0].acc[scheme][2]
    elif per_example:
        means = bootstrap_means(np.array(per_example), 2000, 0)
        lo, hi = (100 * float(q) for q in np.quantile(means, [0.025, 0.975]))
    else:
        lo, hi = math.nan, math.nan
    return Cell(stats.mean, stats.std, stats.n, lo, hi, [r.run_id for r in runs], per_example=per_example)


def _mark(cells: list[Cell], runs: list[list[CellRow]], resamples: int) -> None:
    """Best, ties and fairness flags within one column."""
    if not cells:
        return
    best = max(range(len(cells)), key=lambda i: cells[i].mean)
    cells[best].best = True
    top = cells[best]
    top_correct = np.array(top.per_example) if top.per_example is not None else None
    for i, c in enumerate(cells):
        if i == best or top_correct is None or c.per_example is None or len(c.per_example) != len(top_correct):
            continue
        lo, hi, _ = paired_bootstrap(np.array(c.per_example), top_correct, resamples)
        c.tie = lo <= 0 <= hi
    # fairness: what the column's cells share, and who differs
    for attr, what in (("teacher_bank", "teacher bank"), ("student", "student"), ("budget", "training budget"), ("selection", "selection rule")):
        values = [sorted({getattr(r, attr) for r in rs}) for rs in runs]
        counts: dict[str, int] = {}
        for v in values:
            counts[",".join(v)] = counts.get(",".join(v), 0) + 1
        common = max(counts, key=lambda k: counts[k])
        for c, v in zip(cells, values, strict=True):
            if len(v) > 1:
                c.flags.append(f"mixed {what}s over seeds: {', '.join(v)}")
            elif ",".join(v) != common:
                c.flags.append(f"{what} differs: {v[0]} (column: {common})")


# ---------------------------------------------------------------------------- exports


def _fmt(c: Cell | None, marks: bool = True) -> str:
    if c is None:
        return ""
    text = f"{c.mean:.1f}"
    if c.n > 1 and not math.isnan(c.std):
        text += f" ± {c.std:.1f}"
    if not math.isnan(c.lo):
        text += f" [{c.lo:.1f}, {c.hi:.1f}]"
    if c.n > 1:
        text += f" (n={c.n})"
    if marks:
        text += " *" if c.best else " ~" if c.tie else ""
        text += " !" if c.flags else ""
    return text


CONTAMINATION = "data/contamination/test_total"  # harness/contamination_check.py: test questions training data duplicates
CONTAMINATION_SHARE = "data/contamination/test_total_share"


def contamination_column(t: MainTable, rows: list[CellRow]) -> list[str]:
    """Per table row, beside its accuracies: the most test questions any of its runs' training
    data (train questions, teacher chains, generated problems) duplicates, exactly or nearly, with
    its share of the test set; `!` when there are any, "-" for runs logged before the check, ""
    for reported rows."""
    by_id = {r.run_id: r for r in rows}
    out = []
    for row in t.rows:
        runs = [by_id[i] for c in row.cells.values() for i in c.runs if i in by_id]
        logged = [r for r in runs if CONTAMINATION in r.metrics]
        if row.kind != "measured":
            out.append("")
        elif not logged:
            out.append("-")
        else:
            worst = max(logged, key=lambda r: (r.metrics[CONTAMINATION], r.metrics.get(CONTAMINATION_SHARE, 0.0)))
            n = int(worst.metrics[CONTAMINATION])
            out.append(f"{n} ({100 * worst.metrics.get(CONTAMINATION_SHARE, 0.0):.1f}%) !" if n else "0")
    return out


def table_grid(t: MainTable) -> tuple[list[str], list[list[str]]]:
    """Header and text rows, as the app shows them: `*` the column's best, `~` tied with it, `!` a
    fairness flag; the average over the test sets each row has."""
    header = ["method", *t.columns, "average"]
    out = []
    for row in t.rows:
        avg = row.average(t.columns)
        n = sum(c in row.cells for c in t.columns)
        average = "" if math.isnan(avg) else f"{avg:.1f}" + ("" if n == len(t.columns) else f" ({n}/{len(t.columns)})")
        out.append([row.label, *[_fmt(row.cells.get(c)) for c in t.columns], average])
    return header, out


def to_csv(t: MainTable) -> str:
    import csv
    import io

    header, rows = table_grid(t)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def to_markdown(t: MainTable) -> str:
    header, rows = table_grid(t)

    def cell(x: str) -> str:
        return x.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    legend = f"\n\n{t.scheme}, test accuracy %: mean ± std over seeds [95% interval] (n seeds); * best in column, ~ tied with it (paired bootstrap), ! fairness flag"
    return "\n".join(lines) + legend + "\n"


def to_latex(t: MainTable) -> str:
    """A booktabs table: the best cell bold, ties underlined."""
    header, _ = table_grid(t)

    def esc(x: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
            x = x.replace(a, b)
        return x

    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule", " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    for row in t.rows:
        cells = []
        for c in t.columns:
            cell = row.cells.get(c)
            text = esc(_fmt(cell, marks=False))
            if cell is not None and cell.best:
                text = r"\textbf{" + text + "}"
            elif cell is not None and cell.tie:
                text = r"\underline{" + text + "}"
            cells.append(text)
        avg = row.average(t.columns)
        lines.append(" & ".join([esc(row.label), *cells, "" if math.isnan(avg) else f"{avg:.1f}"]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- cost, drill-down


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, accuracy) points: True where no other point costs no more and scores no less,
    one of them strictly (lower cost and higher accuracy are better). NaN points are never on it."""
    out = [False] * len(points)
    valid = [i for i, (c, a) in enumerate(points) if not (math.isnan(c) or math.isnan(a))]
    # cheapest first, the better of equal costs first: a point is on the front when it beats the
    # best accuracy of everything at most as costly (O(n log n), not a pairwise check)
    valid.sort(key=lambda i: (points[i][0], -points[i][1]))
    best, at = -math.inf, math.nan
    for i in valid:
        c, a = points[i]
        if a > best or (a == best and c == at):  # an equal point does not dominate its twin
            out[i], best, at = True, a, c
    return out


@dataclass(frozen=True)
class CostPoint:
    run_id: str
    label: str  # method label and column
    acc: float  # %
    train_seconds: float
    teacher_tokens: float  # tokens the bank's teacher generated (NaN when not logged)
    chains_per_question: float  # chains decoded per test question under the scheme


def cost_points(rows: list[CellRow], scheme: str) -> list[CostPoint]:
    """One point per run that scored `scheme`: accuracy against what it cost."""
    out = []
    for r in rows:
        if scheme not in r.acc:
            continue
        out.append(
            CostPoint(
                r.run_id,
                run_label(r),
                100 * r.acc[scheme][0],
                r.train_seconds,
                r.metrics.get("teacher/tokens", math.nan),
                r.metrics.get(f"test/used/{metric_name(scheme)}", math.nan),
            )
        )
    return out


def vote_groups(task: Any, chains: list[Any]) -> list[tuple[str, int, bool | None]]:
    """The sampled chains of one example as answer groups: (answer, votes, right?), most votes
    first; chains whose answer could not be read count under "(no answer)"."""
    from harness.aggregate import group

    g = group([c.answer for c in chains], key=getattr(task, "canonical", None))
    votes: dict[int, int] = {}
    for gid in g.ids:
        votes[gid] = votes.get(gid, 0) + 1
    right: dict[int, bool | None] = {}
    for c, gid in zip(chains, g.ids, strict=True):
        right.setdefault(gid, c.correct)
    out = [("(no answer)" if gid < 0 else g.reps[gid], n, right.get(gid)) for gid, n in votes.items()]
    return sorted(out, key=lambda x: -x[1])
