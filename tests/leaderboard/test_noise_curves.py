"""Teacher-noise curves (leaderboard/noise.py) from hand-made CellRows: the axis, the points with
their intervals over seeds, the drop with its paired interval, the slope, the table and charts."""

from __future__ import annotations

import json
import math

import pytest

from harness.errors import UserError
from harness.evaluate import encode_bits
from leaderboard.data import CellRow
from leaderboard.noise import find_axis, latest_per_cell, noise_curves, table, write_chart

N = 200


def row(method: str, rate: float | None, acc: float, seed: int = 0, axis: str = "teacher.wrong_rate", share: float | None = None,
        per_example: bool = True, extra: dict | None = None, cell: str | None = None) -> CellRow:
    """A run whose first round(acc * N) test examples are right."""
    right = round(acc * N)
    bits = [i < right for i in range(N)]
    params = {"seed": str(seed), "method.name": method, "teacher.wrong_rate": "0.0", **(extra or {})}
    if rate is not None:
        params[axis] = str(rate)
    tags = {"test/ids": "ids1", **({"test/correct/greedy": encode_bits(bits)} if per_example else {})}
    metrics = {"teacher/wrong_share": share} if share is not None else {}
    a = right / N
    return CellRow(run_id=f"{method}-{rate}-{seed}-{acc}", experiment="g", cell=cell or f"method={method},rate={rate},seed={seed}",
                   task="arith", method=method, student="tiny", schemes=["greedy"], acc={"greedy": (a, a - 0.05, a + 0.04)},
                   params=params, tags=tags, metrics=metrics)


def test_points_drop_and_slope_per_method():
    rows = [row("dss", r, acc, share=r) for r, acc in ((0.0, 0.60), (0.3, 0.50), (0.7, 0.30))]
    rows += [row("ul", r, acc, seed=s) for r, acc in ((0.0, 0.50), (0.3, 0.50), (0.7, 0.50)) for s in (0, 1)]
    nc = noise_curves(rows, "greedy")
    assert nc.axis == "teacher.wrong_rate" and nc.rates == [0.0, 0.3, 0.7]
    dss, ul = nc.curves
    assert dss.label == "dss" and [round(p.mean, 6) for p in dss.points] == [60.0, 50.0, 30.0]
    # one seed: the run's own bootstrap interval
    assert dss.points[0].lo == pytest.approx(55.0) and dss.points[0].hi == pytest.approx(64.0) and dss.points[0].n == 1
    assert dss.drop == pytest.approx(30.0)
    # the 60 examples right at 0% and wrong at 70% are the whole difference: a tight paired interval around it
    assert 20 < dss.drop_lo < 30 < dss.drop_hi < 40
    # least squares through (0, 60), (0.3, 50), (0.7, 30), per 10 points of noise
    xs, ys = [0, 0.3, 0.7], [60, 50, 30]
    mx, my = sum(xs) / 3, sum(ys) / 3
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert dss.slope == pytest.approx(slope / 10)
    # two identical seeds: their mean, n = 2, a bootstrap over the averaged per-example results
    assert ul.points[1].n == 2 and ul.points[1].mean == pytest.approx(50.0) and ul.drop == pytest.approx(0.0)
    assert ul.points[1].lo < 50 < ul.points[1].hi and ul.slope == pytest.approx(0.0)
    header, body = table(nc)
    assert header == ["method", "0%", "30%", "70%", "drop 0%→70% [95%]", "slope /10% noise"]
    assert body[0][0] == "dss" and body[0][1] == "60.0 [55.0, 64.0]" and body[0][4].startswith("+30.0 [")
    assert body[1][2].endswith("(n=2)")
    # the wrong share the rates gave, where logged (dss only here)
    assert body[-1] == ["(wrong share of train chains, %)", "0.0", "30.0", "70.0", "", ""]


def test_several_seeds_without_per_example_results_use_the_envelope():
    rows = [row("mix", 0.0, 0.5, seed=0, per_example=False), row("mix", 0.0, 0.6, seed=1, per_example=False),
            row("mix", 0.5, 0.4, per_example=False)]
    nc = noise_curves(rows)
    p0 = nc.curves[0].points[0]
    assert p0.mean == pytest.approx(55.0) and p0.lo == pytest.approx(45.0) and p0.hi == pytest.approx(64.0)
    assert nc.curves[0].drop == pytest.approx(15.0) and math.isnan(nc.curves[0].drop_lo)


def test_noise_rate_axis_runs_without_noise_are_rate_zero_and_other_settings_split_curves():
    ax = "teacher.noise.rate"
    rows = [row("dss", None, 0.6), row("dss", 0.5, 0.4, axis=ax, extra={"teacher.noise.swap": "own"}),
            row("dss", 0.5, 0.5, axis=ax, extra={"teacher.noise.swap": "other"})]
    nc = noise_curves(rows)
    assert nc.axis == ax and nc.rates == [0.0, 0.5]
    # the run without noise has no swap setting: it does not split a curve, and is rate 0 of both
    assert [c.label for c in nc.curves] == ["dss", "dss · noise.swap=own", "dss · noise.swap=other"]
    assert [p.rate for p in nc.curves[0].points] == [0.0]


def test_axis_detection_and_errors():
    flat = [row("dss", None, 0.5), row("ul", None, 0.4)]
    with pytest.raises(UserError, match="no noise axis"):
        find_axis(flat)
    both = [row("dss", 0.1, 0.5, axis="teacher.noise.rate", extra={"teacher.wrong_rate": "0.2"}), row("dss", 0.0, 0.5)]
    with pytest.raises(UserError, match="both"):
        find_axis(both)
    assert find_axis(both, "teacher.noise.rate") == "teacher.noise.rate"
    with pytest.raises(UserError, match="not a noise axis"):
        find_axis(both, "teacher.k")
    with pytest.raises(UserError, match="no run scored 'majority@8'.*greedy"):
        noise_curves([row("dss", 0.0, 0.5), row("dss", 0.3, 0.4)], "majority@8")


def test_latest_run_of_a_cell_wins():
    old, new = row("dss", 0.0, 0.2, cell="c"), row("dss", 0.0, 0.7, cell="c")
    kept, dropped = latest_per_cell([old, new, row("dss", 0.3, 0.5)])
    assert kept[0] is new and dropped == 1 and len(kept) == 2


def test_charts(tmp_path):
    rows = [row(m, r, acc) for m, base in (("dss", 0.6), ("ul", 0.5)) for r, acc in ((0.0, base), (0.5, base - 0.2))]
    nc = noise_curves(rows)
    spec = json.loads(write_chart(nc, tmp_path / "c.json").read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    data = next(iter(spec["datasets"].values()))
    assert {d["method"] for d in data} == {"dss", "ul"} and len(data) == 4
    # curves nudged apart at the same rate, the true rate kept for the tooltip
    dss0, ul0 = (next(d for d in data if d["method"] == m and d["rate"] == 0) for m in ("dss", "ul"))
    assert dss0["x"] < 0 < ul0["x"] and dss0["lo"] == pytest.approx(55.0)
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert marks == ["errorbar", "line"]
    png = write_chart(nc, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="png"):
        write_chart(nc, tmp_path / "c.svg")
