"""QCRD (methods/qcrd.py): the loss against hand-computed values, the snapshot queue, resume after a
kill, the reduction to DSS, the cheap scoring path against the plain one, and the data it reads."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from harness.student import Student
from harness.teacher import oracle_chains, split_bank
from harness.training import TrainConfig, TrainContext
from harness.types import Chain
from methods import dss, qcrd
from methods.qcrd import QCRDConfig, SnapshotQueue, a3_at, contrastive_loss, judge_loss, pick

T = torch.tensor
B = torch.tensor([[True, True]])


# ---------------------------------------------------------------- the loss, by hand


def test_pick_per_scheme():
    v = T([[1.0, 2.0, 9.0], [4.0, 3.0, 0.0]])
    mask = T([[True, True, False], [True, True, True]])
    assert pick("minmax", v, mask, positive=True).tolist() == [0, 2]
    assert pick("minmax", v, mask, positive=False).tolist() == [1, 0]  # the masked 9.0 is never taken
    assert pick("maxmin", v, mask, positive=True).tolist() == [1, 0]
    assert pick("maxmin", v, mask, positive=False).tolist() == [0, 2]
    g = torch.Generator().manual_seed(0)
    draws = {tuple(pick("sampling", v, mask, True, g).tolist()) for _ in range(200)}
    assert {d[0] for d in draws} == {0, 1} and {d[1] for d in draws} == {0, 1, 2}


def test_contrastive_loss_minmax_by_hand():
    l_pos, s_pos = T([[1.0, 2.0]]), T([[0.8, 0.6]])
    s_neg = T([[0.5, 0.25]])
    # the max negative (4.0) is beyond the margin: min(4 - 3, 0) = 0, only the positive term
    assert contrastive_loss(l_pos, B, T([[0.5, 4.0]]), B, s_pos, s_neg).item() == pytest.approx(0.8 * 1.0)
    # max negative 2.0: l~ = -1, weight 1 - 0.25 -> 0.8 - 0.2 * 0.75 * (-1) = 0.95
    assert contrastive_loss(l_pos, B, T([[0.5, 2.0]]), B, s_pos, s_neg).item() == pytest.approx(0.95)
    # beta and delta are the arguments'
    assert contrastive_loss(l_pos, B, T([[0.5, 2.0]]), B, s_pos, s_neg, beta=1.0, delta=2.5).item() == pytest.approx(0.8 + 0.75 * 0.5)


def test_contrastive_loss_other_schemes_by_hand():
    l_pos, s_pos = T([[1.0, 2.0]]), T([[0.8, 0.6]])
    l_neg, s_neg = T([[0.5, 2.0]]), T([[0.5, 0.25]])
    # maxmin: the max positive (2.0, s 0.6), the min negative (0.5 -> l~ -2.5, weight 1 - 0.5)
    assert contrastive_loss(l_pos, B, l_neg, B, s_pos, s_neg, "maxmin").item() == pytest.approx(0.6 * 2.0 + 0.2 * 0.5 * 2.5)
    # mean: plain means, no quality weights: 1.5 - 0.2 * mean(-2.5, -1)
    assert contrastive_loss(l_pos, B, l_neg, B, s_pos, s_neg, "mean").item() == pytest.approx(1.5 + 0.2 * 1.75)
    # wmean: means of s * l and (1 - s) * l~
    wmean = (0.8 * 1 + 0.6 * 2) / 2 + 0.2 * (0.5 * 2.5 + 0.75 * 1.0) / 2
    assert contrastive_loss(l_pos, B, l_neg, B, s_pos, s_neg, "wmean").item() == pytest.approx(wmean)
    # sampling with given picks is the picked pair's minmax-form term
    picked = contrastive_loss(l_pos, B, l_neg, B, s_pos, s_neg, "sampling", pos_pick=T([1]), neg_pick=T([1]))
    assert picked.item() == pytest.approx(0.6 * 2.0 + 0.2 * 0.75 * 1.0)


def test_contrastive_loss_masks_rows_and_missing_negatives():
    l_pos = T([[1.0, 0.0], [3.0, 0.0], [7.0, 7.0]])
    pos_mask = T([[True, False], [True, False], [False, False]])  # the third example has no positive
    l_neg = T([[2.0], [0.0]] + [[1.0]])
    neg_mask = T([[True], [False], [True]])  # the second has no negative
    ones, zeros = torch.ones(3, 2), torch.zeros(3, 1)
    # mean over the two rows with a positive: (1 + 0.2 * 1) and 3
    assert contrastive_loss(l_pos, pos_mask, l_neg, neg_mask, ones, zeros).item() == pytest.approx((1.2 + 3.0) / 2)
    # no negatives at all (k = 0): the positive term alone
    no_neg = contrastive_loss(l_pos, pos_mask, torch.zeros(3, 0), torch.zeros(3, 0, dtype=torch.bool), ones, torch.zeros(3, 0))
    assert no_neg.item() == pytest.approx(2.0)


def test_quality_weights_are_constants():
    l_pos = T([[1.0, 2.0]], requires_grad=True)
    s_pos = T([[0.8, 0.6]], requires_grad=True)
    contrastive_loss(l_pos, B, T([[2.0, 2.5]]), B, s_pos, T([[0.1, 0.2]])).backward()
    assert s_pos.grad is None
    assert l_pos.grad.tolist() == [[pytest.approx(0.8), 0.0]]  # only the picked positive, weighted


def test_judge_loss_eq2_by_hand():
    s_pos, s_neg = T([[0.9, 0.8], [0.7, 0.0]]), T([[0.1], [0.3]])
    pos_mask = T([[True, True], [True, False]])
    neg_mask = T([[True], [True]])
    row0 = 0.1 - math.log(math.exp(0.9) + math.exp(0.8))
    row1 = 0.3 - 0.7
    assert judge_loss(s_pos, pos_mask, s_neg, neg_mask).item() == pytest.approx((row0 + row1) / 2)
    # a row without negatives does not count
    assert judge_loss(s_pos, pos_mask, s_neg, T([[True], [False]])).item() == pytest.approx(row0)
    assert judge_loss(s_pos, pos_mask, s_neg, T([[False], [False]])).item() == 0.0


def test_a3_decays_once_per_iteration():
    assert [a3_at(s, 0.5, 0.9, 250) for s in (1, 250, 251, 500, 501, 10_000)] == pytest.approx(
        [0.5, 0.5, 0.45, 0.45, 0.405, 0.5 * 0.9**39]
    )


def test_config_checks():
    for bad in ({"scheme": "minmin"}, {"negatives": "llm"}, {"k": -1}, {"m": 0}, {"temperature": 0.0, "k": 2}, {"beta": -1}, {"a3_decay": 0}):
        with pytest.raises(ValueError):
            QCRDConfig(**bad)


# ---------------------------------------------------------------- the snapshot queue


@pytest.mark.parametrize("on_disk", [False, True])
def test_queue_keeps_exactly_j_and_uses_the_oldest(tmp_path, on_disk):
    q = SnapshotQueue(3, tmp_path / "snaps", on_disk)
    for step in range(0, 200, 10):
        q.push(step, {"w": torch.full((4,), float(step)), "b": torch.zeros(2)})
        q.saved()  # as after a saved state
        assert len(q.steps) == min(3, step // 10 + 1)
        if on_disk:
            assert len(q.files()) == len(q.steps)
        else:
            assert len(q.memory) == len(q.steps)
    assert q.steps == [170, 180, 190]
    assert q.oldest()["w"].tolist() == [170.0] * 4
    # the state round-trips, and a fresh queue restored from it holds the same snapshots
    again = SnapshotQueue(3, tmp_path / "snaps", on_disk)
    again.load_state_dict(q.state_dict())
    assert again.steps == q.steps and again.oldest()["w"].tolist() == [170.0] * 4


def test_disk_queue_keeps_an_evicted_file_until_the_next_save(tmp_path):
    q = SnapshotQueue(1, tmp_path, on_disk=True)
    q.push(0, {"w": torch.zeros(1)})
    state = q.state_dict()
    q.push(5, {"w": torch.ones(1)})  # evicts 0, but the saved state still names it
    assert len(q.files()) == 2
    resumed = SnapshotQueue(1, tmp_path, on_disk=True)
    resumed.load_state_dict(state)  # a resume from that state: the later file goes, step 0 is there
    assert [f.name for f in resumed.files()] == ["snapshot-0000000.safetensors"]
    assert resumed.oldest()["w"].tolist() == [0.0]
    q2 = SnapshotQueue(1, tmp_path / "b", on_disk=True)
    q2.push(0, {"w": torch.zeros(1)})
    q2.push(5, {"w": torch.ones(1)})
    q2.saved()
    assert [f.name for f in q2.files()] == ["snapshot-0000005.safetensors"]


def test_negatives_come_from_the_oldest_snapshot_and_the_student_is_left_as_it_was(student, arith, tmp_path):
    """Greedy sampling (T 0) makes the generator visible: an iteration's negatives are what the
    queue's oldest snapshot writes, not the current student; afterwards the student's weights are
    its own again and a snapshot of them has joined the queue."""
    from harness.decoding import GREEDY, HFDecoder

    data = batch_items(arith, n=8)
    tcfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, eval_every=3, seed=0)
    cfg = QCRDConfig(j=2, temperature=0.0, negative_max_new_tokens=5, judge=False)
    comp = qcrd.QCRDCompanion(cfg, data, tcfg, None, tmp_path, student)
    comp.load_state_dict(None)
    old = {n: p.detach().clone() for n, p in student.trainable_parameters().items()}
    comp.queue.push(-1, old)  # as if taken an iteration ago
    with torch.no_grad():  # the student has moved on since
        for p in student.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.5)
    now = {n: p.detach().clone() for n, p in student.trainable_parameters().items()}
    comp.step_begin(student, 1, 0)
    prompts = ["explain: " + x for x in comp.pool_keys]
    want_old = [g[0].text for g in HFDecoder(student_with(student, old)).sample(prompts, dataclasses.replace(GREEDY, max_new_tokens=5))]
    want_now = [g[0].text for g in HFDecoder(student_with(student, now)).sample(prompts, dataclasses.replace(GREEDY, max_new_tokens=5))]
    assert [p[0] for p in comp.pool] == want_old != want_now
    assert all(torch.equal(p, now[n]) for n, p in student.trainable_parameters().items())
    assert comp.queue.steps == [-1, 0] and torch.equal(next(iter(comp.queue.memory[0].values())), next(iter(now.values())))
    # the next iteration's generator is the oldest of the two, still the one from before
    comp.step_begin(student, 4, 3)
    assert comp.queue.steps == [0, 3] and comp.pool_iteration == 1


def student_with(student, weights):
    """A copy of `student` holding `weights`."""
    import copy

    other = copy.deepcopy(student)
    with torch.no_grad():
        for n, p in other.trainable_parameters().items():
            p.copy_(weights[n])
    return other


# ---------------------------------------------------------------- data


def chain(ex_id: str, sample: int, answer: str, correct: bool, **meta) -> Chain:
    return Chain(ex_id, "teacher:t", f"r{sample} so {answer}", answer, correct, meta={"sample": sample, **meta}, rationale=f"r{sample} so {answer}")


def ctx_for(task, train, pos, neg, tmp_path, cfg=None, student=None, log=None):
    def by_id(chains):
        out: dict = {}
        for c in chains:
            out.setdefault(c.example_id, []).append(c)
        return out

    return TrainContext(
        student=student, task=task, train=train, positives=by_id(pos), negatives=by_id(neg),
        config=cfg or TrainConfig(steps=4, batch_size=4, lr=3e-3, eval_every=2, log_every=1, seed=0),
        evaluate=lambda s: 0.0, out_dir=tmp_path, log=log or (lambda m, s: None), show_progress=False,
    )


def test_positives_are_the_majority_of_the_first_m_samples(arith, tmp_path):
    ex = arith.load("train")[0]
    # a majority-labelled bank of 5: answers 7 7 8 8 8 -> over 5 samples "8" wins ...
    chains = [chain(ex.id, i, a, a == "8", majority="8") for i, a in enumerate(["7", "7", "8", "8", "8"])]
    pos, neg = [c for c in chains if c.correct], [c for c in chains if not c.correct]
    p5, n5, _ = qcrd.teacher_sets(ctx_for(arith, [ex], pos, neg, tmp_path), 5)
    assert p5[ex.id] == ["r2 so 8", "r3 so 8", "r4 so 8"] and n5[ex.id] == ["r0 so 7", "r1 so 7"]
    # ... but the first 3 samples alone vote "7": m = 3 is what sampling 3 would have given
    p3, n3, _ = qcrd.teacher_sets(ctx_for(arith, [ex], pos, neg, tmp_path), 3)
    assert p3[ex.id] == ["r0 so 7", "r1 so 7"] and n3[ex.id] == ["r2 so 8"]
    # m = 1 ("w/o ED"): one chain, its own majority
    p1, n1, _ = qcrd.teacher_sets(ctx_for(arith, [ex], pos, neg, tmp_path), 1)
    assert p1[ex.id] == ["r0 so 7"] and n1[ex.id] == []


def test_a_one_chain_bank_runs_and_counts_examples_without_negatives(student, arith, tmp_path):
    train = arith.load("train")[:8]
    pos, neg = split_bank(oracle_chains(arith, train, k=1, wrong_rate=0.0, seed=0))
    logged: dict = {}
    ctx = ctx_for(arith, train, pos, neg, tmp_path, student=student, log=lambda m, s: logged.update(m))
    qcrd.train(ctx, QCRDConfig(judge_pretrain_steps=2, iteration_steps=2, temperature=1.5, negative_max_new_tokens=8))
    assert logged["data/without_teacher_negative"] == 8
    assert logged["data/judge_augmented_negatives"] == 8  # the judge still pretrains, on corrupted copies
    assert math.isfinite(logged["train/loss"]) and "train/qcrd/l_neg" in logged  # self-sampled negatives


def test_corrupt_changes_at_least_one_word():
    import random

    rng = random.Random(0)
    for text in ["3 + 4 = 7", "one", "a b c d e f g h"]:
        out = qcrd.corrupt(text, ["x", "y"], rng)
        assert out != text and len(out.split()) == len(text.split())


# ---------------------------------------------------------------- against the plain forms


def batch_items(arith, n=4, negatives=True):
    train = arith.load("train")[:n]
    out = []
    for i, ex in enumerate(train):
        rationale = f"{ex.question} is computed"
        out.append({
            "input": arith.student_input(ex), "label": ex.answer,
            "positives": [rationale, rationale + " step"][: 1 + i % 2],
            "teacher_negatives": ([f"wrong {i}", "not it at all"][: 1 + (i + 1) % 2] if negatives else []),
        })
    return out


class _Comp:
    """A stand-in companion: the teacher's negatives, a fixed step."""

    def __init__(self, cfg, head=None):
        self.cfg, self.head, self.step, self.cursor, self.sample_seconds, self.iteration_steps = cfg, head, 1, 0, 0.0, 10

    def negatives_for(self, batch):
        return [b["teacher_negatives"][: self.cfg.k] for b in batch]


def test_without_negatives_and_judge_qcrd_is_dss(student, arith):
    """k 0 and no judge: L = a1 L_pred + a2 min_j l(x, r_pos_j); with one positive per example
    (m = 1) that is DSS's loss with alpha 0.5 exactly."""
    items = [dict(it, positives=it["positives"][:1]) for it in batch_items(arith)]
    cfg = QCRDConfig(k=0, judge=False)
    got, _ = qcrd.loss_fn(cfg, _Comp(cfg), "sequence", 0)(student, items)
    dss_items = [{"input": it["input"], "label": it["label"], "rationale": it["positives"][0]} for it in items]
    want, _ = dss.loss_fn(dss.DSSConfig(), "sequence")(student, dss_items)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("judge", [False, True])
def test_picking_then_rescoring_gives_the_plain_gradient(student, arith, judge):
    """The cheap path (score all without a graph, rescore the picked with one) against the plain
    one (every candidate with a graph, then the loss): the same loss and the same gradients."""
    items = batch_items(arith)
    cfg = QCRDConfig(k=2, judge=judge)
    head = qcrd.new_head(student, cfg, 0) if judge else None
    student.model.eval()  # no dropout: both paths must see the same network

    def grads(c):
        student.model.zero_grad()
        if head is not None:
            head.zero_grad()
        value, _ = qcrd.loss_fn(c, _Comp(c, head), "sequence", 0)(student, items)
        value.backward()
        return value.item(), {n: p.grad.clone() for n, p in student.model.named_parameters() if p.grad is not None}

    cheap_value, cheap = grads(cfg)

    # the plain form: l for every candidate with a graph, then contrastive_loss / judge_loss
    student.model.zero_grad()
    if head is not None:
        head.zero_grad()
    pred = student.score(["predict: " + it["input"] for it in items], [it["label"] for it in items]).sequence_nll().mean()
    pos_groups = [it["positives"] for it in items]
    neg_groups = [it["teacher_negatives"][:2] for it in items]
    xs = ["explain: " + it["input"] for it in items]
    flat_x = [x for x, g in zip(xs, pos_groups) for _ in g] + [x for x, g in zip(xs, neg_groups) for _ in g]
    flat_r = [r for g in pos_groups for r in g] + [r for g in neg_groups for r in g]
    values = student.score(flat_x, flat_r).sequence_nll()
    n_pos = sum(map(len, pos_groups))
    l_pos, pm = qcrd.padded(pos_groups, values[:n_pos], 2)
    l_neg, nm = qcrd.padded(neg_groups, values[n_pos:], 2)
    if judge:
        raw = [it["input"] for it, g in zip(items, pos_groups) for _ in g] + [it["input"] for it, g in zip(items, neg_groups) for _ in g]
        if student.family == "t5":  # the encoder over "x \n r"
            s = qcrd.judge_scores(student, head, raw, flat_r)
        else:  # a causal student's states over the rationale task's sequence
            sc = student.score_encoded(student.encode(flat_x), list(range(len(flat_x))), flat_r, hidden=True)
            s = head(sc.hidden, sc.hidden_mask)
        s_pos, _ = qcrd.padded(pos_groups, s[:n_pos], 2)
        s_neg, _ = qcrd.padded(neg_groups, s[n_pos:], 2)
        l_d = judge_loss(s_pos, pm, s_neg, nm)
    else:
        s_pos, s_neg, l_d = torch.ones_like(l_pos), torch.zeros_like(l_neg), 0.0
    plain = 0.5 * pred + 0.5 * contrastive_loss(l_pos, pm, l_neg, nm, s_pos, s_neg) + (0.5 * l_d if judge else 0.0)
    plain.backward()
    assert cheap_value == pytest.approx(plain.item(), rel=1e-5)
    for n, p in student.model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(cheap[n], p.grad, atol=1e-6, rtol=1e-4), n


@pytest.mark.parametrize("features", ["encoder", "reuse"])
def test_the_judge_trains_the_students_encoder_unless_it_reuses_detached_states(student, arith, features):
    """L_D alone (a1 = a2 = 0): with `encoder` features its gradient reaches the student (T5's
    encoder, a causal student's transformer), with `reuse` only the judge's head."""
    items = batch_items(arith)
    cfg = QCRDConfig(k=1, a1=0.0, a2=0.0, a3=1.0, judge_features=features)
    head = qcrd.new_head(student, cfg, 0)
    value, _ = qcrd.loss_fn(cfg, _Comp(cfg, head), "sequence", 0)(student, items)
    value.backward()
    assert value.item() != 0.0 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    reached = [n for n, p in student.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert bool(reached) == (features == "encoder")


# ---------------------------------------------------------------- resume after a kill


class Killed(Exception):
    pass


def run_qcrd(tiny_path, arith, out, kill_at=None, losses=None):
    """8 steps of QCRD, a state saved every 2 (the last weights kept), an iteration every 3 steps, j 1 on
    disk (snapshots at steps 0, 3, 6; each push evicts the previous one); `kill_at` raises out
    of the loop right after that step trains, before its state could be saved."""
    student = Student.load(tiny_path, seed=0)
    train = arith.load("train")[:16]
    pos, neg = split_bank(oracle_chains(arith, train, k=2, wrong_rate=0.5, seed=0))
    def log(metrics, step):
        if "train/loss" in metrics:
            if losses is not None:
                losses[step] = metrics["train/loss"]
            if step == kill_at:
                raise Killed

    ctx = ctx_for(arith, train, pos, neg, out, TrainConfig(steps=8, batch_size=4, lr=3e-3, eval_every=2, log_every=1, seed=1), student, log)
    ctx.evaluate = None  # no selection: the last weights are kept
    cfg = QCRDConfig(j=1, iteration_steps=3, snapshot_memory_mb=0.0, judge_pretrain_steps=2, negative_max_new_tokens=8)
    qcrd.train(ctx, cfg)
    return {n: p.detach().clone() for n, p in student.trainable_parameters().items()}


def test_kill_and_resume_equals_the_uninterrupted_run(tiny_dir, arith, tmp_path):
    full_losses: dict = {}
    full = run_qcrd(tiny_dir[1], arith, tmp_path / "full", losses=full_losses)
    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        run_qcrd(tiny_dir[1], arith, out, kill_at=7)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["companion"]["queue"]["steps"] == [3]
    # the snapshot of step 6 was pushed after that save; step 3's, evicted by it, is still there
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["snapshot-0000003.safetensors", "snapshot-0000006.safetensors"]
    resumed_losses: dict = {}
    resumed = run_qcrd(tiny_dir[1], arith, out, losses=resumed_losses)
    # steps 1-6 replayed from the log, 7 and 8 trained again: every loss as in the full run
    assert sorted(resumed_losses) == list(range(1, 9))
    assert resumed_losses == pytest.approx(full_losses, rel=1e-5)
    assert all(torch.allclose(full[n], resumed[n], atol=1e-6) for n in full)
    assert not (out / "snapshots").exists()  # the checkpoint is the student alone


def test_fixed_generator_is_the_dss_model(student, tiny_dir, arith, tmp_path):
    """negatives: fixed samples from the DSS model the pipeline hands over (MethodDef.stages_of)."""
    assert qcrd.METHOD.stages_of(QCRDConfig(negatives="fixed")) == ("dss",)
    assert qcrd.METHOD.stages_of(QCRDConfig()) == ()
    train = arith.load("train")[:8]
    pos, neg = split_bank(oracle_chains(arith, train, k=2, wrong_rate=0.5, seed=0))
    ctx = ctx_for(arith, train, pos, neg, tmp_path, student=student)
    cfg = QCRDConfig(negatives="fixed", judge=False, negative_max_new_tokens=6)
    with pytest.raises(Exception, match="DSS model"):
        qcrd.train(ctx, cfg)
    Student.load(tiny_dir[1]).save(tmp_path / "dss")
    ctx = dataclasses.replace(ctx, models={"dss": tmp_path / "dss"}, out_dir=tmp_path / "run")
    assert math.isfinite(qcrd.train(ctx, cfg).steps)
