"""`distillbench aggregate` and `distillbench compare` on saved predictions, through the console script."""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.evaluate import write_predictions
from harness.types import Chain, Example
from tests.test_cli import cli

SUBJECTS = ["Algebra", "Geometry"]


def predictions(folder: Path, skill: float, seed: int = 0, k: int = 6) -> Path:
    """A math500 predictions folder: 1 greedy + k sampled chains for 20 examples."""
    rnd = random.Random(seed)
    examples = [Example(f"math-{i}", "", str(i), meta={"subject": SUBJECTS[i % 2], "level": 1 + i % 3}) for i in range(20)]
    chains = []
    for ex in examples:
        for j in range(k + 1):
            right = rnd.random() < skill
            # right answers in several spellings: \frac{2i}{2}, i.0, i
            answer = rnd.choice([ex.answer, f"\\frac{{{2 * int(ex.answer)}}}{{2}}", f"{ex.answer}.0"]) if right else str(rnd.randint(100, 103))
            temp = 0.0 if j == 0 else 0.7
            chains.append(Chain(ex.id, "student:x", f"The answer is {answer}", answer, logprob=-rnd.uniform(1, 9), n_tokens=5, meta={"temperature": temp, "sample": j - 1 if j else 0}))
    task = {"name": "math500", "options": {}, "version": "x", "prompt_version": "x"}
    write_predictions(folder, task, examples, chains)
    return folder


def test_aggregate_a_predictions_folder(tmp_path: Path) -> None:
    folder = predictions(tmp_path / "p", skill=0.6)
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"example_id": f"math-{i}", "sample": s, "score": 0.5}) + "\n" for i in range(20) for s in range(6)))
    r = cli("aggregate", str(folder), "--schemes", "greedy,majority@4,weighted,asc:1,esc:2", "--scores", str(scores), "--subsamples", "20", "--store", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    for what in ("majority@4", "weighted", "asc:1", "esc:2", "pass@k", "majority@k", "esc:2 chains used", "by subject", "Geometry", "by level"):
        assert what in r.stdout, what
    assert "logged" not in r.stderr  # a folder alone names no run
    r = cli("aggregate", str(folder), "--subsamples", "5", "--no-curves", "--store", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert all(s in r.stdout for s in ("greedy", "majority", "weighted", "esc")) and "pass@k" not in r.stdout


def test_aggregate_bad_input_is_one_line(tmp_path: Path) -> None:
    folder = predictions(tmp_path / "p", skill=0.6)
    for args, message in (
        (["aggregate", str(tmp_path), "--store", str(tmp_path / "s")], "is not a predictions folder: missing chains.jsonl"),
        (["aggregate", "no-such-run", "--store", str(tmp_path / "s")], "is neither a predictions folder nor an MLflow run id"),
        (["aggregate", str(folder), "--schemes", "asc", "--store", str(tmp_path / "s")], "ranker score"),
        (["aggregate", str(folder), "--schemes", "majority@9", "--store", str(tmp_path / "s")], "needs 9 chains"),
    ):
        r = cli(*args)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_aggregate_a_run_logs_to_it(tmp_path: Path) -> None:
    from harness.store import Store
    from harness.tracking import Tracker

    store = Store(tmp_path / "s")
    tracker = Tracker(store, "exp")
    with tracker.run("cell", {}, {}) as log:
        log.artifact(predictions(tmp_path / "p", skill=0.7), "predictions")
        run_id = log.run_id
    r = cli("aggregate", run_id, "--schemes", "majority,esc:3", "--subsamples", "10", "--store", str(store.root))
    assert r.returncode == 0, r.stderr
    assert f"logged to MLflow run {run_id}" in r.stderr
    run = tracker.client.get_run(run_id)
    assert 0 <= run.data.metrics["test/acc/majority"] <= 1 and "test/used/esc_3" in run.data.metrics
    assert "test/by_subject/Algebra/majority" in run.data.metrics
    assert [m.step for m in tracker.client.get_metric_history(run_id, "test/curve/esc_3")] == list(range(1, 7))
    # the whole evaluation is an artifact in strict JSON (no NaN)
    local = tracker.client.download_artifacts(run_id, "evaluation/test.json", str(tmp_path / "dl"))

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-JSON constant {name} in the evaluation artifact")

    ev = json.loads(Path(local).read_text(), parse_constant=no_constants)
    assert set(ev["scores"]) == {"majority", "esc:3"} and len(ev["curves"]["pass_at"]) == 6
    # the results table shows schemes added this way next to the spec's own
    from leaderboard.data import cell_row

    run = tracker.client.get_run(run_id)
    row = cell_row("exp", run_id, {**run.data.tags, "cell_hash": "x"}, run.data.params, run.data.metrics)
    assert row.schemes == ["majority", "esc:3"] and set(row.acc) == {"majority", "esc:3"}


def test_compare_two_runs(tmp_path: Path) -> None:
    weak = predictions(tmp_path / "a", skill=0.2, seed=1)
    strong = predictions(tmp_path / "b", skill=0.95, seed=2)
    r = cli("compare", str(weak), str(strong), "--scheme", "majority", "--resamples", "500", "--store", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert "McNemar" in r.stdout and "paired bootstrap" in r.stdout and "+" in r.stdout
    r = cli("compare", str(weak), str(weak), "--scheme", "greedy", "--resamples", "500", "--store", str(tmp_path / "s"))
    assert r.returncode == 0 and "+0.00 [+0.00, +0.00]" in r.stdout, r.stdout


def test_decode_flags_are_spec_overrides() -> None:
    r = cli("grid", "runs/demo.yaml", "--dry-run", "--k", "3")
    assert r.returncode == 2 and "needs 8 sampled chains per example but decode.k is 3" in r.stderr, r.stderr
    r = cli("grid", "runs/demo.yaml", "--dry-run", "--k", "16", "--temperature", "0.5", "--top-p", "0.9", "--decode-seed", "4")
    assert r.returncode == 0, r.stderr
    r = cli("grid", "runs/demo.yaml", "--dry-run", "eval.schemes=[majority@8, asc:1@8]")
    assert r.returncode == 2 and "weights votes by ranker scores: add a `ranker:` section" in r.stderr, r.stderr
    r = cli("grid", "runs/demo.yaml", "--dry-run", "decode.early_stop=true")
    assert r.returncode == 2 and "every sampled scheme must be esc[:window] without @k; 'majority@8'" in r.stderr, r.stderr
    r = cli("grid", "runs/demo.yaml", "--dry-run", "decode.early_stop=true", "decode.k=8", "eval.schemes=[esc:2, esc:4]")
    assert r.returncode == 2 and "same window" in r.stderr, r.stderr
    r = cli("grid", "runs/demo.yaml", "--dry-run", "eval.schemes=[greedy, weighted]")
    assert r.returncode == 2 and "say how many, with decode.k (--k) or weighted@K" in r.stderr, r.stderr


def test_diagnose_two_runs_by_subject(tmp_path: Path) -> None:
    """`distillbench diagnose`: each run's solved set, the intersection and IoU, per subject."""
    from harness.evaluate import read_predictions
    from leaderboard.data import solved_overlap

    a = predictions(tmp_path / "a", skill=0.5, seed=1)
    b = predictions(tmp_path / "b", skill=0.5, seed=2)
    r = cli("diagnose", str(a), str(b), "--store", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    # the same numbers as the pure function on the greedy chains (sample 0 at T 0)
    def greedy_right(folder):
        p = read_predictions(folder)
        return {c.example_id: c.answer is not None and float(eval_frac(c.answer)) == float(c.example_id.split("-")[1]) for c in p.chains if c.meta["temperature"] == 0}

    rows = solved_overlap(greedy_right(a), greedy_right(b), {f"math-{i}": SUBJECTS[i % 2] for i in range(20)})
    lines = [line for line in r.stdout.splitlines() if "│" in line]
    for o in rows:
        line = next(x for x in lines if x.split("│")[1].strip() == o.group)
        assert [c.strip() for c in line.split("│")[2:7]] == [str(o.examples), str(o.solved_a), str(o.solved_b), str(o.both), f"{o.iou:.3f}"]
    assert [o.group for o in rows] == ["Algebra", "Geometry", "overall"] and rows[-1].examples == 20
    r = cli("diagnose", str(a), str(b), "--by", "", "--store", str(tmp_path / "s"))
    assert r.returncode == 0 and "Algebra" not in r.stdout and "overall" in r.stdout


def eval_frac(answer: str) -> float:
    """The test fixture's answer spellings (i, i.0, \\frac{2i}{2}) as a number, without eval."""
    if answer.startswith("\\frac{"):
        num, den = answer[len("\\frac{"):-1].split("}{")
        return int(num) / int(den)
    return float(answer)


def test_aggregate_re_extract_reads_answers_again(tmp_path: Path) -> None:
    """A run graded by an older extraction (answer None where no \\boxed{} was found) re-scored
    with --re-extract reads the answers with the task's current extraction."""
    examples = [Example(f"math-{i}", "", str(i)) for i in range(4)]
    chains = [Chain(ex.id, "student:x", f"So we get $$x = {ex.id[-1]}$$", None, n_tokens=5, meta={"temperature": 0.0, "sample": 0})
              for ex in examples]
    write_predictions(tmp_path / "p", {"name": "math500", "options": {}, "version": "1", "prompt_version": "1"}, examples, chains)
    args = ("aggregate", str(tmp_path / "p"), "--schemes", "greedy", "--no-curves", "--store", str(tmp_path / "s"))
    before, after = cli(*args), cli(*args, "--re-extract")
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    def accuracy(out: str) -> str:
        return out.split("greedy", 1)[1].split("\n")[0].split("\u2502")[1].strip()

    assert accuracy(before.stdout) == "0.0" and accuracy(after.stdout) == "100.0"
