"""The leaderboard's render time with 100 and 1,000 runs: first load vs cached, and how many MLflow
calls a render makes.

A scratch store gets N finished runs (methods x tasks x seeds, each with its test metrics, its
per-example tags over 500 test examples and the usual params), written with MLflow's batch API.
The app then renders in-process (streamlit.testing AppTest) twice: the first render reads MLflow
and computes the table (ties included), the second is served from Streamlit's cache. Every
MlflowClient call is counted during the renders: a render must search once per experiment page,
never once per run.

    python bench/leaderboard.py [--runs 100,1000] [--examples 500]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APP = str(Path(__file__).resolve().parent.parent / "leaderboard" / "app.py")
METHODS = ["finetune", "single_task", "dss", "mi", "qcrd", "mix", "ul", "nt", "nat", "nce"]
TASKS = ["svamp", "csqa", "anli", "esnli", "gsm8k"]


def fill(uri: str, n_runs: int, n_examples: int) -> None:
    """n_runs finished runs in one experiment, through log_batch (3 calls a run)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from harness.evaluate import encode_bits

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench")
    rnd = random.Random(0)
    now = int(time.time() * 1000)
    for i in range(n_runs):
        method, task, seed = METHODS[i % len(METHODS)], TASKS[(i // len(METHODS)) % len(TASKS)], i // (len(METHODS) * len(TASKS))
        skill = 0.3 + 0.05 * (i % len(METHODS))
        bits = [rnd.random() < skill for _ in range(n_examples)]
        acc = sum(bits) / n_examples
        run = client.create_run(exp, run_name=f"{method}-{task}-{seed}")
        tags = {"cell_hash": f"h{i}", "cell": f"method={method},task={task},seed={seed}", "task": task, "method": method, "student": "t5-base",
                "teacher_bank": "bank1", "task_version": "1", "prompt_version": "1", "grid": "bench", "test/ids": "ids",
                "test/correct/greedy": encode_bits(bits)}  # fmt: skip
        params = {"seed": seed, "method.name": method, "eval.schemes": "['greedy']", "train.steps": 1000, "train.batch_size": 8, "train.grad_accum": 1, "train.eval_every": 250}
        metrics = {"test/acc/greedy": acc, "test/lo/greedy": acc - 0.04, "test/hi/greedy": acc + 0.04, "train/seconds": 100.0 + i, "test/used/greedy": 1.0}
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.set_terminated(run.info.run_id, "FINISHED")


def counting() -> Counter:
    """Count every public MlflowClient method call from now on."""
    from mlflow.tracking import MlflowClient

    calls: Counter = Counter()
    for name in ("search_runs", "search_experiments", "get_run", "get_metric_history", "download_artifacts", "list_artifacts"):
        original = getattr(MlflowClient, name)

        def wrapped(self, *a, __name=name, __f=original, **k):
            calls[__name] += 1
            return __f(self, *a, **k)

        setattr(MlflowClient, name, wrapped)
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="100,1000")
    ap.add_argument("--examples", type=int, default=500)
    args = ap.parse_args()
    from streamlit.testing.v1 import AppTest

    from harness.tracking import _quiet_mlflow

    _quiet_mlflow()
    calls = counting()
    rows = []
    for n in [int(x) for x in args.runs.split(",")]:
        with tempfile.TemporaryDirectory() as d:
            uri = f"sqlite:///{d}/mlflow.db"
            t0 = time.perf_counter()
            fill(uri, n, args.examples)
            filled = time.perf_counter() - t0
            os.environ["DISTILLBENCH_TRACKING_URI"] = uri
            at = AppTest.from_file(APP, default_timeout=600)
            calls.clear()
            t0 = time.perf_counter()
            at.run()
            first = time.perf_counter() - t0
            first_calls = dict(calls)
            assert not at.exception, at.exception
            calls.clear()
            t0 = time.perf_counter()
            at.run()
            cached = time.perf_counter() - t0
            rows.append((n, filled, first, cached, first_calls, dict(calls)))
    print(f"leaderboard render, {args.examples} test examples per run, {os.cpu_count()} CPU cores (AppTest, in-process)")
    print("| runs | first render s | cached render s | first / cached | MLflow calls, first render | MLflow calls, cached render |")
    print("|---:|---:|---:|---:|---|---|")
    for n, _, first, cached, fc, cc in rows:
        fmt = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"  # noqa: E731
        print(f"| {n} | {first:.2f} | {cached:.3f} | **{first / cached:.1f}x** | {fmt(fc)} | {fmt(cc)} |")
    if len(rows) > 1:
        (n0, _, f0, _, _, _), (n1, _, f1, _, _, _) = rows[0], rows[-1]
        print(f"first render: {n1 / n0:.0f}x the runs cost {f1 / f0:.1f}x the time")


if __name__ == "__main__":
    main()
