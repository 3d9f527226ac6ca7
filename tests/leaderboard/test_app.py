"""The Streamlit app in-process (streamlit.testing AppTest) on a store the test fills: every view
renders, filters change the table, the drill-down shows a run's chains as text, exports equal the
table, and an empty store gets a page saying how to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.store import Store
from harness.tracking import Tracker
from leaderboard import data
from leaderboard.reported import reported
from tests.leaderboard.test_main_table import correct, log_run
from tests.test_cli_aggregate import predictions

APP = str(Path(__file__).resolve().parents[2] / "leaderboard" / "app.py")
EVIL = '<script>alert(1)</script> <img src=x onerror=alert(2)> [click](http://127.0.0.1:9/x)'


def frame(at, *columns: str):
    """The first table on the page with these columns (AppTest does not expose dataframe keys)."""
    for d in [*at.table, *at.dataframe]:
        value = d.value.reset_index() if d.value.index.name else d.value
        if all(c in value.columns for c in columns):
            return value
    raise AssertionError(f"no table with columns {columns}: {[list(d.value.columns) for d in at.dataframe]}")


def app(monkeypatch, uri: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DISTILLBENCH_TRACKING_URI", uri)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def filled(tmp_path):
    store = Store(tmp_path / "store")
    t = Tracker(store, "g")
    log_run(t, "dss", "svamp", correct(0.6, 1))
    log_run(t, "finetune", "svamp", correct(0.3, 2))
    log_run(t, "dss", "svamp", correct(0.5, 3), student="t5-base")
    # a run with predictions to drill into, one chain carrying markup
    folder = predictions(tmp_path / "p", skill=0.7)
    chains = (folder / "chains.jsonl").read_text().splitlines()
    chains[0] = chains[0].replace('"The answer is', f'"{EVIL} The answer is', 1)
    (folder / "chains.jsonl").write_text("\n".join(chains) + "\n")
    # its teacher bank in the store: a right and a slipped chain for one train question
    from harness.bank import Bank
    from harness.types import Chain

    bank = Bank.create(store, {"test": "bank"})
    bank.append_chunk(0, ["train-1"], [Chain("train-1", "teacher:t", "2 + 2 = 4. The answer is 4.", "4", True),
                                       Chain("train-1", "teacher:t", f"{EVIL} The answer is 5.", "5", False)])
    tags = {"cell_hash": "q", "cell": "method=qcrd", "task": "math500", "method": "qcrd", "student": "tiny-t5", "teacher_bank": bank.key}
    with t.run("method=qcrd", {"seed": 0, "method.name": "qcrd", "eval.schemes": ["greedy"]}, tags) as log:
        log.metrics({"test/acc/greedy": 0.7, "test/lo/greedy": 0.5, "test/hi/greedy": 0.9})
        log.artifact(folder, "predictions")
    return store


def test_every_view_renders_and_filters_change_the_table(monkeypatch, filled):
    at = app(monkeypatch, filled.tracking_uri)
    assert [t.label for t in at.tabs] == ["Main table", "Aggregation", "Cost", "Negative-data diagnostics", "Drill-down", "Exports", "Noise curves"]
    # no grid here varies the teacher's noise: the tab says how to run one
    assert any("no grid here has a noise axis" in i.value.lower() for i in at.tabs[6].info)
    main = frame(at, "method", "kind")
    measured = main[main["kind"] == "measured"]
    assert list(measured["method"]) == ["dss", "finetune", "qcrd"] and "svamp" in main.columns and "math500" in main.columns
    # the papers' SVAMP rows beside ours, labelled as reported, with their student
    assert "reported: Ours (GPT-3.5-turbo) · T5-base" in list(main["method"])
    # the rows of the table are what leaderboard.data computes on the same runs
    table = data.main_table(data.load_cells(filled.tracking_uri), "greedy", reported=list(reported()))
    assert list(main["svamp"]) == [row[1] for row in data.table_grid(table)[1]] and len(main) == len(table.rows)
    assert frame(at, "what differs")["what differs"].str.contains("mixed students").any()
    at.selectbox(key="filter_student").select("t5-base").run()
    main = frame(at, "method", "kind")
    assert list(main[main["kind"] == "measured"]["method"]) == ["dss"] and not at.exception


def test_exports_equal_the_table(monkeypatch, filled):
    at = app(monkeypatch, filled.tracking_uri)
    table = data.main_table(data.load_cells(filled.tracking_uri), "greedy", reported=list(reported()))
    codes = [c.value.strip() for c in at.code]
    assert data.to_markdown(table).strip() in codes and data.to_latex(table).strip() in codes


def test_drill_down_shows_the_chains_as_text(monkeypatch, filled):
    monkeypatch.setenv("DISTILLBENCH_STORE", str(filled.root))
    at = app(monkeypatch, filled.tracking_uri)
    run = next(o for o in at.selectbox(key="drill_run").options if o.startswith("qcrd"))
    at.selectbox(key="drill_run").select(run).run()
    assert not at.exception, at.exception
    chains = frame(at, "logprob", "text")
    assert len(chains) == 7 and EVIL in chains["text"].iloc[0]
    # correctness checked by the task where the saved chains lack it: "0", "0.0" right; "101" wrong
    assert all(r == (a in ("0", "0.0", "\\frac{0}{2}")) for a, r in zip(chains["answer"], chains["right"], strict=True))
    texts = [t.value for t in at.text]
    assert any(EVIL in t for t in texts) and any(t.startswith("gold answer: 0") for t in texts)
    assert not any(EVIL in m.value for m in at.markdown)  # never rendered as Markdown
    at.number_input(key="drill_ex").set_value(3).run()
    assert any(t.value.startswith("gold answer: 3") for t in at.text)
    # the teacher's chains of a train question of the run's bank, labelled, as text
    teacher = frame(at, "label", "text")
    assert list(teacher["label"]) == ["positive", "negative"] and EVIL in teacher["text"].iloc[1]
    assert not any(EVIL in m.value for m in at.markdown)


def test_an_empty_store_says_how_to_start(monkeypatch, tmp_path):
    at = app(monkeypatch, Store(tmp_path / "empty").tracking_uri)
    assert "No finished runs" in at.info[0].value and "make demo" in at.code[0].value
