import pytest
import torch

from harness.errors import UserError
from harness.student import Student
from harness.training import TrainConfig, fit, lr_lambda, micro_batches
from methods.finetune import loss as finetune_loss


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
