"""Issue 11's fidelity points on the baselines: which examples DSS/MI train on, what their explain
target is, and both loss reductions against hand-computed values."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import torch

from harness.teacher import oracle_chains, released_chains, split_bank
from harness.training import TrainConfig, TrainContext
from harness.types import Chain
from methods import dss, mi
from methods.common import nll_loss, reduce_tokens
from methods.nt import nt_loss
from methods.ul import ul_loss, unlikelihood

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_dss = pytest.mark.skipif(not (DATA / "dss" / "datasets").is_dir(), reason=f"needs the DSS release at {DATA}/dss")


def context(task, train, chains, logged: dict) -> TrainContext:
    pos, neg = defaultdict(list), defaultdict(list)
    for c in chains:
        (pos if c.correct and c.answer is not None else neg)[c.example_id].append(c)
    return TrainContext(
        student=None,  # type: ignore[arg-type]  # items() never touches the student
        task=task,
        train=train,
        positives=pos,
        negatives=neg,
        config=TrainConfig(steps=1),
        evaluate=lambda s: 0.0,
        out_dir=Path("."),
        log=lambda metrics, step: logged.update(metrics),
    )


# --- which examples, which rationale ------------------------------------------------------------


@needs_dss
@pytest.mark.parametrize(
    ("task_name", "options", "n_train", "no_positive"),
    [("svamp", {"split_source": "dss"}, 702, 187), ("csqa", {}, 8773, 2173)],
)
def test_dss_trains_every_example_by_default_and_filters_on_request(task_name, options, n_train, no_positive, tmp_path):
    """The DSS reference trains all of train on both tasks (PaLM's rationale whether right or
    wrong); `rationale: positive_only` is the filtered form. Counts on the real DSS files, with the
    chains labelled as a grid labels them (the bank: the task's own equivalence)."""
    from harness.config import TeacherSpec
    from harness.store import Store
    from harness.teacher import build_bank
    from tasks import get_task

    task = get_task(task_name, data_dir=str(DATA), **options)
    train = task.load("train")
    bank, _ = build_bank(task, [*train, *task.load("valid")], TeacherSpec(name="dss"), Store(tmp_path))
    chains = list(bank.chains())
    assert len(train) == n_train

    logged: dict = {}
    every = dss.items(context(task, train, chains, logged), dss.DSSConfig())
    assert len(every) == n_train
    assert logged["data/examples"] == n_train and logged["data/train_examples"] == n_train
    assert logged["data/with_positive"] == n_train - no_positive
    assert logged["data/rationale_from_negative"] == no_positive  # one chain per example: its label
    assert [it["label"] for it in every] == [ex.answer for ex in train]  # predict: the gold label

    # the bank keeps each chain's split: the explain target is the rationale, never its statement
    by_id = {c.example_id: c for c in chains}
    stated = 0
    for ex, it in zip(train, every, strict=True):
        c = by_id[ex.id]
        assert it["rationale"] == (c.rationale.strip() or None)
        if c.statement:
            stated += 1
            assert c.text == f"{c.rationale} {c.statement}" and c.statement not in it["rationale"]
    assert stated > 0.95 * n_train

    logged = {}
    filtered = dss.items(context(task, train, chains, logged), dss.DSSConfig(rationale="positive_only"))
    assert len(filtered) == n_train - no_positive
    assert logged["data/dropped_no_positive"] == no_positive and logged["data/examples"] == n_train - no_positive
    # MI builds the same items as DSS
    assert mi.dss.items(context(task, train, chains, {}), mi.MIConfig()) == every


@needs_dss
def test_dss_explain_targets_are_the_rationale_without_the_answer():
    from harness.config import TeacherSpec
    from tasks import get_task

    task = get_task("svamp", data_dir=str(DATA), split_source="dss")
    train = task.load("train")
    chains = {c.example_id: c for c in released_chains(task, TeacherSpec(name="dss"))}
    items = dss.items(context(task, train, list(chains.values()), {}), dss.DSSConfig())
    with_rationale = [it for it in items if it["rationale"]]
    assert len(with_rationale) > 690
    assert not any("answer is" in it["rationale"].lower() for it in with_rationale)
    # the chain still holds its answer statement: single_task trains on rationale + answer
    ex = train[0]
    c = chains[ex.id]
    assert c.text == f"{c.rationale} {c.statement}" and c.statement.startswith("The answer is")
    assert items[0]["rationale"] == c.rationale


def test_oracle_chains_are_split_and_dss_uses_the_rationale(arith):
    train = arith.load("train")[:6]
    chains = oracle_chains(arith, train, k=1, wrong_rate=0.5, seed=0)
    for c in chains:
        assert c.statement.startswith("The answer is") and c.text == f"{c.rationale} {c.statement}"
    items = dss.items(context(arith, train, chains, {}), dss.DSSConfig())
    assert [it["rationale"] for it in items] == [c.rationale for c in chains]
    assert not any("answer is" in it["rationale"] for it in items)


def test_dss_examples_without_a_chain_train_the_predict_task_only(arith):
    train = arith.load("train")[:4]
    chains = oracle_chains(arith, train[:2], k=1, wrong_rate=0.0, seed=0)
    logged: dict = {}
    items = dss.items(context(arith, train, chains, logged), dss.DSSConfig())
    assert [it["rationale"] is None for it in items] == [False, False, True, True]
    assert logged["data/no_rationale"] == 2


def test_dss_first_chain_whatever_its_label_with_k_chains(arith):
    train = arith.load("train")[:40]
    chains = oracle_chains(arith, train, k=3, wrong_rate=0.5, seed=1)
    first = {c.example_id: c for c in chains if c.meta["sample"] == 0}
    items = dss.items(context(arith, train, chains, {}), dss.DSSConfig())
    assert [it["rationale"] for it in items] == [first[ex.id].rationale for ex in train]
    assert any(not first[ex.id].correct for ex in train)  # some explain targets are wrong chains
    pos, _ = split_bank(chains)
    first_pos: dict[str, Chain] = {}
    for c in pos:
        first_pos.setdefault(c.example_id, c)
    only = dss.items(context(arith, train, chains, {}), dss.DSSConfig(rationale="positive_only"))
    assert [it["rationale"] for it in only] == [first_pos[ex.id].rationale for ex in train if ex.id in first_pos]


def test_dss_rejects_an_unknown_rationale_choice():
    with pytest.raises(ValueError, match="rationale"):
        dss.DSSConfig(rationale="best")  # type: ignore[arg-type]


def test_dss_loss_skips_missing_rationales(student):
    """Rows without a rationale add nothing to L_expl: the batch's L_expl equals that of the
    rows that have one."""
    student.model.eval()
    cfg = dss.DSSConfig()
    batch = [
        {"input": "Calculate 1 + 2.", "label": "3", "rationale": "1 + 2 = 3."},
        {"input": "Calculate 4 + 4.", "label": "8", "rationale": None},
        {"input": "Calculate 5 - 1.", "label": "4", "rationale": "5 - 1 = 4."},
    ]
    with torch.no_grad():
        passes = dss.score_tasks(student, batch, cfg)
        assert passes.explained == [0, 2]
        _, expl = dss.task_losses(passes)
        _, expl_two = dss.task_losses(dss.score_tasks(student, [batch[0], batch[2]], cfg))
        assert expl.item() == pytest.approx(expl_two.item(), rel=1e-5)
        none = dss.score_tasks(student, [batch[1]], cfg)
        assert none.explain is None and dss.task_losses(none)[1].item() == 0.0
        # MI's term uses the rows that have both passes
        total, metrics = mi.loss_fn(mi.MIConfig())(student, batch)
        assert torch.isfinite(total) and "mi_loss" in metrics


# --- loss reductions ------------------------------------------------------------------------------

TOKEN_NLL = torch.tensor([[1.0, 3.0, 0.0], [5.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, False], [True, False, False]])


def test_nll_reductions_hand_computed():
    # per-sequence means (2, 5) -> 3.5; one mean over the 3 target tokens (1 + 3 + 5) / 3 -> 3.0
    assert nll_loss(TOKEN_NLL, MASK, "sequence").item() == pytest.approx(3.5)
    assert nll_loss(TOKEN_NLL, MASK, "token").item() == pytest.approx(3.0)
    assert nll_loss(TOKEN_NLL, MASK).item() == pytest.approx(3.5)  # the default is "sequence"
    # equal lengths: the two agree
    same = torch.tensor([[True, True, False], [True, True, False]])
    t = torch.tensor([[1.0, 3.0, 0.0], [5.0, 7.0, 0.0]])
    assert nll_loss(t, same, "token").item() == pytest.approx(nll_loss(t, same, "sequence").item())
    # no target token at all: 0, never NaN
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert reduce_tokens(torch.zeros(2, 3), empty, "token").item() == 0.0
    with pytest.raises(ValueError, match="reduction"):
        reduce_tokens(TOKEN_NLL, MASK, "batch")  # type: ignore[arg-type]


def test_ul_and_nt_token_reduction_hand_computed():
    negative = torch.tensor([False, True])
    # nt: row 0 positive (1 + 3), row 1 negative -(5); token mean = (1 + 3 - 5) / 3
    assert nt_loss(TOKEN_NLL, MASK, negative, reduction="token").item() == pytest.approx(-1 / 3)
    assert nt_loss(TOKEN_NLL, MASK, negative, reduction="sequence").item() == pytest.approx((2 - 5) / 2)
    # ul: the negative token contributes -log(1 - exp(-5))
    ul5 = unlikelihood(torch.tensor(5.0)).item()
    assert ul_loss(TOKEN_NLL, MASK, negative, reduction="token").item() == pytest.approx((1 + 3 + ul5) / 3)
    assert ul_loss(TOKEN_NLL, MASK, negative, reduction="sequence").item() == pytest.approx((2 + ul5) / 2)


def test_every_method_trains_with_either_reduction(tiny_dir, arith, tmp_path):
    """loss_reduction is a train setting every method reads: token and sequence give different
    first losses on ragged targets (and both are finite)."""
    from harness.student import Student
    from methods import METHODS

    train = arith.load("train")[:8]
    pos, neg = split_bank(oracle_chains(arith, train, k=2, wrong_rate=0.5, seed=0))
    def by(cs):
        return {c.example_id: [x for x in cs if x.example_id == c.example_id] for c in cs}

    for name in ("finetune", "dss", "single_task", "ul"):
        first = {}
        for reduction in ("sequence", "token"):
            logged: dict = {}
            ctx = TrainContext(
                student=Student.load(tiny_dir[1]),  # the same untrained weights for both
                task=arith,
                train=train,
                positives=by(pos),
                negatives=by(neg),
                config=TrainConfig(steps=1, batch_size=8, eval_every=1, log_every=1, loss_reduction=reduction),
                evaluate=lambda s: 0.0,
                out_dir=tmp_path / name / reduction,
                log=lambda m, s, logged=logged: logged.update(m),
                show_progress=False,
            )
            METHODS[name].train(ctx, METHODS[name].config())
            first[reduction] = logged["train/loss"]
        assert all(torch.isfinite(torch.tensor(v)) for v in first.values())
        if name != "finetune":  # gold labels of one or two digits: ragged, but chains are more so
            assert first["sequence"] != pytest.approx(first["token"], rel=1e-6), name
