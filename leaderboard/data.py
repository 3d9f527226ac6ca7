"""MLflow runs -> tables. Pure data code: no printing, no Streamlit, so the CLI, the app and the
tests share it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.aggregate import metric_name

AGGREGATED_TAG = "aggregated_schemes"  # comma-separated schemes `distillbench aggregate` logged to a run


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
    acc: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # scheme -> (acc, lo, hi)
    untrained: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    baseline: float = math.nan
    train_seconds: float = math.nan
    params: dict[str, str] = field(default_factory=dict)


def load_cells(tracking_uri: str, experiment: str | None = None) -> list[CellRow]:
    """Every FINISHED distillbench run (of one experiment, or all), oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exps = client.search_experiments()
    if experiment is not None:
        exps = [e for e in exps if e.name == experiment]
    rows: list[CellRow] = []
    for exp in exps:
        runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'", order_by=["attributes.start_time ASC"], max_results=10000)
        for r in runs:
            if "cell_hash" not in r.data.tags:
                continue
            rows.append(cell_row(exp.name, r.info.run_id, r.data.tags, r.data.params, r.data.metrics))
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
    )
    for s in schemes:
        m = metric_name(s)
        for prefix, target in (("test", row.acc), ("untrained", row.untrained)):
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


@dataclass
class Verdict:
    """Whether the best cell learned: its interval lies above its untrained score and the
    most-frequent-answer baseline."""

    cell: str
    scheme: str
    acc: tuple[float, float, float]
    untrained: float
    baseline: float

    @property
    def learned(self) -> bool:
        # an untrained score that was not measured (eval.untrained: false) is no reference
        above_untrained = math.isnan(self.untrained) or self.acc[1] > self.untrained
        return above_untrained and self.acc[1] > self.baseline


def best_cell(rows: list[CellRow]) -> Verdict | None:
    best: Verdict | None = None
    for r in rows:
        for s, a in r.acc.items():
            if best is None or a[0] > best.acc[0]:
                u = r.untrained.get(s, (math.nan,))[0]
                best = Verdict(r.cell, s, a, u, r.baseline)
    return best


def table_rows(rows: list[CellRow]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for printing: one row per cell, one column per scheme."""
    schemes: list[str] = []
    for r in rows:
        schemes += [s for s in r.schemes if s not in schemes]
    header = ["cell"] + schemes + [f"untrained {s}" for s in schemes] + ["most-frequent", "train s"]
    out = []
    for r in rows:
        out.append(
            [r.cell]
            + [r.acc.get(s) for s in schemes]
            + [r.untrained.get(s, (math.nan,))[0] for s in schemes]
            + [r.baseline, r.train_seconds]
        )
    return header, out
