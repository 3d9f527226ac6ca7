"""Time per training step of every registered method, relative to finetune (full fine-tuning) or
to a plain LoRA step (the TDG methods), on the same tiny student.

For each family (tiny T5 and tiny Llama, built from the same arith text), every method gets the
same examples and the same offline oracle teacher bank (K chains per example, a share slipped
into negatives), builds its own items exactly as its `train` does (its `ctx.fit` is intercepted),
and runs full optimizer steps as harness.training.fit does: one micro-batch of `--batch-size`
items, loss, backward, gradient clipping, AdamW step. A method's item is what it trains on — a
DSS/MI item is one example scored twice (predict + explain), a mix/ul/nt item is one chain — so a
step is what `train.batch_size` costs that method. Ratios are measured in one run and are made
robust to a shared, noisy machine: the methods of a family are timed round-robin, one block of
`--steps` steps each per round, for `--rounds` rounds, and each method's fastest block is kept
(the minimum is the least disturbed by other processes; the median is printed alongside).

The TDG methods train LoRA adapters, so they get a second table against a plain LoRA step (TDG's
r 8 / alpha 16 / dropout 0.05 on the attention query and value projections, single_task's loss)
on the same student and the same batch of chains: NAT stage 1 (a LoRA_neg step, as plain LoRA),
NAT stage 2 (LoRA_pos + integrate units over the frozen LoRA_neg, a logged at every step) and NCE
(a fresh LoRA student plus the NAT model's two forward passes, p_pos and p_neg, under no_grad).

QCRD gets a third table against DSS on the same student and the same examples (m 5 distinct
positive rationales per example: the oracle's chain under five wordings, as five teacher samples
would differ; one negative): with the judge on and off, with self-adversarial sampling on (its
cost amortised: one iteration's negatives are sampled in batches of 64 at T 1.5, so a step pays
B/64 of a 64-prompt generate call) and off (the teacher's negatives), the judge reading the
scoring pass's states (`judge_features: reuse`), and "naive": every candidate scored with a graph
and its own encoder pass (what a direct implementation of Eqs. 3-7 does). Then the breakdown of
the default step: forward, judge (forward + backward), backward + optimizer, sampling.

    python bench/train_step.py [--batch-size 32] [--steps 1] [--rounds 40] [--k 2] [--wrong-rate 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from harness.models import TinyConfig, build_tiny_model, corpus
from harness.student import Student
from harness.teacher import oracle_chains, split_bank
from harness.training import TrainConfig, TrainContext, TrainResult, micro_batches
from methods import METHODS
from tasks import get_task


class Capture(TrainContext):
    """A TrainContext whose fit records (items, loss_fn) instead of training."""

    def fit(self, items, loss_fn, companion=None) -> TrainResult:  # type: ignore[override]
        self.captured = (list(items), loss_fn)
        return TrainResult(best_step=0, best_valid=0.0, steps=0, seconds=0.0)


def by_example(chains) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in chains:
        out.setdefault(c.example_id, []).append(c)
    return out


def step_timer(student: Student, batch: list[dict[str, Any]], loss_fn, lr: float):
    """A closure running one full optimizer step (as harness.training.fit) on `batch`."""
    params = list(student.trainable_parameters().values())
    opt = torch.optim.AdamW(params, lr=lr)
    student.model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_fn(student, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def lora_timers(model_dir: Path, batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Step closures of the TDG methods and their plain-LoRA baseline, on one batch of chains."""
    from methods.common import item_nll
    from methods.nat import TDG_LORA, NATConfig, NATStudent, lora_options, nat_loss, peft_with
    from methods.nce import NCEConfig
    from methods.nce import loss_fn as nce_loss_fn

    ref = str(model_dir)
    plain = Student.load(model_dir, lora=TDG_LORA, seed=0)
    opts = lora_options(plain)
    timers = {"lora (baseline)": step_timer(plain, batch, item_nll(), lr=3e-4)}

    def nat_student(seed: int) -> NATStudent:
        base = Student.load(model_dir)
        neg = peft_with(base.model, base.family, opts, "neg", ref, seed)
        return NATStudent.build(neg, base, NATConfig(), opts, ref, seed)

    first = Student.load(model_dir)
    neg_only = Student(peft_with(first.model, first.family, opts, "neg", ref, 0), first.tokenizer, first.family)
    timers["nat stage 1"] = step_timer(neg_only, batch, item_nll(), lr=3e-4)
    timers["nat stage 2"] = step_timer(nat_student(0), batch, nat_loss("sequence"), lr=3e-4)
    teacher = nat_student(1)
    with torch.no_grad():  # a trained-looking NAT model: non-zero W2 and adapters, so p_pos != p_neg
        for n, p in teacher.model.named_parameters():
            if "W2" in n or "lora_B" in n:
                p.normal_(0, 0.02)
    teacher.model.eval()
    for p in teacher.model.parameters():
        p.requires_grad = False
    fresh = Student.load(model_dir, lora=TDG_LORA, seed=2)
    timers["nce"] = step_timer(fresh, batch, nce_loss_fn(teacher, NCEConfig(), "sequence"), lr=3e-4)
    return timers


WORDINGS = ("", "First, ", "We compute ", "Step by step: ", "So ")


def qcrd_items(task, examples) -> list[dict[str, Any]]:
    """QCRD items with 5 distinct positives (five wordings of the oracle's chain) and one teacher negative."""
    out = []
    for ex in examples:
        right = task.write_chain(ex)[0].split(" The answer")[0]
        out.append({"input": task.student_input(ex), "label": ex.answer, "positives": [w + right for w in WORDINGS], "teacher_negatives": ["1 + 1 = 3."]})
    return out


class FixedNegatives:
    """The companion's place in the loss: the step, and each item's negative (the teacher's, or
    one sampled once beforehand, so the loss is timed without the sampling)."""

    def __init__(self, cfg, head, negatives: list[list[str]]) -> None:
        self.cfg, self.head, self.negs = cfg, head, negatives
        self.step, self.cursor, self.sample_seconds, self.iteration_steps = 1, 0, 0.0, 250

    def negatives_for(self, batch):
        return self.negs[: len(batch)]


def naive_qcrd_loss(cfg, head):
    """Eqs. 2-8 as written: every candidate scored with a graph, each with its own encoder pass."""
    from methods import qcrd
    from methods.common import nll_loss

    def loss(student: Student, batch):
        pred = student.score([cfg.predict_prefix + b["input"] for b in batch], [b["label"] for b in batch])
        cands = qcrd.Candidates([b["positives"] for b in batch], [b["sampled"] for b in batch])
        inputs = [batch[i]["input"] for i in cands.rows]
        values = student.score([cfg.explain_prefix + x for x in inputs], cands.texts).sequence_nll()
        l_pos, pm, l_neg, nm = cands.split(values)
        s_pos, _, s_neg, _ = cands.split(qcrd.judge_scores(student, head, inputs, cands.texts))
        l_cl = qcrd.contrastive_loss(l_pos, pm, l_neg, nm, s_pos, s_neg)
        l_pred = nll_loss(pred.token_nll(), pred.mask)
        return qcrd.qcrd_loss(l_pred, l_cl, qcrd.judge_loss(s_pos, pm, s_neg, nm), cfg.a1, cfg.a2, cfg.a3), {}

    return loss


def qcrd_timers(model_dir: Path, task, examples, neg_tokens: int) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(step closures of DSS and the QCRD variants, forward-only closures, sampling s per step)."""
    from harness.decoding import HFDecoder, SamplingParams
    from methods import dss, qcrd

    items = qcrd_items(task, examples)
    dss_batch = [{"input": it["input"], "label": it["label"], "rationale": it["positives"][0]} for it in items]
    timers = {"dss (baseline)": step_timer(Student.load(model_dir), dss_batch, dss.loss_fn(dss.DSSConfig()), lr=3e-3)}
    forwards: dict[str, Any] = {}
    # the negatives a snapshot samples (T 1.5, random weights: they run to the token limit)
    sampler = Student.load(model_dir)
    params = SamplingParams(n=1, temperature=1.5, max_new_tokens=neg_tokens, seed=0)
    prompts = ["explain: " + it["input"] for it in items]
    gens = HFDecoder(sampler, 64).sample(prompts, params)
    sampled = [[g[0].text or "_"] for g in gens]
    t64 = []
    for _ in range(3):
        start = time.perf_counter()
        HFDecoder(sampler, 64).sample((prompts * 64)[:64], params)
        t64.append(time.perf_counter() - start)
    sampling = min(t64) * len(items) / 64  # one step's share of an iteration sampled 64 prompts at a time

    variants = {
        "qcrd (judge, sampled negatives)": (QCRDConfig_(), sampled),
        "qcrd, no judge": (QCRDConfig_(judge=False), sampled),
        "qcrd, judge reuses the scoring states": (QCRDConfig_(judge_features="reuse"), sampled),
        "qcrd, teacher negatives (no sampling)": (QCRDConfig_(negatives="teacher"), [it["teacher_negatives"] for it in items]),
    }
    for name, (cfg, negs) in variants.items():
        student = Student.load(model_dir)
        head = qcrd.new_head(student, cfg, 0) if cfg.judge else None
        loss = qcrd.loss_fn(cfg, FixedNegatives(cfg, head, negs), "sequence", 0)
        timers[name] = with_head(step_timer(student, items, loss, lr=3e-3), head)
        if name.startswith("qcrd (judge") or name == "qcrd, no judge":
            forwards[name] = (lambda s=student, f=loss: f(s, items))
    naive_student = Student.load(model_dir)
    cfg = QCRDConfig_()
    naive_head = qcrd.new_head(naive_student, cfg, 0)
    naive_batch = [dict(it, sampled=neg) for it, neg in zip(items, sampled)]
    timers["qcrd, naive (every candidate with a graph)"] = with_head(step_timer(naive_student, naive_batch, naive_qcrd_loss(cfg, naive_head), lr=3e-3), naive_head)
    return timers, forwards, sampling


def QCRDConfig_(**kw):
    from methods.qcrd import QCRDConfig

    return QCRDConfig(**kw)


def with_head(step, head):
    """A step that also updates the judge head's parameters (as fit's optimizer does)."""
    if head is None:
        return step
    opt = torch.optim.AdamW(list(head.parameters()), lr=3e-3)

    def both() -> None:
        opt.zero_grad(set_to_none=True)
        step()
        opt.step()

    return both


def timed(timers: dict[str, Any], rounds: int, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """(fastest block, median block) seconds per step of each closure, timed round-robin."""
    for step in timers.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, step in timers.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - start) / steps)
    return {n: min(t) for n, t in times.items()}, {n: statistics.median(t) for n, t in times.items()}


def print_table(what: str, rows: dict, medians: dict, baseline: str, families: list[str]) -> None:
    """A markdown table: per family, ms per step (median) and the ratio to `baseline`'s row."""
    head = " | ".join(f"tiny {f} ms/step (median) | vs {baseline} (median)" for f in families)
    print(f"| {what} | {head} |")
    print("|---|" + "---:|---:|" * len(families))
    for name in rows:
        cells = []
        for f in families:
            t, m = rows[name][f], medians[name][f]
            cells += [f"{1000 * t:.1f} ({1000 * m:.1f})", f"**{t / rows[baseline][f]:.2f}x** ({m / medians[baseline][f]:.2f}x)"]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=32, help="items per step (train.batch_size)")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per method per round")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--k", type=int, default=2, help="oracle chains per example")
    ap.add_argument("--wrong-rate", type=float, default=0.5)
    ap.add_argument("--families", default="t5,llama")
    ap.add_argument("--d-model", type=int, default=128, help="tiny student width (the demo's: 128)")
    ap.add_argument("--negative-tokens", type=int, default=16, help="QCRD: tokens per sampled negative (an arith chain is about 8)")
    ap.add_argument("--no-qcrd", action="store_true", help="skip the QCRD table")
    args = ap.parse_args()

    task = get_task("arith", n_train=500, n_valid=10, n_test=10)
    train = task.load("train")[: 4 * args.batch_size]
    pos, neg = split_bank(oracle_chains(task, train, k=args.k, wrong_rate=args.wrong_rate, seed=0))
    positives, negatives = by_example(pos), by_example(neg)
    families = args.families.split(",")
    # the methods that train through stages of their own (NAT, NCE) are in the LoRA table, QCRD
    # (a companion samples its negatives between steps) in a table of its own
    full = [name for name, m in METHODS.items() if not m.stages_of(m.config()) and m.load_student is None and name != "qcrd"]
    rows: dict[str, dict[str, float]] = {name: {} for name in full}  # fastest block
    medians: dict[str, dict[str, float]] = {name: {} for name in full}
    lora_rows: dict[str, dict[str, float]] = {}
    lora_medians: dict[str, dict[str, float]] = {}
    q_rows: dict[str, dict[str, float]] = {}
    q_medians: dict[str, dict[str, float]] = {}
    breakdown: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        for family in families:
            sizes = TinyConfig(d_model=args.d_model, n_heads=args.d_model // 32, d_ff=2 * args.d_model)
            model_dir = build_tiny_model(family, corpus(task, task.load("train")), Path(d) / family, sizes)
            timers = {}
            chain_batch: list[dict[str, Any]] = []
            for name in full:
                method = METHODS[name]
                student = Student.load(model_dir)  # fresh weights per method
                ctx = Capture(
                    student, task, train, positives, negatives, TrainConfig(), lambda s: 0.0, Path(d) / "unused"
                )
                method.train(ctx, method.config())
                items, loss_fn = ctx.captured
                batch = next(micro_batches(items, args.batch_size, 0))
                if name == "single_task":
                    chain_batch = batch
                timers[name] = step_timer(student, batch, loss_fn, lr=3e-3)
            fastest, median = timed(timers, args.rounds, args.steps)
            for name in full:
                rows[name][family], medians[name][family] = fastest[name], median[name]
            fastest, median = timed(lora_timers(model_dir, chain_batch), args.rounds, args.steps)
            for name in fastest:
                lora_rows.setdefault(name, {})[family] = fastest[name]
                lora_medians.setdefault(name, {})[family] = median[name]
            if "qcrd" in METHODS and not args.no_qcrd:
                timers, forwards, sampling = qcrd_timers(model_dir, task, train[: args.batch_size], args.negative_tokens)
                fastest, median = timed(timers, args.rounds, args.steps)
                fwd, _ = timed(forwards, args.rounds, args.steps)  # the loss alone (its graph built, no backward)
                full_name, nojudge = "qcrd (judge, sampled negatives)", "qcrd, no judge"
                for name in fastest:
                    q_rows.setdefault(name, {})[family] = fastest[name]
                    q_medians.setdefault(name, {})[family] = median[name]
                for name in ("qcrd (judge, sampled negatives)", "qcrd, no judge"):  # + their sampling share
                    q_rows.setdefault(name + " + sampling", {})[family] = fastest[name] + sampling
                    q_medians.setdefault(name + " + sampling", {})[family] = median[name] + sampling
                breakdown[family] = {
                    "forward (predict, candidates without a graph, the picked two with one)": fwd[nojudge],
                    "judge (its encoder pass, head, L_D: forward + backward)": fastest[full_name] - fastest[nojudge],
                    "backward + optimizer": fastest[nojudge] - fwd[nojudge],
                    "sampling the negative (amortised)": sampling,
                    "dss step (for scale)": fastest["dss (baseline)"],
                }

    print(
        f"train step time, {args.batch_size} items per step, arith, oracle bank K={args.k} "
        f"(wrong_rate {args.wrong_rate}: {len(pos)} positives, {len(neg)} negatives over {len(train)} examples), "
        f"fastest of {args.rounds} round-robin rounds x {args.steps} step(s), d_model {args.d_model}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}"
    )
    print_table("method", rows, medians, "finetune", families)
    print()
    print("LoRA methods (TDG's r 8 / alpha 16 on q,v), the same batch of positive chains as single_task's:")
    print_table("step", lora_rows, lora_medians, "lora (baseline)", families)
    if q_rows:
        print()
        print(f"QCRD (m 5 positives, k 1 negative of {args.negative_tokens} tokens) vs DSS, the same {args.batch_size} examples:")
        print_table("step", q_rows, q_medians, "dss (baseline)", families)
        print()
        print("A QCRD step (judge on, sampled negatives), fastest blocks, ms:")
        print("| part | " + " | ".join(f"tiny {f}" for f in families) + " |")
        print("|---|" + "---:|" * len(families))
        for part in next(iter(breakdown.values())):
            print(f"| {part} | " + " | ".join(f"{1000 * breakdown[f][part]:.1f}" for f in families) + " |")


if __name__ == "__main__":
    main()
