"""The Streamlit leaderboard: `distillbench leaderboard [--store DIR | --tracking-uri URI] [--port N]`.

Reads what MLflow holds (one search per load, cached; per-run calls only for the run a view
opens) and shows it through leaderboard/data.py, which holds every computation. Model output is
untrusted: it is shown with st.text / st.dataframe (plain text), never as Markdown or HTML.

The tracking URI comes from DISTILLBENCH_TRACKING_URI (the CLI sets it); without it, the default
store's ($DISTILLBENCH_HOME or ./.distillbench).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from leaderboard import data
from leaderboard.reported import reported

ENV_URI = "DISTILLBENCH_TRACKING_URI"
ENV_STORE = "DISTILLBENCH_STORE"  # the local store, where teacher banks live (drill-down)
ANY = "(any)"
CHOOSE = "(choose a run)"


def tracking_uri() -> str:
    uri = os.environ.get(ENV_URI)
    if uri:
        return uri
    from harness.store import Store

    return Store(None).tracking_uri


# cache_resource, not cache_data: the rows and tables are shared read-only, not copied on every
# render (unpickling 1,000 runs' rows would cost more than the rest of a cached render)
@st.cache_resource(ttl=60, show_spinner="reading runs from MLflow")
def load(uri: str) -> tuple[list[data.CellRow], str | None]:
    """Every finished run (one paged search per experiment); an unreadable store is an error
    message, not a crash."""
    try:
        return data.load_cells(uri), None
    except Exception as e:  # a missing or foreign store: say so on the page
        return [], f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


@st.cache_data(ttl=600, show_spinner="downloading the run's predictions")
def predictions(uri: str, run_id: str) -> tuple[Any, str | None]:
    """(the run's predictions, None), or (None, why not): a failure is cached like a success."""
    from harness.evaluate import locate_predictions, read_predictions

    scratch = Path(tempfile.mkdtemp(prefix="distillbench-board-"))
    try:
        folder, _ = locate_predictions(run_id, uri, scratch)
        return read_predictions(folder), None
    except Exception as e:
        return None, str(e).splitlines()[0] if str(e) else type(e).__name__


def store_root() -> Path | None:
    """The local store: DISTILLBENCH_STORE, else the default one when no tracking URI was given."""
    if os.environ.get(ENV_STORE):
        return Path(os.environ[ENV_STORE])
    if os.environ.get(ENV_URI):
        return None
    from harness.store import Store

    return Store(None).root


@st.cache_data(ttl=600, show_spinner="reading the teacher bank")
def bank_chains(root: str, key: str) -> dict[str, list[Any]]:
    """example id -> the bank's chains, or {} when the bank is not in this store."""
    from harness.bank import Bank

    path = Path(root) / "banks" / key
    if not (path / "manifest.json").is_file():
        return {}
    out: dict[str, list[Any]] = {}
    for c in Bank(path).chains():
        out.setdefault(c.example_id, []).append(c)
    return out


@st.cache_data(ttl=600)
def curves(uri: str, run_id: str, names: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return {n: [(m.step, m.value) for m in client.get_metric_history(run_id, n)] for n in names}


def empty_page(uri: str, error: str | None) -> None:
    st.title("distillbench leaderboard")
    st.info(f"No finished runs in {uri}." + (f" ({error})" if error else ""))
    st.write("Run the demo grid, then reload this page:")
    st.code("make demo            # or: distillbench grid runs/demo.yaml\ndistillbench leaderboard", language="sh")


def sidebar(rows: list[data.CellRow]) -> tuple[list[data.CellRow], str, tuple[tuple[str, str | None], ...]]:
    opts = data.options(rows)
    chosen = {}
    for key in data.FILTERS:
        values = opts[key]
        pick = st.sidebar.selectbox(key.replace("_", " "), [ANY, *values], key=f"filter_{key}")
        chosen[key] = None if pick == ANY else pick
    rows = data.filter_rows(rows, **chosen)
    schemes: list[str] = []
    for r in rows:
        schemes += [s for s in r.acc if s not in schemes]
    scheme = st.sidebar.selectbox("scheme", schemes or ["greedy"], key="scheme")
    return rows, scheme, tuple(sorted(chosen.items()))


@st.cache_resource(ttl=60, show_spinner="computing the table")
def main_table(uri: str, filters: tuple[tuple[str, str | None], ...], scheme: str) -> data.MainTable:
    """The main table of the runs `load(uri)` read (ties are the costly part: cached with them)."""
    return data.main_table(data.filter_rows(load(uri)[0], **dict(filters)), scheme, reported=list(reported()))


def main_view(uri: str, rows: list[data.CellRow], scheme: str, filters: tuple[tuple[str, str | None], ...]) -> data.MainTable:
    table = main_table(uri, filters, scheme)
    header, grid = data.table_grid(table)
    st.subheader(f"Test accuracy (%), {scheme}")
    st.caption("mean ± std over seeds [95% interval] (n seeds) · * best in its column · ~ tied with the best (paired bootstrap on the same examples) · ! fairness flag below")
    import pandas as pd

    frame = pd.DataFrame(grid, columns=header)
    frame.insert(1, "kind", [r.kind for r in table.rows])
    # beside the accuracy: test questions the training data duplicates (README: Contamination check)
    frame["contam."] = data.contamination_column(table, rows)
    # a static table: its text is in the page (readable, selectable, testable in a browser)
    st.table(frame.set_index("method"))
    flags = [(r.label, c, f) for r in table.rows for c, cell in r.cells.items() for f in cell.flags]
    if flags:
        st.warning("Fairness: these cells differ from the rest of their column")
        st.dataframe(pd.DataFrame(flags, columns=["method", "test set", "what differs"]), hide_index=True, key="flags")
    if any(c.endswith("!") for c in frame["contam."]):
        st.warning("contam.: test questions the row's training data (train questions, teacher chains, generated problems) "
                   "duplicates exactly or nearly, most over its runs; its accuracy may be inflated (distillbench contamination SPEC)")
    old = sum(1 for r in rows if scheme in r.acc and not r.has_correct(scheme))
    if old:
        st.caption(f"{old} runs carry no per-example results (logged before they were recorded): shown without ties")
    notes = [(r.label, r.note) for r in table.rows if r.kind == "reported"]
    if notes:
        with st.expander("Reported rows: sources"):
            st.dataframe(pd.DataFrame(notes, columns=["row", "source"]), hide_index=True, key="sources")
    if table.skipped:
        with st.expander(f"{len(table.skipped)} runs not shown"):
            st.text("\n".join(table.skipped))
    return table


def aggregation_view(uri: str, rows: list[data.CellRow]) -> None:
    import pandas as pd

    if not rows:
        st.info("No runs match the filters.")
        return
    labels = {data.run_label(r): r for r in rows}
    picked = st.multiselect("runs", list(labels), default=list(labels)[:1], key="agg_runs")
    chosen = [labels[p] for p in picked]
    schemes: list[str] = []
    for r in chosen:
        schemes += [s for s in r.acc if s not in schemes]
    table = [[data.run_label(r), *[f"{100 * r.acc[s][0]:.1f} [{100 * r.acc[s][1]:.1f}, {100 * r.acc[s][2]:.1f}]" if s in r.acc else "" for s in schemes]] for r in chosen]
    st.dataframe(pd.DataFrame(table, columns=["run", *schemes]), hide_index=True, key="agg_table")
    for r in chosen:
        names = tuple(k for k in r.metrics if k.startswith(("test/curve/", "test/curve_used/")))
        if not names:
            continue
        series = curves(uri, r.run_id, names)
        frame = pd.DataFrame({n.removeprefix("test/"): dict(v) for n, v in series.items()})
        frame.index.name = "k"
        st.caption(f"k-curves: {data.run_label(r)}")
        st.line_chart(frame)


def cost_view(rows: list[data.CellRow], scheme: str) -> None:
    import pandas as pd

    points = data.cost_points(rows, scheme)
    if not points:
        st.info("No runs scored this scheme.")
        return
    axis = st.selectbox("cost", ["train_seconds", "teacher_tokens", "chains_per_question"], key="cost_axis")
    front = data.pareto_front([(getattr(p, axis), p.acc) for p in points])
    frame = pd.DataFrame(
        [{"run": p.label, "accuracy %": p.acc, axis: getattr(p, axis), "Pareto front": f} for p, f in zip(points, front, strict=True)]
    )
    st.scatter_chart(frame, x=axis, y="accuracy %", color="Pareto front")
    st.dataframe(frame, hide_index=True, key="cost_table")


def diagnostics_view(uri: str, rows: list[data.CellRow], scheme: str) -> None:
    import pandas as pd

    usable = [r for r in rows if r.has_correct(scheme)]
    if len(usable) < 2:
        st.info("Needs two runs with per-example results on the same test set (runs logged since the leaderboard's first version).")
        return
    labels = {data.run_label(r): r for r in usable}
    a = labels[st.selectbox("run A (e.g. positives only)", list(labels), key="diag_a")]
    b = labels[st.selectbox("run B (e.g. negatives only)", list(labels), index=1, key="diag_b")]
    if a.test_set != b.test_set:
        st.error("The two runs were scored on different test sets: pick runs on the same one.")
        return
    ca, cb = a.correct(scheme), b.correct(scheme)
    keys, groups = [str(i) for i in range(len(ca))], None
    if st.checkbox("by subject (downloads run A's predictions)", key="diag_sub"):
        preds, why = predictions(uri, a.run_id)
        if preds is None:
            st.error(f"run A's predictions are not available: {why}")
        else:
            keys = sorted(ex.id for ex in preds.examples)  # the order the bitsets follow
            meta = {ex.id: ex.meta.get("subject") for ex in preds.examples}
            groups = meta if any(meta.values()) else None
    out = data.solved_overlap(dict(zip(keys, ca, strict=True)), dict(zip(keys, cb, strict=True)), groups)
    st.dataframe(
        pd.DataFrame([(o.group, o.examples, o.solved_a, o.solved_b, o.both, round(o.iou, 3)) for o in out], columns=["group", "examples", "solved by A", "solved by B", "both", "IoU"]),
        hide_index=True,
        key="diag_table",
    )


def drilldown_view(uri: str, rows: list[data.CellRow], scheme: str) -> None:
    import pandas as pd

    if not rows:
        st.info("No runs match the filters.")
        return
    labels = {data.run_label(r): r for r in rows}
    # nothing is downloaded until a run is chosen (a run's predictions can be large)
    picked = st.selectbox("run", [CHOOSE, *labels], key="drill_run")
    if picked == CHOOSE:
        return
    run = labels[picked]
    preds, why = predictions(uri, run.run_id)
    if preds is None:
        st.error(f"This run's predictions are not available: {why}")
        return
    examples = preds.examples
    index = st.number_input("test example #", min_value=0, max_value=max(0, len(examples) - 1), value=0, step=1, key="drill_ex")
    ex = examples[int(index)]
    chains = [c for c in preds.chains if c.example_id == ex.id]
    st.caption(f"example {ex.id}")
    st.text("question:\n" + (ex.question or "(not saved with this run's predictions)"))
    st.text(f"gold answer: {ex.answer}")
    task = preds.task()
    # correctness as the run scored it; checked here for chains saved without it
    right = {id(c): c.correct if c.correct is not None else (c.answer is not None and task.equivalent(c.answer, ex.answer)) for c in chains}
    chains = [dataclasses.replace(c, correct=right[id(c)]) for c in chains]
    sampled = [c for c in chains if c.meta.get("temperature", 0) > 0]
    if sampled:
        votes = data.vote_groups(task, sampled)
        st.dataframe(pd.DataFrame(votes, columns=["answer", "votes", "right"]), hide_index=True, key="drill_votes")
    table = [
        {
            "sample": c.meta.get("sample", 0),
            "T": c.meta.get("temperature", 0),
            "answer": c.answer if c.answer is not None else "",
            "right": c.correct,
            "logprob": c.logprob,
            "ranker score": c.meta.get("ranker_score", math.nan),
            "text": c.text,
        }
        for c in chains
    ]
    st.dataframe(pd.DataFrame(table), hide_index=True, key="drill_chains")
    for c in chains[:50]:  # the full texts, as plain text
        st.text(f"[{c.meta.get('sample', 0)}] {c.text}")
    teacher_view(run)


def teacher_view(run: data.CellRow) -> None:
    """The teacher's positive and negative chains of a train example of the run's bank."""
    import pandas as pd

    st.subheader("Teacher chains (train)")
    root = store_root()
    bank = bank_chains(str(root), run.teacher_bank) if root is not None else {}
    if not bank:
        st.info("The run's teacher bank is not in a local store here (start with --store to read it).")
        return
    ids = sorted(bank)
    which = st.selectbox("train example", ids, key="teacher_ex")
    rows = [{"label": "positive" if c.correct else "negative", "answer": c.answer or "", "text": c.text} for c in bank[which]]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="teacher_chains")


def noise_view(rows: list[data.CellRow], scheme: str) -> None:
    """Each method's test accuracy against the teacher-noise rate of a grid with a noise axis
    (teacher.wrong_rate or teacher.noise.rate), with 95% error bars (leaderboard/noise.py)."""
    import pandas as pd

    from harness.errors import UserError
    from leaderboard import noise

    grids = []
    for g in dict.fromkeys(r.grid for r in rows):
        try:
            noise.find_axis([r for r in rows if r.grid == g])
            grids.append(g)
        except UserError:
            continue
    if not grids:
        st.info("No grid here has a noise axis: run one with grid: {teacher.wrong_rate: [...]} or "
                "{teacher.noise.rate: [...]} (README: Teacher-noise curves).")
        return
    grid = st.selectbox("grid", grids, key="noise_grid")
    picked, _ = noise.latest_per_cell([r for r in rows if r.grid == grid])
    try:
        nc = noise.noise_curves(picked, scheme)
    except UserError as e:
        st.info(str(e))
        return
    st.altair_chart(noise.altair_chart(nc, title=f"{grid}: teacher-noise curves ({scheme})"), width="stretch", key="noise_chart")
    header, body = noise.table(nc)
    st.table(pd.DataFrame(body, columns=header).set_index("method"))
    st.caption(f"{nc.axis}: mean over seeds [95% interval] (n seeds); drop = accuracy at the lowest rate minus at the "
               "highest, in points [paired bootstrap over the same test examples]; slope per 10 points of noise")


def exports_view(table: data.MainTable) -> None:
    st.download_button("CSV", data.to_csv(table), file_name="leaderboard.csv", mime="text/csv", key="dl_csv")
    md = data.to_markdown(table)
    st.download_button("Markdown", md, file_name="leaderboard.md", mime="text/markdown", key="dl_md")
    tex = data.to_latex(table)
    st.download_button("LaTeX (booktabs)", tex, file_name="leaderboard.tex", mime="text/x-tex", key="dl_tex")
    st.code(md, language="markdown")
    st.code(tex, language="latex")


def main() -> None:
    st.set_page_config(page_title="distillbench leaderboard", layout="wide")
    uri = tracking_uri()
    rows, error = load(uri)
    if not rows:
        empty_page(uri, error)
        return
    st.title("distillbench leaderboard")
    st.caption(f"{len(rows)} finished runs · {uri}")
    rows, scheme, filters = sidebar(rows)
    tabs = st.tabs(["Main table", "Aggregation", "Cost", "Negative-data diagnostics", "Drill-down", "Exports", "Noise curves"])
    with tabs[0]:
        table = main_view(uri, rows, scheme, filters)
    with tabs[1]:
        aggregation_view(uri, rows)
    with tabs[2]:
        cost_view(rows, scheme)
    with tabs[3]:
        diagnostics_view(uri, rows, scheme)
    with tabs[4]:
        drilldown_view(uri, rows, scheme)
    with tabs[5]:
        exports_view(table)
    with tabs[6]:
        noise_view(rows, scheme)


main()
