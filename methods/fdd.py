"""fdd — Feedback-Driven Distillation (Zhu et al. 2024, arXiv 2411.14698): the student's own results
decide which new problems the teacher writes, over several rounds.

    D_0 = the train problems with their teacher positives (the cell's bank, as single_task)
    for r = 0 .. rounds-1:
        train the student on D_r                                  (CoT targets, common.nll_loss)
        stop after the last round
        the student answers every train problem greedily: solved -> easy, the rest -> hard
        the teacher writes `per_problem` harder variants of each easy problem and as many new
        problems of similar difficulty for each hard one (tasks/generation.py prompts, or the
        task's own `write_problem` for the oracle), and solves each K times
        keep a problem only when its K answers agree (`agreement`) and it is not a near-duplicate
        of a valid or test question (harness.contamination) nor a repeat of a problem already
        in D_r; D_{r+1} = D_r + the kept problems, each with an agreeing chain

No public code exists; this file is the reference implementation, and every generated problem is
auditable: each generation round is a bank of its own in the store (`banks/<key>`, content-keyed
by the round, the parents with their easy/hard verdicts, the teacher and these settings;
resumable: a restarted run makes no teacher call for a finished chunk), holding per problem its
round, parent, kind, the K chains and answers, the verdict and, for the oracle, the true answer.
The run's artifacts hold the same as `fdd/round-<g>.jsonl`, and `distillbench teacher stats KEY`
summarises a round's bank.

Budget: with a `steps` budget the steps are split evenly over the rounds (`budget: split`), so an
fdd cell trains as many steps as the single_task and dss cells beside it; `budget: per_round`
trains the whole budget in every round. Each round is one `fit` (its own warm-up and schedule,
best checkpoint on valid); the run's checkpoint is the best round's (`select: best`, on valid) or
the last round's. Round r+1 continues from round r's best student (`restart: continue`) or from
the initial weights (`scratch`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import UserError
from harness.store import atomic_write_text, content_key, write_jsonl
from harness.training import Item, TrainContext, TrainResult
from harness.types import Chain, Example
from methods.base import MethodDef
from methods.common import chain_items, item_nll
from methods.finetune import test_input  # the task's own input, as single_task

CITATION = "Zhu et al. 2024, Improving Mathematical Reasoning Capabilities of Small Language Models via Feedback-Driven Distillation, arXiv 2411.14698"
FORMAT = 1  # of a generated-problem bank's rows; in its key
KEPT = "kept"
REJECTIONS = ("unparsed", "contaminated", "no_answer", "tie", "disagree", "duplicate")


@dataclass(frozen=True)
class FDDConfig:
    """Defaults: rounds and K as the issue's reading of the paper (3 rounds; 5 samples per
    generated problem); one problem per train problem per round; a strict majority of K."""

    rounds: int = 3  # training rounds; rounds - 1 generation rounds between them
    k: int = 5  # teacher samples per generated problem (the agreement filter's votes)
    per_problem: int = 1  # problems written per train problem per generation round
    min_votes: int | None = None  # answers that must agree; None: a strict majority of k
    chains_per_problem: int = 1  # agreeing chains kept as targets per kept problem
    restart: Literal["continue", "scratch"] = "continue"
    budget: Literal["split", "per_round"] = "split"
    select: Literal["best", "last"] = "best"
    near_duplicate: float = 0.8  # harness.contamination threshold (char 5-gram Jaccard, same numbers)
    chunk_size: int = 64  # parents per resumable unit of a generation bank
    max_chains: int | None = None  # teacher positives per train problem in D_0; None: all
    # a teacher spec (fields of a run spec's `teacher:`) that writes and solves the new problems,
    # over the cell's teacher (e.g. the TDG release as D_0's chains and an API model as writer)
    teacher: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.k < 1 or self.per_problem < 1 or self.chains_per_problem < 1 or self.chunk_size < 1:
            raise ValueError("k, per_problem, chains_per_problem and chunk_size must be >= 1")
        if self.min_votes is not None and not 1 <= self.min_votes <= self.k:
            raise ValueError(f"min_votes must be in [1, k={self.k}], got {self.min_votes}")
        if not 0.0 < self.near_duplicate <= 1.0:
            raise ValueError(f"near_duplicate must be in (0, 1], got {self.near_duplicate}")
        for name, allowed in (("restart", ("continue", "scratch")), ("budget", ("split", "per_round")), ("select", ("best", "last"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @property
    def votes_needed(self) -> int:
        return self.min_votes if self.min_votes is not None else self.k // 2 + 1


# --- the pure pieces ------------------------------------------------------------------------


def split_easy_hard(examples: Sequence[Example], answers: Sequence[str | None], equivalent: Callable[[str | None, str], bool]) -> dict[str, str]:
    """Example id -> "harder" (solved: easy, so the teacher writes a harder variant) or "similar"
    (not solved, or no answer: hard, so a new problem of similar difficulty)."""
    return {ex.id: "harder" if equivalent(a, ex.answer) else "similar" for ex, a in zip(examples, answers, strict=True)}


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "kept" or one of REJECTIONS
    answer: str | None  # the most common answer as first written (None when none was extracted)
    votes: int  # chains that gave it


def agreement(answers: Sequence[str | None], canonical: Callable[[str], str], votes_needed: int) -> Verdict:
    """The K answers of one generated problem -> kept when one answer (by canonical form) has the
    most votes alone and at least `votes_needed`; a shared top count is a tie; no extracted
    answer at all is no_answer; too few votes is disagree."""
    keys = [canonical(a) if a is not None else None for a in answers]
    votes = Counter(k for k in keys if k is not None)
    if not votes:
        return Verdict("no_answer", None, 0)
    ranked = votes.most_common()
    best, n = ranked[0]
    first = answers[keys.index(best)]
    if len(ranked) > 1 and ranked[1][1] == n:
        return Verdict("tie", None, n)
    return Verdict(KEPT if n >= votes_needed else "disagree", first, n)


def round_budget(train: Any, cfg: FDDConfig, r: int) -> Any:
    """The TrainConfig of round r: `split` gives round r its share of the steps (the remainder to
    the first rounds) or of the epochs; `per_round` the whole budget."""
    if cfg.budget == "per_round":
        return train
    if train.steps is not None:
        base, extra = divmod(train.steps, cfg.rounds)
        if base == 0:
            raise UserError(f"fdd: {train.steps} steps cannot be split over {cfg.rounds} rounds (budget: split)")
        return train.model_copy(update={"steps": base + (r < extra)})
    return train.model_copy(update={"epochs": train.epochs / cfg.rounds})


# --- one generation round -----------------------------------------------------------------


@dataclass
class Round:
    """What one generation round added: its bank, the rows of the audit file, the kept items."""

    bank: str
    rows: list[dict[str, Any]]
    items: list[Item]
    counts: dict[str, float]


def generation_manifest(ctx: TrainContext, writer: Any, cfg: FDDConfig, g: int, kinds: dict[str, str], seed: int) -> dict[str, Any]:
    from tasks.base import task_key

    return {
        "kind": "fdd-problems",
        "format": FORMAT,
        "task": task_key(ctx.task),
        "writer": writer.key(),
        "round": g,
        "parents": content_key(sorted(kinds.items())),
        "k": cfg.k,
        "per_problem": cfg.per_problem,
        "votes_needed": cfg.votes_needed,
        "near_duplicate": cfg.near_duplicate,
        "seed": seed,
    }


def generate(ctx: TrainContext, writer: Any, guard: Any, cfg: FDDConfig, g: int, kinds: dict[str, str]) -> Callable[[Sequence[Example], int], list[list[Chain]]]:
    """The bank chunk generator of generation round g: per parent, the chains of every problem
    written from it, each carrying the problem's record in meta["fdd"]. A problem rejected before
    solving (unparsed, contaminated) is one empty chain holding its record."""
    from harness.bank import chunk_seed

    def run(parents: Sequence[Example], seed: int) -> list[list[Chain]]:
        out: dict[str, list[Chain]] = {p.id: [] for p in parents}
        for j in range(cfg.per_problem):
            s = chunk_seed(seed, j)
            written = writer.write(parents, [kinds[p.id] for p in parents], s)
            to_solve: list[tuple[Example, dict[str, Any]]] = []
            for parent, (problem, raw, tokens) in zip(parents, written, strict=True):
                rec: dict[str, Any] = {"round": g, "parent": parent.id, "parent_question": parent.question, "kind": kinds[parent.id], "index": j, "write_tokens": tokens}
                if problem is None:
                    out[parent.id].append(_record(f"{parent.id}:{g}:{j}", writer.source, {**rec, "verdict": "unparsed", "raw": raw[:2000]}))
                    continue
                rec["problem"] = problem.to_dict()
                hit = guard.match(problem.question)
                if hit is not None:
                    rec |= {"verdict": "contaminated", "held_out": guard.texts[hit.index], "similarity": round(hit.similarity, 4)}
                    out[parent.id].append(_record(problem.id, writer.source, rec))
                    continue
                to_solve.append((problem, rec))
            solved = writer.solve([p for p, _ in to_solve], cfg.k, chunk_seed(s, 1))
            for (problem, rec), chains in zip(to_solve, solved, strict=True):
                v = agreement([c.answer for c in chains], ctx.task.canonical, cfg.votes_needed)
                rec |= {"answers": [c.answer for c in chains], "verdict": v.verdict, "answer": v.answer, "votes": v.votes}
                if problem.answer:  # the oracle's problems have a known answer: audit the filter
                    rec["truth"] = problem.answer
                    rec["answer_right"] = v.answer is not None and ctx.task.equivalent(v.answer, problem.answer)
                out[rec["parent"]].extend(dataclasses.replace(c, meta={**c.meta, "fdd": rec}) for c in chains)
        return [out[p.id] for p in parents]

    return run


def _record(example_id: str, source: str, rec: dict[str, Any]) -> Chain:
    return Chain(example_id, source, "", None, None, meta={"fdd": rec})


def problems(chains: Sequence[Chain]) -> list[list[Chain]]:
    """A generation bank's chains grouped by problem (each group shares one meta["fdd"] record)."""
    by_problem: dict[tuple[str, int, str], list[Chain]] = {}
    for c in chains:
        rec = c.meta["fdd"]
        by_problem.setdefault((rec["parent"], rec["index"], c.example_id), []).append(c)
    return list(by_problem.values())


def bank_summary(bank: Any) -> list[tuple[str, str]]:
    """`distillbench teacher stats` of a generation bank: its round and what became of its problems."""
    rows = []
    for group in problems(bank.chains()):
        rec = dict(group[0].meta["fdd"])
        rec["tokens"] = rec.get("write_tokens", 0) + sum(c.n_tokens for c in group)
        rows.append(rec)
    c = round_counts(rows)
    m = bank.manifest
    out = [("FDD generation round", str(m["round"])), ("teacher samples per problem (votes needed)", f"{m['k']} ({m['votes_needed']})")]
    for kind in ("harder", "similar"):
        out.append((f"{kind}: written / kept / rejected", f"{c[f'written/{kind}']:.0f} / {c[f'kept/{kind}']:.0f} / {c[f'rejected/{kind}']:.0f} ({c[f'rejection_rate/{kind}']:.1%} rejected)"))
    out.append(("rejected by reason", ", ".join(f"{r}: {c[f'rejected/{r}']:.0f}" for r in REJECTIONS if r != "duplicate")))
    if "kept_wrong" in c:
        out.append(("kept with a wrong agreed answer (oracle audit)", f"{c['kept_wrong']:.0f}"))
    out.append(("teacher tokens (written + solved)", f"{c['teacher_tokens']:,.0f}"))
    return out


def read_round(chains: Sequence[Chain], task: Any, cfg: FDDConfig, seen: set[str]) -> tuple[list[dict[str, Any]], list[Item]]:
    """(one audit row per generated problem, the training items of the kept ones) from a round's
    bank. A kept problem whose normalised text is in `seen` (train problems and problems kept in
    earlier rounds or earlier in this one) is a duplicate; `seen` grows by the kept ones."""
    from harness.contamination import normalise

    rows, items = [], []
    for group in problems(chains):
        rec = dict(group[0].meta["fdd"])
        if rec["verdict"] == KEPT:
            problem = Example.from_dict(rec["problem"])
            key = normalise(problem.question)
            if key in seen:
                rec["verdict"] = "duplicate"
            else:
                seen.add(key)
                want = task.canonical(rec["answer"])
                agreeing = [c for c in group if c.answer is not None and task.canonical(c.answer) == want and c.text.strip()]
                x = task.student_input(problem)
                items += [{"input": x, "target": c.text, "generated": True} for c in agreeing[: cfg.chains_per_problem]]
        rec["chains"] = [c.text for c in group if c.text]
        rec["tokens"] = rec.get("write_tokens", 0) + sum(c.n_tokens for c in group)
        rows.append(rec)
    return rows, items


def round_counts(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per kind: written, kept, rejected (and by reason), rejection rate; teacher tokens; for the
    oracle, kept problems whose agreed answer is wrong."""
    out: dict[str, float] = {}
    for kind in ("harder", "similar"):
        mine = [r for r in rows if r["kind"] == kind]
        kept = sum(r["verdict"] == KEPT for r in mine)
        out[f"written/{kind}"] = len(mine)
        out[f"kept/{kind}"] = kept
        out[f"rejected/{kind}"] = len(mine) - kept
        out[f"rejection_rate/{kind}"] = (len(mine) - kept) / len(mine) if mine else 0.0
    for reason in REJECTIONS:
        out[f"rejected/{reason}"] = sum(r["verdict"] == reason for r in rows)
    out["teacher_tokens"] = sum(r["tokens"] for r in rows)
    audited = [r for r in rows if r["verdict"] == KEPT and "answer_right" in r]
    if audited:
        out["kept_wrong"] = sum(not r["answer_right"] for r in audited)
    return out


def generation_round(ctx: TrainContext, writer: Any, guard: Any, cfg: FDDConfig, g: int, kinds: dict[str, str], seen: set[str]) -> Round:
    """Generation round g: build (or resume, or reuse) its bank, then read it."""
    from harness import bank as banks

    # a seed per round: the same parents and verdicts in a later round get new problems
    seed = int(content_key({"seed": ctx.config.run_seed, "round": g})[:8], 16)
    bank = ctx.bank(generation_manifest(ctx, writer, cfg, g, kinds, seed))
    usage_before = writer.usage()
    with bank.lock():  # one builder per bank: a second cell waits, then finds every chunk done
        report = banks.build(bank, list(ctx.train), generate(ctx, writer, guard, cfg, g, kinds), lambda ex, cs: cs, cfg.chunk_size, seed)
    if report.chunks_generated and (usage := writer.usage()):
        bank.record_usage({k: v - usage_before.get(k, 0) for k, v in usage.items() if isinstance(v, (int, float))})
    rows, items = read_round(bank.chains(), ctx.task, cfg, seen)
    for r in rows:
        r["bank"] = bank.key
    counts = round_counts(rows)
    counts["chunks_generated"] = report.chunks_generated
    return Round(bank.key, rows, items, counts)


# --- training ------------------------------------------------------------------------------


DONE_FILE = "fdd.json"


def train(ctx: TrainContext, cfg: FDDConfig) -> TrainResult:
    from harness.contamination import normalise
    from harness.teacher import ProblemTeacher

    done = ctx.out_dir / DONE_FILE
    if done.exists() and (ctx.out_dir / "best").exists():  # killed after the end, before the rename
        ctx.student.restore(ctx.out_dir / "best")
        saved = json.loads(done.read_text())
        return TrainResult(**{**saved, "curve": [(s, v) for s, v in saved["curve"]]})
    if ctx.teacher is None or ctx.predict is None or ctx.held_out is None:
        raise UserError("fdd trains with its teacher: run it through the pipeline (which hands over the teacher, answers and held-out guard)")
    writer = ProblemTeacher(ctx.task, writer_spec(ctx.teacher, cfg.teacher)) if cfg.rounds > 1 else None
    guard = ctx.held_out(cfg.near_duplicate)
    items = chain_items(ctx, negatives=False, max_chains=cfg.max_chains)
    seen = {normalise(ex.question) for ex in ctx.train}
    initial = {n: p.detach().clone() for n, p in ctx.student.trainable_parameters().items()} if cfg.restart == "scratch" else None
    try:
        results = _rounds(ctx, cfg, writer, guard, items, seen, initial)
    finally:
        if writer is not None:
            writer.close()
    best = max(range(len(results)), key=lambda i: (results[i].best_valid, i)) if cfg.select == "best" else len(results) - 1
    shutil.rmtree(ctx.out_dir / "best", ignore_errors=True)
    shutil.copytree(ctx.out_dir / f"round-{best}" / "best", ctx.out_dir / "best")
    ctx.student.restore(ctx.out_dir / "best")
    starts = [sum(res.steps for res in results[:i]) for i in range(len(results))]
    result = TrainResult(
        best_step=starts[best] + results[best].best_step,
        best_valid=results[best].best_valid,
        steps=sum(res.steps for res in results),
        seconds=sum(res.seconds for res in results),
        curve=[(s0 + s, v) for s0, res in zip(starts, results, strict=True) for s, v in res.curve],
    )
    ctx.log({"fdd/best_round": best}, 0)
    atomic_write_text(done, json.dumps(dataclasses.asdict(result)))
    return result


def _rounds(ctx: TrainContext, cfg: FDDConfig, writer: Any, guard: Any, items: list[Item], seen: set[str], initial: dict[str, Any] | None) -> list[TrainResult]:
    """Train round after round, generating between them; one TrainResult per round."""
    results: list[TrainResult] = []
    offset, generated = 0, 0
    audit = ctx.out_dir / "artifacts" / "fdd"
    for r in range(cfg.rounds):
        if r and initial is not None:
            _load(ctx.student, initial)
        log = _shifted(ctx.log, offset)
        rctx = dataclasses.replace(ctx, config=round_budget(ctx.config, cfg, r), out_dir=ctx.out_dir / f"round-{r}", log=log)
        res = rctx.fit(items, item_nll(ctx.config.loss_reduction))
        results.append(res)
        ctx.log({"fdd/valid": res.best_valid, "fdd/train_items": len(items), "fdd/generated_items": generated, "fdd/steps": res.steps}, r)
        offset += res.steps
        if r == cfg.rounds - 1:
            break
        assert writer is not None
        g = r + 1
        answers = feedback(ctx, rctx.out_dir)
        kinds = split_easy_hard(ctx.train, answers, ctx.task.equivalent)
        easy = sum(k == "harder" for k in kinds.values())
        new = generation_round(ctx, writer, guard, cfg, g, kinds, seen)
        items = [*items, *new.items]
        generated += len(new.items)
        ctx.log({"fdd/easy": easy, "fdd/hard": len(kinds) - easy, **{f"fdd/{k}": v for k, v in new.counts.items()}}, g)
        audit.mkdir(parents=True, exist_ok=True)
        write_jsonl(audit / f"round-{g}.jsonl", new.rows)
    return results


def writer_spec(teacher: Any, overrides: dict[str, Any]) -> Any:
    """The cell's teacher spec with the method's `teacher:` options over it (validated)."""
    if not overrides:
        return teacher
    try:
        return type(teacher).model_validate({**teacher.model_dump(), **overrides})
    except Exception as e:  # pydantic's ValidationError: one line for the user
        raise UserError(f"fdd: bad `teacher:` options {overrides}: {str(e).splitlines()[0]}") from None


def feedback(ctx: TrainContext, round_dir: Path) -> list[str | None]:
    """The student's greedy answers to every train problem after a round (cached in the round's
    folder: a resumed run does not decode them again)."""
    path = round_dir / "feedback.json"
    ids = [ex.id for ex in ctx.train]
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["ids"] == ids:
            return saved["answers"]
    assert ctx.predict is not None
    answers = ctx.predict(ctx.student, ctx.train)
    atomic_write_text(path, json.dumps({"ids": ids, "answers": answers}))
    return answers


def _shifted(log: Callable[[dict[str, float], int], None], offset: int) -> Callable[[dict[str, float], int], None]:
    # every round's fit counts steps from 1; the run's curves continue across rounds
    return lambda metrics, step: log(metrics, step + offset)


def _load(student: Any, weights: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for n, p in student.trainable_parameters().items():
            p.copy_(weights[n])


def plan(cfg: FDDConfig) -> tuple[str, ...]:
    budget = f"{cfg.rounds} rounds sharing the cell's budget" if cfg.budget == "split" else f"{cfg.rounds} rounds of the full budget each"
    return (
        f"the student: {budget}, round 0 on the bank's positives, then D_r + the kept problems "
        f"({'continuing from the last round' if cfg.restart == 'continue' else 'from the initial weights'}; "
        f"{'the best round on valid' if cfg.select == 'best' else 'the last round'} kept)",
    )


def teacher_calls(cfg: FDDConfig, n_train: int) -> str:
    problems = n_train * cfg.per_problem
    if cfg.rounds < 2:
        return "no teacher calls (one round: no problems are written)"
    return (
        f"teacher per generation round: {problems:,} problem-writing calls + up to {problems * cfg.k:,} solving samples "
        f"({cfg.k} per problem; none for unparsed or contaminated ones); {cfg.rounds - 1} rounds: up to "
        f"{(cfg.rounds - 1) * problems * (1 + cfg.k):,} generations"
    )


def passes(cfg: FDDConfig) -> float:
    """The dry run's cost multiplier: the budget is trained once in all (split) or once per round
    (per_round, each round's data at least D_0's size)."""
    return float(cfg.rounds) if cfg.budget == "per_round" else 1.0


METHOD = MethodDef(
    "fdd", FDDConfig, train, test_input, CITATION,
    "teacher positives, then problems the teacher writes from the student's results on train, checked against gold labels (kept when its K answers agree)",
    inputs=frozenset({"gold", "positives", "teacher"}),
    passes=passes,
    plan=plan,
    teacher_calls=teacher_calls,
)
