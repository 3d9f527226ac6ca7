"""FDD (methods/fdd.py): the easy/hard split, the agreement filter, the budget split, a generation
round with its guard and provenance, the rounds' data, and resume after a kill in generation and
in training."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from harness.config import TeacherSpec
from harness.contamination import HeldOut
from harness.errors import UserError
from harness.settings import TrainConfig
from harness.student import Student
from harness.teacher import ProblemTeacher, oracle_chains, split_bank
from harness.training import TrainContext, TrainResult
from methods import fdd, get_method, make_config
from methods.fdd import FDDConfig, agreement, round_budget, split_easy_hard
from tasks.checking import canonical, equivalent

ORACLE = TeacherSpec(name="oracle", k=2, wrong_rate=0.3)


# ---------------------------------------------------------------- pure pieces


def test_easy_problems_get_harder_variants_and_hard_ones_similar_problems(arith):
    exs = arith.load("train")[:4]
    answers = [exs[0].answer, "999999", None, exs[3].answer]
    assert split_easy_hard(exs, answers, arith.equivalent) == {
        exs[0].id: "harder", exs[1].id: "similar", exs[2].id: "similar", exs[3].id: "harder"
    }


@pytest.mark.parametrize(
    ("answers", "needed", "verdict", "answer", "votes"),
    [
        (["7", "7", "7", "8", "9"], 3, "kept", "7", 3),
        (["7", "7", "8", "9", None], 3, "disagree", "7", 2),  # a plurality is not enough
        (["7", "7", "8", "8", "9"], 2, "tie", None, 2),  # two answers share the top count
        ([None, None, None], 2, "no_answer", None, 0),
        (["0.5", "1/2", "2/4", "3"], 3, "kept", "0.5", 3),  # grouped by canonical form, first spelling kept
        (["4", "4", "4", "4", "5"], 5, "disagree", "4", 4),  # min_votes = k: unanimous only
        (["4"] * 5, 5, "kept", "4", 5),
    ],
)
def test_agreement_filter(answers, needed, verdict, answer, votes):
    assert agreement(answers, canonical, needed) == fdd.Verdict(verdict, answer, votes)


def test_default_votes_are_a_strict_majority():
    assert FDDConfig(k=5).votes_needed == 3 and FDDConfig(k=4).votes_needed == 3 and FDDConfig(k=1).votes_needed == 1
    assert FDDConfig(k=5, min_votes=5).votes_needed == 5


def test_budget_is_split_over_rounds_so_cells_train_equal_steps():
    train = TrainConfig(steps=10)
    assert [round_budget(train, FDDConfig(rounds=3), r).steps for r in range(3)] == [4, 3, 3]
    assert [round_budget(train, FDDConfig(rounds=3, budget="per_round"), r).steps for r in range(3)] == [10, 10, 10]
    assert round_budget(TrainConfig(steps=None, epochs=3), FDDConfig(rounds=3), 1).epochs == 1
    with pytest.raises(UserError, match="cannot be split"):
        round_budget(TrainConfig(steps=2), FDDConfig(rounds=3), 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"rounds": 0}, "rounds"), ({"k": 3, "min_votes": 4}, "min_votes"), ({"restart": "warm"}, "restart"), ({"near_duplicate": 0}, "near_duplicate")],
)
def test_config_errors_are_one_line(options, message):
    with pytest.raises(UserError, match=message):
        make_config(get_method("fdd"), options)


def test_writer_options_override_the_cells_teacher():
    spec = fdd.writer_spec(ORACLE, {"wrong_rate": 0.0, "k": 9})
    assert spec.wrong_rate == 0.0 and spec.k == 9 and spec.name == "oracle"
    with pytest.raises(UserError, match="bad `teacher:` options"):
        fdd.writer_spec(ORACLE, {"wrong_rate": 2})


def test_hf_teacher_writes_and_solves_through_the_same_prompts(tiny_dir, arith):
    """The hf backend: a tiny local model (random weights) as writer. It will not write
    "Problem: ...", so every problem comes back unparsed with its raw text; solving a given
    problem returns k chains. The plumbing is the point; a real model writes problems."""
    parents = arith.load("train")[:2]
    teacher = ProblemTeacher(arith, TeacherSpec(name="hf", model=str(tiny_dir[1]), k=2, max_new_tokens=8, temperature=1.0))
    written = teacher.write(parents[:2], ["harder", "similar"], seed=0)
    assert [p for p, _, _ in written] == [None, None] and all(isinstance(raw, str) and 1 <= n <= 8 for _, raw, n in written)
    chains = teacher.solve(parents[:2], 3, seed=0)
    assert [len(cs) for cs in chains] == [3, 3] and all(c.correct is None and c.source.startswith("teacher:hf:") for cs in chains for c in cs)
    teacher.close()


# ---------------------------------------------------------------- one generation round


def ctx_for(task, train, tmp_path, student=None, cfg=None, log=None, predict=None, held=None, teacher=ORACLE):
    pos, _ = split_bank(oracle_chains(task, train, k=2, wrong_rate=0.3, seed=0))
    by_id: dict = {}
    for c in pos:
        by_id.setdefault(c.example_id, []).append(c)
    held = held if held is not None else [ex.question for s in ("valid", "test") for ex in task.load(s)]
    return TrainContext(
        student=student, task=task, train=train, positives=by_id, negatives={},
        config=cfg or TrainConfig(steps=6, batch_size=4, lr=3e-3, eval_every=2, log_every=1, seed=0),
        evaluate=lambda s: 0.0, out_dir=tmp_path, log=log or (lambda m, s: None), show_progress=False,
        teacher=teacher, held_out=lambda t: HeldOut(held, t), predict=predict,
    )


def test_a_generation_round_filters_guards_and_records_every_problem(arith, tmp_path):
    train = arith.load("train")[:40]
    kinds = {ex.id: ("harder" if i % 2 else "similar") for i, ex in enumerate(train)}
    writer = ProblemTeacher(arith, TeacherSpec(name="oracle", wrong_rate=0.4))
    # the guard's held-out set holds the problem the writer is about to write for the first parent,
    # in other case: its seed is the round's, then the chunk's, then the problem index's
    from harness.bank import chunk_seed
    from harness.contamination import normalise

    cfg, g = FDDConfig(k=5), 1
    seed = int(fdd.content_key({"seed": 0, "round": g})[:8], 16)
    leaked = writer.write(train[:1], [kinds[train[0].id]], chunk_seed(chunk_seed(seed, 0), 0))[0][0]
    held = [leaked.question.upper(), *(ex.question for ex in arith.load("test"))]
    guard = HeldOut(held, cfg.near_duplicate)
    ctx = ctx_for(arith, train, tmp_path)
    seen = {normalise(ex.question) for ex in train}
    r = fdd.generation_round(ctx, writer, guard, cfg, g, kinds, seen)
    assert len(r.rows) == 40  # one problem per parent
    first = next(row for row in r.rows if row["parent"] == train[0].id)
    assert first["verdict"] == "contaminated" and first["held_out"] == held[0] and "answers" not in first
    for row in r.rows:
        assert row["round"] == 1 and row["kind"] == kinds[row["parent"]] and row["bank"] == r.bank
        assert row["parent_question"] == next(ex.question for ex in train if ex.id == row["parent"])
        if row["verdict"] not in ("contaminated", "unparsed"):
            assert len(row["answers"]) == 5 and row["truth"] == row["problem"]["answer"]
            assert row["verdict"] == agreement(row["answers"], canonical, 3).verdict or row["verdict"] == "duplicate"
    kept = [row for row in r.rows if row["verdict"] == "kept"]
    assert 0 < len(kept) < 39  # wrong_rate 0.4 over 5 samples: the filter has work to do
    assert len(r.items) == len(kept)  # one agreeing chain per kept problem
    for row, item in zip(kept, r.items, strict=True):
        assert item["input"] == row["problem"]["question"] and equivalent(arith.extract(item["target"]), row["answer"])
    c = r.counts
    assert c["written/harder"] + c["written/similar"] == 40 and c["rejected/contaminated"] == 1
    assert c["kept/harder"] + c["kept/similar"] == len(kept)
    assert c["rejection_rate/harder"] == pytest.approx(c["rejected/harder"] / c["written/harder"])
    assert c["teacher_tokens"] > 0 and "kept_wrong" in c
    # the same round again is read from its bank: no teacher call, the same rows
    calls = []
    orig = writer.write
    writer.write = lambda *a: calls.append(a) or orig(*a)
    again = fdd.generation_round(ctx, writer, guard, cfg, g, kinds, {normalise(ex.question) for ex in train})
    assert calls == [] and again.rows == r.rows and again.items == r.items


def test_a_kept_problem_already_in_the_data_is_a_duplicate(arith, tmp_path):
    train = arith.load("train")[:30]
    kinds = {ex.id: "similar" for ex in train}
    writer = ProblemTeacher(arith, TeacherSpec(name="oracle"))  # no slips: everything agrees
    ctx = ctx_for(arith, train, tmp_path)
    guard = HeldOut([], 0.8)
    first = fdd.generation_round(ctx, writer, guard, FDDConfig(), 1, kinds, set())
    assert all(row["verdict"] == "kept" for row in first.rows)
    # reading the same problems with their questions already seen: all duplicates, nothing added
    from harness.contamination import normalise

    seen = {normalise(row["problem"]["question"]) for row in first.rows}
    again = fdd.generation_round(ctx, writer, guard, FDDConfig(), 1, kinds, seen)
    assert {row["verdict"] for row in again.rows} == {"duplicate"} and again.items == [] and again.counts["rejected/duplicate"] == 30


# ---------------------------------------------------------------- the rounds, with a scripted student


class Scripted:
    """A student stand-in: no weights; `fit` is replaced, answers come from a script."""

    def trainable_parameters(self):
        return {}

    def restore(self, path):
        self.restored = path


def solved(example_id: str, r: int) -> bool:
    return hashlib.sha256(f"{example_id}{r}".encode()).digest()[0] % 3 == 0


@pytest.fixture
def fake_fit(monkeypatch):
    """TrainContext.fit records its items per round and leaves a `best` folder, in no time."""
    calls: list = []

    def fit(self, items, loss_fn, companion=None):
        calls.append((self.out_dir.name, list(items), self.config.steps))
        (self.out_dir / "best").mkdir(parents=True, exist_ok=True)
        return TrainResult(best_step=self.config.steps, best_valid=0.1 * len(calls), steps=self.config.steps, seconds=0.0, curve=[(self.config.steps, 0.1)])

    monkeypatch.setattr(TrainContext, "fit", fit)
    return calls


def scripted_ctx(arith, tmp_path, log=None):
    train = arith.load("train")[:24]
    rounds = {"n": 0}

    def predict(student, examples):
        rounds["n"] += 1
        return [ex.answer if solved(ex.id, rounds["n"]) else None for ex in examples]

    return ctx_for(arith, train, tmp_path, student=Scripted(), cfg=TrainConfig(steps=9, eval_every=3), log=log, predict=predict)


def test_each_round_trains_on_the_last_rounds_data_plus_exactly_the_kept_problems(arith, tmp_path, fake_fit):
    logged: list = []
    ctx = scripted_ctx(arith, tmp_path, log=lambda m, s: logged.append((s, m)))
    result = fdd.train(ctx, FDDConfig(rounds=3, chunk_size=10, teacher={"wrong_rate": 0.4}))
    assert [c[0] for c in fake_fit] == ["round-0", "round-1", "round-2"] and [c[2] for c in fake_fit] == [3, 3, 3]
    audit = tmp_path / "artifacts" / "fdd"
    for g in (1, 2):
        rows = [json.loads(line) for line in (audit / f"round-{g}.jsonl").read_text().splitlines()]
        kept = [row for row in rows if row["verdict"] == "kept"]
        before, after = fake_fit[g - 1][1], fake_fit[g][1]
        assert after[: len(before)] == before
        assert [it["input"] for it in after[len(before) :]] == [row["problem"]["question"] for row in kept]
        # the kinds follow the student's answers after the previous round (scripted per round)
        assert all(row["kind"] == ("harder" if solved(row["parent"], g) else "similar") for row in rows)
        metrics = {k: v for s, m in logged if s == g for k, v in m.items()}
        assert metrics["fdd/easy"] == sum(solved(ex.id, g) for ex in ctx.train) and metrics["fdd/easy"] + metrics["fdd/hard"] == 24
        assert metrics["fdd/kept/harder"] + metrics["fdd/kept/similar"] == len(kept) and metrics["fdd/written/harder"] + metrics["fdd/written/similar"] == 24
    valid = [m["fdd/valid"] for s, m in logged if "fdd/valid" in m]
    assert valid == pytest.approx([0.1, 0.2, 0.3])
    # the best round on valid is the checkpoint; the run's steps count every round
    assert result.steps == 9 and result.best_step == 6 + 3 and (tmp_path / "best").is_dir()


class Killed(Exception):
    pass


def test_killed_in_generation_resumes_without_a_second_teacher_call(arith, tmp_path, fake_fit, monkeypatch):
    full = fdd.train(scripted_ctx(arith, tmp_path / "full"), FDDConfig(rounds=3, chunk_size=8))
    full_items = fake_fit[-1][1]
    writes: list = []
    orig = ProblemTeacher.write

    def write(self, parents, kinds, seed):
        writes.append([p.id for p in parents])
        if len(writes) == 5:  # round 2's second chunk (3 chunks of 8 per round)
            raise Killed
        return orig(self, parents, kinds, seed)

    monkeypatch.setattr(ProblemTeacher, "write", write)
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        fdd.train(scripted_ctx(arith, out), FDDConfig(rounds=3, chunk_size=8))
    fake_fit.clear()
    resumed = fdd.train(scripted_ctx(arith, out), FDDConfig(rounds=3, chunk_size=8))
    # 3 chunks of 8 parents per round; killed in round 2's second chunk: the rerun writes only
    # that chunk and the third, nothing twice
    assert len(writes) == 7 and writes[5:] == [writes[1], writes[2]] and writes[4] == writes[5]
    assert fake_fit[-1][1] == full_items and resumed == full
    for g in (1, 2):
        assert (out / "artifacts" / "fdd" / f"round-{g}.jsonl").read_text() == (tmp_path / "full" / "artifacts" / "fdd" / f"round-{g}.jsonl").read_text()


# ---------------------------------------------------------------- the real loop, killed in training


def run_fdd(tiny_path, arith, out, kill_at=None, losses=None, writes=None):
    """Two rounds of 4 steps on a real tiny student, a state saved every 2; `kill_at` raises out of
    round 1's training right after that (global) step trains, before its state is saved."""
    student = Student.load(tiny_path, seed=0)

    def log(metrics, step):
        if "train/loss" in metrics:
            if losses is not None:
                losses[step] = metrics["train/loss"]
            if step == kill_at:
                raise Killed

    def predict(s, examples):
        from harness.decoding import GREEDY, HFDecoder

        gens = HFDecoder(s).sample([ex.question for ex in examples], dataclasses.replace(GREEDY, max_new_tokens=8))
        return [arith.extract(g[0].text) for g in gens]

    ctx = ctx_for(arith, arith.load("train")[:16], out, student=student, log=log, predict=predict,
                  cfg=TrainConfig(steps=8, batch_size=4, lr=3e-3, eval_every=2, log_every=1, seed=1))
    result = fdd.train(ctx, FDDConfig(rounds=2, chunk_size=8, select="last"))
    return result, {n: p.detach().clone() for n, p in student.trainable_parameters().items()}


@pytest.mark.parametrize("tiny_dir", ["t5"], indirect=True)
def test_killed_in_round_2_training_ends_as_the_uninterrupted_run(tiny_dir, arith, tmp_path, monkeypatch):
    full_losses: dict = {}
    full, full_w = run_fdd(tiny_dir[1], arith, tmp_path / "full", losses=full_losses)
    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        run_fdd(tiny_dir[1], arith, out, kill_at=7)
    assert torch.load(out / "round-1" / "last.pt", weights_only=True)["step"] == 2
    calls: list = []
    monkeypatch.setattr(ProblemTeacher, "write", lambda *a: calls.append(a) or pytest.fail("a finished round was generated again"))
    resumed_losses: dict = {}
    resumed, resumed_w = run_fdd(tiny_dir[1], arith, out, losses=resumed_losses)
    assert calls == []
    assert sorted(resumed_losses) == list(range(1, 9)) and resumed_losses == pytest.approx(full_losses, rel=1e-5)
    assert resumed.steps == full.steps == 8 and resumed.curve == full.curve
    assert all(torch.allclose(full_w[n], resumed_w[n], atol=1e-6) for n in full_w)
