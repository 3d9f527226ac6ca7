"""Teacher-noise curves: each method's test accuracy against the share of wrong teacher chains
(`teacher.wrong_rate` of the oracle teacher, or `teacher.noise.rate` on any bank; README:
Teacher-noise curves). Pure data code plus the chart's definitions, shared by `distillbench
noise-curve` and the leaderboard's "Noise curves" tab.

A point is a method at one rate: the mean over its seeds with the leaderboard's 95% interval (one
seed: its bootstrap interval; several: a bootstrap over the per-example results averaged over
seeds, else the envelope of the seeds' intervals). A curve's drop is the accuracy at the lowest
rate minus the accuracy at the highest, with a paired-bootstrap interval over the same test
examples where the runs logged per-example results; its slope is the least-squares slope of the
means, in points per 10 points of noise.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import axis_label
from harness.errors import UserError
from leaderboard.data import SEED_PARAM, CellRow, _cell

AXES = ("teacher.wrong_rate", "teacher.noise.rate")  # the oracle's slips; noise on any bank
WRONG_SHARE = "teacher/wrong_share"  # metric: the share of wrong train chains a cell trained with
RESAMPLES = 2000


@dataclass
class Point:
    rate: float
    mean: float  # test accuracy %, mean over seeds
    std: float  # over seeds (NaN for one)
    n: int  # seeds
    lo: float  # 95% interval, %
    hi: float
    wrong_share: float  # % of wrong train chains (mean over the runs; NaN when not logged)
    runs: list[str] = field(default_factory=list)
    per_example: list[float] | None = field(default=None, repr=False)


@dataclass
class Curve:
    label: str  # the method with its options, and any other setting that differs between curves
    points: list[Point]  # by rate
    drop: float = math.nan  # accuracy at the lowest rate - at the highest, points
    drop_lo: float = math.nan  # paired-bootstrap 95% interval of the drop (NaN without per-example results)
    drop_hi: float = math.nan
    slope: float = math.nan  # points of accuracy per 10 points of noise (least squares)


@dataclass
class NoiseCurves:
    axis: str
    scheme: str
    rates: list[float]
    curves: list[Curve]
    skipped: list[str] = field(default_factory=list)


def find_axis(rows: list[CellRow], axis: str | None = None) -> str:
    """The noise axis of a grid's runs: the one given (a spec's grid key), else teacher.noise.rate
    when runs set it, else teacher.wrong_rate when it takes two values or more."""
    if axis is not None:
        if axis not in AXES:
            raise UserError(f"{axis!r} is not a noise axis (use {' or '.join(AXES)})")
        return axis
    noisy = any(AXES[1] in r.params for r in rows)
    slips = {r.params.get(AXES[0]) for r in rows} - {None}
    if noisy and len(slips) > 1:
        raise UserError("these runs vary both teacher.wrong_rate and teacher.noise.rate: give the grid spec, whose axis says which")
    if noisy:
        return AXES[1]
    if len(slips) > 1:
        return AXES[0]
    raise UserError("no noise axis: these runs vary neither teacher.wrong_rate nor teacher.noise.rate (README: Teacher-noise curves)")


def rate_of(r: CellRow, axis: str) -> float:
    """The run's rate on the axis; a run without teacher.noise is rate 0 (its bank as generated)."""
    v = r.params.get(axis)
    return 0.0 if v in (None, "None", "") else float(v)


def latest_per_cell(rows: list[CellRow]) -> tuple[list[CellRow], int]:
    """The latest finished run of each cell name (rows come oldest first), and how many older
    ones were dropped: a grid rerun with other overrides leaves runs of the same cell behind."""
    latest = {r.cell: r for r in rows}
    kept = [r for r in rows if latest[r.cell] is r]
    return kept, len(rows) - len(kept)


def series_labels(rows: list[CellRow], axis: str) -> dict[str, str]:
    """run id -> its curve's label: the method with its options, then every other setting that
    takes two values among the runs that have it (seed and the rate never split curves)."""
    ignore = {axis, SEED_PARAM, "name"}
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.params if k not in keys and k not in ignore and not k.startswith("method.")]
    varying = [k for k in keys if len({r.params[k] for r in rows if k in r.params}) > 1]
    out = {}
    for r in rows:
        extra = ",".join(f"{axis_label(k)}={r.params[k]}" for k in varying if k in r.params)
        out[r.run_id] = r.method_label + (f" · {extra}" if extra else "")
    return out


def noise_curves(rows: list[CellRow], scheme: str = "greedy", axis: str | None = None) -> NoiseCurves:
    """Accuracy against the noise rate, one curve per method (and per other setting that differs)."""
    axis = find_axis(rows, axis)
    skipped = [f"{r.cell} ({r.run_id[:8]}): no test accuracy for {scheme}" for r in rows if scheme not in r.acc]
    scored = sorted({s for r in rows for s in r.acc})
    rows = [r for r in rows if scheme in r.acc]
    if not rows:
        raise UserError(f"no run scored {scheme!r}" + (f" (they scored: {', '.join(scored)}; choose one with --scheme)" if scored else ""))
    labels = series_labels(rows, axis)
    groups: dict[str, dict[float, list[CellRow]]] = {}
    for r in rows:
        groups.setdefault(labels[r.run_id], {}).setdefault(rate_of(r, axis), []).append(r)
    curves = [_curve(label, by_rate, scheme) for label, by_rate in groups.items()]
    rates = sorted({p.rate for c in curves for p in c.points})
    return NoiseCurves(axis, scheme, rates, curves, skipped)


def _point(rate: float, runs: list[CellRow], scheme: str) -> Point:
    c = _cell(runs, scheme)
    lo, hi = c.lo, c.hi
    if math.isnan(lo) and runs:  # several seeds without per-example results: their intervals' envelope
        lo, hi = (min(100 * r.acc[scheme][1] for r in runs), max(100 * r.acc[scheme][2] for r in runs))
    shares = [100 * r.metrics[WRONG_SHARE] for r in runs if WRONG_SHARE in r.metrics]
    share = statistics.fmean(shares) if shares else math.nan
    return Point(rate, c.mean, c.std, c.n, lo, hi, share, [r.run_id for r in runs], c.per_example)


def _curve(label: str, by_rate: dict[float, list[CellRow]], scheme: str) -> Curve:
    from harness.compare import paired_bootstrap

    points = [_point(rate, by_rate[rate], scheme) for rate in sorted(by_rate)]
    curve = Curve(label, points)
    if len(points) < 2:
        return curve
    first, last = points[0], points[-1]
    curve.drop = first.mean - last.mean
    a, b = last.per_example, first.per_example
    same_set = len({r.test_set for rate in (first.rate, last.rate) for r in by_rate[rate]}) == 1
    if a is not None and b is not None and len(a) == len(b) and same_set:
        lo, hi, _ = paired_bootstrap(np.array(a), np.array(b), RESAMPLES)  # mean(b) - mean(a): the drop
        curve.drop_lo, curve.drop_hi = 100 * lo, 100 * hi
    xs, ys = [p.rate for p in points], [p.mean for p in points]
    curve.slope = float(np.polyfit(xs, ys, 1)[0]) / 10  # per unit rate -> per 10 points of noise
    return curve


def fmt_rate(rate: float) -> str:
    return f"{100 * rate:g}%"


def table(nc: NoiseCurves) -> tuple[list[str], list[list[str]]]:
    """Header and text rows: a curve per row, 'mean [lo, hi] (n)' per rate, then the drop from the
    lowest to the highest rate with its interval, and the slope; a last row the wrong share of the
    train chains each rate actually gave (mean over the runs)."""
    lo_rate, hi_rate = fmt_rate(nc.rates[0]), fmt_rate(nc.rates[-1])
    header = ["method", *(fmt_rate(r) for r in nc.rates), f"drop {lo_rate}→{hi_rate} [95%]", "slope /10% noise"]
    out = []
    for c in nc.curves:
        at = {p.rate: p for p in c.points}
        cells = [_fmt_point(at.get(r)) for r in nc.rates]
        drop = "" if math.isnan(c.drop) else f"{c.drop:+.1f}" + ("" if math.isnan(c.drop_lo) else f" [{c.drop_lo:+.1f}, {c.drop_hi:+.1f}]")
        out.append([c.label, *cells, drop, "" if math.isnan(c.slope) else f"{c.slope:+.2f}"])
    shares = []
    for r in nc.rates:
        values = [p.wrong_share for c in nc.curves for p in c.points if p.rate == r and not math.isnan(p.wrong_share)]
        shares.append(f"{statistics.fmean(values):.1f}" if values else "")
    if any(shares):
        out.append(["(wrong share of train chains, %)", *shares, "", ""])
    return header, out


def _fmt_point(p: Point | None) -> str:
    if p is None:
        return ""
    text = f"{p.mean:.1f}"
    if not math.isnan(p.lo):
        text += f" [{p.lo:.1f}, {p.hi:.1f}]"
    return text + (f" (n={p.n})" if p.n > 1 else "")


# ---------------------------------------------------------------------------- charts


def frame_rows(nc: NoiseCurves) -> list[dict[str, Any]]:
    """One record per point, for the charts. `x` is the rate in %, nudged apart per curve so that
    the intervals of curves at the same rate do not hide each other (`rate` is the true value)."""
    m = len(nc.curves)
    span = 100 * (nc.rates[-1] - nc.rates[0]) if len(nc.rates) > 1 else 10.0
    step = span / 150 if m > 1 else 0.0
    out = []
    for i, c in enumerate(nc.curves):
        for p in c.points:
            out.append({
                "method": c.label, "rate": 100 * p.rate, "x": 100 * p.rate + (i - (m - 1) / 2) * step,
                "accuracy": p.mean, "lo": None if math.isnan(p.lo) else p.lo, "hi": None if math.isnan(p.hi) else p.hi,
                "seeds": p.n, "wrong share": None if math.isnan(p.wrong_share) else p.wrong_share,
            })  # fmt: skip
    return out


def axis_title(nc: NoiseCurves) -> str:
    what = "oracle slips, teacher.wrong_rate" if nc.axis == AXES[0] else "wrong chains swapped in, teacher.noise.rate"
    return f"{what} (%)"


def altair_chart(nc: NoiseCurves, title: str = "") -> Any:
    """Accuracy against the rate per method with 95% error bars (a Vega-Lite chart, altair)."""
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame(frame_rows(nc))
    ticks = alt.Axis(values=[100 * r for r in nc.rates], format="g")  # a tick per rate, not every 2%
    x = alt.X("x:Q", title=axis_title(nc), scale=alt.Scale(nice=False, padding=12), axis=ticks)
    color = alt.Color("method:N", title="method")
    tooltip = ["method:N", alt.Tooltip("rate:Q", title="rate %"), alt.Tooltip("accuracy:Q", format=".1f"),
               alt.Tooltip("lo:Q", format=".1f"), alt.Tooltip("hi:Q", format=".1f"), "seeds:Q",
               alt.Tooltip("wrong share:Q", format=".1f")]  # fmt: skip
    base = alt.Chart(frame).encode(x=x, color=color)
    line = base.mark_line(point=True).encode(y=alt.Y("accuracy:Q", title=f"test accuracy, {nc.scheme} (%)"), tooltip=tooltip)
    bars = base.mark_errorbar(ticks=True).encode(y=alt.Y("lo:Q", title=f"test accuracy, {nc.scheme} (%)"), y2="hi:Q")
    return (bars + line).properties(title=title or f"Teacher-noise curves ({nc.scheme})", width=560, height=360)


def write_chart(nc: NoiseCurves, path: Path, title: str = "") -> Path:
    """The chart as a PNG (matplotlib), a Vega-Lite spec (.json, data inline) or an HTML page
    (.html; it loads the Vega libraries from their CDN when opened)."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".json", ".html"):
        raise UserError(f"--out {str(path)!r}: write a .png, .json (Vega-Lite) or .html chart")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        _png(nc, path, title)
    elif suffix == ".json":
        path.write_text(altair_chart(nc, title).to_json(), encoding="utf-8")
    else:
        altair_chart(nc, title).save(str(path))
    return path


def _png(nc: NoiseCurves, path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: a file only
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("a PNG chart needs matplotlib (pip install matplotlib); --out FILE.json writes a Vega-Lite chart") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    records = frame_rows(nc)
    for c in nc.curves:
        pts = [r for r in records if r["method"] == c.label]
        xs, ys = [p["x"] for p in pts], [p["accuracy"] for p in pts]
        lo = [p["accuracy"] - p["lo"] if p["lo"] is not None else 0.0 for p in pts]
        hi = [p["hi"] - p["accuracy"] if p["hi"] is not None else 0.0 for p in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=c.label)
    ax.set_xlabel(axis_title(nc))
    ax.set_ylabel(f"test accuracy, {nc.scheme} (%)")
    ax.set_title(title or f"Teacher-noise curves ({nc.scheme})")
    ax.set_xticks([100 * r for r in nc.rates])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
