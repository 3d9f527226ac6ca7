"""Same machine, same code, same spec: a cell is reproducible bit for bit, across processes.

One small cell is trained and decoded twice, each time in a fresh Python process with its own
store, and everything it produced is compared exactly: the tiny model's initial weights, the
trained checkpoint's weights, every chain decoded on valid and test (text, answer, log-probability)
and every metric logged to MLflow (training curves included; only wall-clock timings differ).
What varies across machines is the subject of README: Reproducibility.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = {
    "name": "repro",
    "task": {"name": "arith", "n_train": 160, "n_valid": 16, "n_test": 24},
    "teacher": {"name": "oracle", "k": 1},
    "method": {"name": "dss"},  # two passes per step, the most arithmetic of the demo's methods
    "student": {"model": "tiny", "family": "llama", "tiny": {"vocab_size": 300}},
    "train": {"steps": 6, "batch_size": 8, "lr": 3.0e-3, "eval_every": 3, "log_every": 1},
    "decode": {"max_new_tokens": 6, "temperature": 0.7},
    "eval": {"schemes": ["greedy", "majority@4"], "untrained": True, "bootstrap": 200},
    "seed": 1,
}
# wall-clock measurements: the only numbers allowed to differ between two runs
TIMINGS = ("train/seconds", "train/step_seconds")  # and every time/<stage>: wall clocks


def run_in_fresh_process(spec: Path, store: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DISTILLBENCH_HOME": str(store)}
    code = "from harness.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "run", str(spec), "--store", str(store), "-q"], cwd=store.parent, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def tensors(folder: Path) -> dict[str, bytes]:
    from safetensors.torch import load_file

    out: dict[str, bytes] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v.numpy().tobytes() for k, v in load_file(str(f)).items()})
    assert out, f"no weights in {folder}"
    return out


def chains(store: Path) -> dict[str, list[dict]]:
    """Every predictions folder's chains, by folder key, without the run id in `source`."""
    out = {}
    for d in sorted((store / "predictions").iterdir()):
        rows = [json.loads(x) for x in (d / "chains.jsonl").read_text().splitlines()]
        out[d.name] = [{**r, "source": r["source"].split(":")[0]} for r in rows]
    return out


def metrics(store: Path) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    from harness.store import Store
    from leaderboard.data import load_cells

    uri = Store(store).tracking_uri
    [cell] = load_cells(uri, "repro")
    client = MlflowClient(uri)
    run = client.get_run(cell.run_id)
    return {k: [(m.step, m.value) for m in client.get_metric_history(cell.run_id, k)] for k in sorted(run.data.metrics) if k not in TIMINGS and not k.startswith("time/")}


@pytest.mark.slow
def test_a_cell_is_bit_for_bit_reproducible_in_a_new_process(tmp_path):
    spec = tmp_path / "repro.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    a, b = tmp_path / "a" / "store", tmp_path / "b" / "store"
    for store in (a, b):
        store.parent.mkdir()
        run_in_fresh_process(spec, store)

    # the same cache keys, hence the same folders, in both stores
    for kind in ("models", "checkpoints", "predictions", "banks"):
        assert sorted(p.name for p in (a / kind).iterdir()) == sorted(p.name for p in (b / kind).iterdir()), kind
    [model] = list((a / "models").iterdir())
    assert tensors(model) == tensors(b / "models" / model.name)  # initial weights
    [ckpt] = [p for p in (a / "checkpoints").iterdir() if not p.name.startswith(".")]
    assert tensors(ckpt / "best") == tensors(b / "checkpoints" / ckpt.name / "best")  # trained weights
    ca, cb = chains(a), chains(b)
    assert len(ca) == 3 and ca == cb  # untrained, valid and test: texts, answers, log-probabilities, token counts
    ma, mb = metrics(a), metrics(b)
    assert {"train/loss", "valid", "valid/acc/greedy", "test/acc/majority_k4", "untrained/acc/greedy"} <= set(ma)
    assert ma == mb  # every logged value at every step, exactly
