import pytest
import torch

from harness.errors import UserError
from harness.student import Student
from harness.training import TrainConfig, fit, lr_lambda, micro_batches
from methods.common import item_nll

finetune_loss = item_nll()


def test_linear_schedule_with_warmup():
    f = lr_lambda(TrainConfig(steps=10, warmup_steps=2, schedule="linear"))
    assert [round(f(s), 3) for s in range(0, 11, 2)] == [0.5, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_cosine_and_constant_schedules():
    f = lr_lambda(TrainConfig(steps=10, schedule="cosine"))
    assert f(0) == pytest.approx(1.0) and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(0.0)
    assert lr_lambda(TrainConfig(steps=10, schedule="constant"))(7) == 1.0


def test_micro_batches_cover_each_epoch_once():
    items = [{"i": i} for i in range(10)]
    gen = micro_batches(items, 3, seed=0)
    epoch = [next(gen) for _ in range(3)]  # 9 of 10 items: the ragged tail is dropped
    seen = [b["i"] for batch in epoch for b in batch]
    assert len(seen) == len(set(seen)) == 9
    assert [b["i"] for b in next(micro_batches(items, 3, seed=0))] == [b["i"] for b in epoch[0]]
    assert len(next(micro_batches(items[:2], 8, seed=0))) == 2  # fewer items than a batch


def test_fit_learns_and_keeps_the_best_valid_checkpoint(tiny_dir, tmp_path):
    student = Student.load(tiny_dir[1])
    items = [{"input": f"Calculate {i} + 1.", "target": str(i + 1)} for i in range(8)]
    scores = iter([0.2, 0.9, 0.4])  # the 2nd evaluation is the best
    snapshots = []

    def evaluate(s):
        snapshots.append({k: v.clone() for k, v in s.model.state_dict().items()})
        return next(scores)

    logged = []
    first = finetune_loss(student, items)[0].item()
    res = fit(student, items, finetune_loss, TrainConfig(steps=30, batch_size=8, lr=3e-3, eval_every=10, log_every=5),
              evaluate, tmp_path, log=lambda m, s: logged.append((s, m)), show_progress=False)
    assert res.best_step == 20 and res.best_valid == 0.9 and res.curve == [(10, 0.2), (20, 0.9), (30, 0.4)]
    # the student is left at the best checkpoint, not the last step
    for k, v in student.model.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k
    assert (tmp_path / "best" / "config.json").exists() and not (tmp_path / "best.tmp").exists()
    losses = [m["train/loss"] for s, m in logged if "train/loss" in m]
    assert len(losses) == 6 and losses[-1] < first  # it learned something
    assert all("train/lr" in m for s, m in logged if "train/loss" in m)


def test_fit_rejects_empty_data(student, tmp_path):
    with pytest.raises(UserError, match="no training items"):
        fit(student, [], finetune_loss, TrainConfig(steps=1), lambda s: 0.0, tmp_path, show_progress=False)


# ---------------------------------------------------------------- budget, accumulation, logging

ITEMS = [{"input": f"Calculate {i} + {i % 7}.", "target": str(i + i % 7)} for i in range(16)]


def _params(student):
    return {k: v.detach().clone() for k, v in student.trainable_parameters().items()}


def test_grad_accumulation_equals_a_bigger_batch(tiny_dir, tmp_path):
    """batch 8 x 1 == batch 4 x 2: the same examples per step, the same loss and updates."""
    runs = []
    for batch, accum in ((8, 1), (4, 2)):
        student = Student.load(tiny_dir[1])  # tiny models have no dropout
        logged = []
        cfg = TrainConfig(steps=4, batch_size=batch, grad_accum=accum, lr=1e-3, log_every=1, eval_every=100)
        fit(student, ITEMS, finetune_loss, cfg, lambda s: 0.0, tmp_path / f"b{batch}", log=lambda m, s, out=logged: out.append((s, m)), show_progress=False)
        runs.append(([m["train/loss"] for _, m in logged if "train/loss" in m], _params(student)))
    (loss_a, w_a), (loss_b, w_b) = runs
    assert len(loss_a) == 4 and loss_a == pytest.approx(loss_b, rel=1e-5)
    for k in w_a:
        assert torch.allclose(w_a[k], w_b[k], atol=1e-5), k


def test_epochs_budget_and_step_logging(tmp_path, student):
    with pytest.raises(ValueError, match="exactly one"):
        TrainConfig(steps=5, epochs=1)
    assert TrainConfig().steps == 1000
    cfg = TrainConfig(epochs=1.5, batch_size=4, grad_accum=2, lr=1e-3, log_every=2, eval_every=100)
    assert cfg.total_steps(42) == 8  # 10 micro-batches per epoch (ragged tail dropped) x 1.5 = 15, / 2 -> 8
    logged = []
    res = fit(student, ITEMS, finetune_loss, cfg, lambda s: 0.0, tmp_path, log=lambda m, s: logged.append((s, m)), show_progress=False)
    assert res.steps == 3 and res.curve == [(3, 0.0)]  # 16 items: 4 per epoch x 1.5 = 6 micro = 3 steps
    rows = [(s, m) for s, m in logged if "train/loss" in m]
    assert [s for s, _ in rows] == [2, 3]
    assert all(m["train/step_seconds"] > 0 for _, m in rows)
    assert logged[0] == (0, {"train/bf16": 0.0, "train/total_steps": 3.0})  # never bf16 on CPU


def test_bf16_only_on_cuda():
    from harness.training import use_bf16

    cpu = torch.device("cpu")
    assert not use_bf16("auto", cpu) and not use_bf16(True, cpu) and not use_bf16(False, torch.device("cuda"))


def test_train_spec_budget():
    from harness.config import TrainSpec

    assert TrainSpec().steps == 1000 and TrainSpec(epochs=2).steps is None
    with pytest.raises(ValueError, match="exactly one"):
        TrainSpec(steps=10, epochs=2)
    assert TrainSpec(bf16="auto").bf16 == "auto" and TrainSpec(bf16=True).bf16 is True


def test_micro_batches_resume_at_any_position():
    items = [{"i": i} for i in range(10)]
    full = micro_batches(items, 3, seed=4)
    stream = [next(full) for _ in range(8)]
    for start in (0, 2, 3, 7):
        gen = micro_batches(items, 3, seed=4, start=start)
        assert [next(gen) for _ in range(8 - start)] == stream[start:]


# ---------------------------------------------------------------- resume after a kill

RESUME_CODE = """
import json, sys, time
import torch
from harness.student import Student
from harness.training import TrainConfig, fit
from methods.common import item_nll
loss = item_nll()

def train(path, out, log_path, lora, sleep, calls=None):
    items = [{"input": f"Calculate {i} + {i % 7}.", "target": str(i + i % 7)} for i in range(24)]
    valid = [{"input": f"Calculate {i} + 2.", "target": str(i + 2)} for i in range(4)]

    def evaluate(s):
        time.sleep(sleep)  # slow evaluations leave time to kill the run mid-way
        with torch.no_grad():
            return -loss(s, valid)[0].item()

    def train_loss(s, batch):
        if calls is not None:
            calls.append(len(batch))
        return loss(s, batch)

    student = Student.load(path, lora={"r": 4, "dropout": 0.2} if lora else None, seed=3)
    cfg = TrainConfig(steps=24, batch_size=4, grad_accum=2, lr=3e-3, warmup_steps=3, eval_every=4, log_every=3, seed=5)
    with open(log_path, "a") as f:
        fit(student, items, train_loss, cfg, evaluate, out, log=lambda m, s: f.write(json.dumps([s, m]) + "\\n"), show_progress=False)
    return {k: v.detach().clone() for k, v in student.trainable_parameters().items()}

if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", float(sys.argv[5]))
"""


def test_resume_after_kill_ends_like_an_uninterrupted_run(tiny_dir, tmp_path):
    """SIGKILL a training process once its first `last` state exists, restart it, and compare
    with an uninterrupted run: the same final weights and log, no step trained (logged) twice.
    The Llama run trains a LoRA adapter with dropout, so the RNG states must be restored too;
    the T5 run is a full fine-tune (every weight and its AdamW moments in the state)."""
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    family, path = tiny_dir
    lora = family == "llama"
    script = tmp_path / "train.py"
    script.write_text(RESUME_CODE)
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "resumed"
    killed = subprocess.Popen(
        [sys.executable, str(script), str(path), str(out), str(tmp_path / "killed.log"), "1" if lora else "0", "0.5"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE, text=True,
    )
    ns: dict = {}
    exec(RESUME_CODE, ns)
    w_full = ns["train"](path, tmp_path / "full", tmp_path / "full.log", lora, 0.0)  # meanwhile, uninterrupted

    state = out / "last.pt"
    deadline = time.time() + 120
    while not state.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    killed.kill()
    killed.wait()
    assert killed.returncode == -9, killed.stderr.read()  # killed mid-way, not finished
    saved_step = torch.load(state, weights_only=True)["step"]
    assert 4 <= saved_step < 24

    calls: list[int] = []
    w_resumed = ns["train"](path, out, tmp_path / "resumed.log", lora, 0.0, calls)
    assert len(calls) == 2 * (24 - saved_step)  # only the steps after the saved state train again

    def rows(name):
        return [tuple(json.loads(line)) for line in (tmp_path / name).read_text().splitlines()]

    a, b = rows("full.log"), rows("resumed.log")
    # the restart replays the log up to the saved step, then logs each later step once
    steps = [s for s, m in b if "train/loss" in m]
    assert steps == sorted(set(steps)) == [3, 6, 9, 12, 15, 18, 21, 24]
    assert [s for s, _ in a] == [s for s, _ in b]
    for (_, ma), (_, mb) in zip(a, b, strict=True):
        assert ma.keys() == mb.keys()
        for k in ma:
            if k != "train/step_seconds":
                assert ma[k] == pytest.approx(mb[k], rel=1e-5, abs=1e-7), k
    assert w_full.keys() == w_resumed.keys()
    assert all(torch.allclose(w_full[k], w_resumed[k], atol=1e-6) for k in w_full)
    assert sorted(p.name for p in out.iterdir()) == ["best", "last.pt", "last.pt.sha256", "log.jsonl"]
