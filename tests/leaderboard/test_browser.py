"""The leaderboard in a real browser: `distillbench leaderboard` on 127.0.0.1, driven by the
system's Chromium through Playwright (`executable_path`; never `playwright install`). It waits
for the table, checks its text, opens a drill-down, checks that chains with markup stay text in
the DOM, and saves screenshots under $DISTILLBENCH_ARTIFACTS (default: the test's tmp dir)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.store import Store
from harness.tracking import Tracker
from tests.leaderboard.test_app import EVIL
from tests.leaderboard.test_main_table import correct, log_run
from tests.leaderboard.test_serve import free_port, serve, stop, wait_healthy
from tests.test_cli_aggregate import predictions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None:
        return "no system Chromium: `make test` installs it (apt-get install -y chromium, as root)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def fill(store: Store, tmp_path: Path) -> None:
    t = Tracker(store, "browser")
    folder = predictions(tmp_path / "p", skill=0.7)
    lines = (folder / "chains.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"The answer is', f'"{EVIL} The answer is', 1)
    (folder / "chains.jsonl").write_text("\n".join(lines) + "\n")
    tags = {"cell_hash": "q", "cell": "method=qcrd", "task": "math500", "method": "qcrd", "student": "tiny-t5"}
    with t.run("method=qcrd", {"seed": 0, "method.name": "qcrd", "eval.schemes": ["greedy"]}, tags) as log:  # first: the drill-down's default run
        log.metrics({"test/acc/greedy": 0.7, "test/lo/greedy": 0.5, "test/hi/greedy": 0.9})
        log.artifact(folder, "predictions")
    log_run(t, "dss", "svamp", correct(0.6, 1))
    log_run(t, "finetune", "svamp", correct(0.3, 2))


def test_the_leaderboard_in_chromium(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("DISTILLBENCH_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    store = Store(tmp_path / "store")
    fill(store, tmp_path)
    port = free_port()
    proc = serve(store.root, port)
    dialogs: list[str] = []
    try:
        wait_healthy(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"http://127.0.0.1:{port}/")
            table = page.locator("table").first
            expect(table).to_be_visible(timeout=60_000)  # waits for the element, no fixed sleep
            text = table.inner_text()
            assert "dss" in text and "finetune" in text and "svamp" in text and "reported" in text
            assert "contam." in text  # the contamination check's column, beside the accuracy
            page.screenshot(path=str(shots / "leaderboard-main.png"), full_page=True)

            page.get_by_role("tab", name="Drill-down").click()
            drill = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("run", exact=True))
            drill.get_by_role("combobox").click()
            page.get_by_role("option").filter(has_text="qcrd").first.click()
            # the chain as st.text shows it; the data grid keeps hidden copies of its cells in the
            # DOM for screen readers, which a bare get_by_text may pick first
            chain = page.locator('[data-testid="stText"]').filter(has_text="<script>alert(1)</script>").first
            expect(chain).to_be_visible(timeout=60_000)
            # the markup is text: no element came from it, no link, no dialog
            assert EVIL in chain.inner_text()
            assert page.locator("img[src='x']").count() == 0
            assert page.locator("a[href='http://127.0.0.1:9/x']").count() == 0
            assert page.evaluate("() => [...document.scripts].some(s => s.textContent.includes('alert(1)'))") is False
            page.screenshot(path=str(shots / "leaderboard-drilldown.png"), full_page=True)
            browser.close()
    finally:
        stop(proc, port)
    assert dialogs == []
    assert (shots / "leaderboard-main.png").stat().st_size > 0


# a real grid (the pipeline, offline) over a noise axis: one method, two rates of the oracle's slips
NOISE_GRID = [
    "task.n_train=32", "task.n_valid=8", "task.n_test=16", "train.steps=2", "train.eval_every=2", "train.log_every=2",
    "train.batch_size=8", "decode.max_new_tokens=6", "student.tiny.vocab_size=300", "eval.schemes=[greedy]",
    "eval.untrained=false", "teacher.k=2", "grid.method.name=[single_task]", "grid.seed=[0]", "grid.teacher.wrong_rate=[0,0.5]",
]  # fmt: skip


def test_noise_curves_render_in_chromium(tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    from harness.config import load_grid
    from harness.grid import run_grid

    monkeypatch.chdir(tmp_path)
    shots = Path(os.environ.get("DISTILLBENCH_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    store = Store(tmp_path / "store")
    root = Path(__file__).resolve().parents[2]
    results = run_grid(load_grid(root / "runs" / "demo.yaml", NOISE_GRID), "noisy", store, show_progress=False)
    assert not any(r.error for r in results)
    port = free_port()
    proc = serve(store.root, port)
    try:
        wait_healthy(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page.locator("table").first).to_be_visible(timeout=60_000)
            page.get_by_role("tab", name="Noise curves").click()
            # this tab's chart (the Aggregation and Cost tabs hold Vega-Lite charts too, hidden)
            panel = page.get_by_role("tabpanel", name="Noise curves")
            drawn = panel.locator('[data-testid="stVegaLiteChart"] svg').first
            expect(drawn).to_be_visible(timeout=60_000)
            # Vega drew it: an svg with a size, the axis title and the method in its own text
            box = drawn.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 150
            expect(drawn).to_contain_text("teacher.wrong_rate", timeout=60_000)
            assert "single_task" in drawn.text_content()
            table = panel.locator("table").first
            expect(table).to_be_visible(timeout=60_000)
            text = table.inner_text()
            assert "single_task" in text and "0%" in text and "50%" in text and "drop 0%→50%" in text
            page.screenshot(path=str(shots / "leaderboard-noise.png"), full_page=True)
            browser.close()
    finally:
        stop(proc, port)
    assert (shots / "leaderboard-noise.png").stat().st_size > 0
