"""Scoring throughput of the ASC ranker (harness/ranker.py) on CPU, and what its head costs.

The default ranker (all-MiniLM-L6-v2 encoder + TDG's head, untrained: throughput does not
depend on the weights) scores `--chains` oracle arith chains (K=4 per example, half slipped)
with `score_chains` in batches of `--batch`: tokenizing, batching by length, the forward pass
and writing meta["ranker_score"]. That is the line "ranker scoring: N chains/s".

The ratio is the ranker's forward pass (encoder + chain-token mean pooling + the two-layer
residual head + sigmoid) over a plain forward pass of the same encoder on the same padded
batches (last hidden state only, no pooling, no head): close to 1 means the head and pooling
cost nothing next to the encoder. Both are timed round-robin, `--rounds` rounds, and the
fastest round of each is kept (the least disturbed by other processes; medians alongside).

    python bench/ranker.py [--chains 256] [--batch 64] [--max-length 256] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from harness.ranker import Ranker, RankerConfig, score_chains
from harness.teacher import oracle_chains
from tasks import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=256, help="chains scored per round (K=4 per example)")
    ap.add_argument("--batch", type=int, default=64, help="chains per scoring batch (ranker.batch_score)")
    ap.add_argument("--max-length", type=int, default=256, help="encoder tokens of question + chain")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--encoder", default=RankerConfig().encoder)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    k = 4
    n_examples = -(-args.chains // k)
    task = get_task("arith", n_train=max(500, n_examples), n_valid=10, n_test=10)
    examples = task.load("train")[:n_examples]
    chains = oracle_chains(task, examples, k=k, wrong_rate=0.5, seed=0)[: args.chains]
    questions = {ex.id: ex.question for ex in examples}

    cfg = RankerConfig(encoder=args.encoder, max_length=args.max_length, batch_score=args.batch)
    ranker = Ranker.from_encoder(cfg, seed=0, device="cpu").eval()
    encoded = ranker.encode([questions[c.example_id] for c in chains], [c.text for c in chains])
    items = sorted((e for e in encoded if e is not None), key=len)  # the batching score_chains uses
    batches = [ranker.batch(items[i : i + args.batch]) for i in range(0, len(items), args.batch)]
    tokens = sum(len(e) for e in items)

    def end_to_end() -> None:
        score_chains(ranker, questions, chains)

    def ranker_forward() -> None:
        for b in batches:
            ranker(**b)

    def encoder_forward() -> None:
        for b in batches:
            extra = {"token_type_ids": b["token_type_ids"]} if "token_type_ids" in b else {}
            ranker.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **extra).last_hidden_state

    timers = {"score_chains": end_to_end, "ranker forward": ranker_forward, "encoder forward": encoder_forward}
    times: dict[str, list[float]] = {name: [] for name in timers}
    with torch.no_grad():
        for fn in timers.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for name, fn in timers.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)

    n = len(chains)
    best = {name: min(t) for name, t in times.items()}
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"{n} oracle arith chains ({len(items)} fit, {tokens / max(1, len(items)):.1f} tokens each with the question), "
        f"encoder {args.encoder}, fastest of {args.rounds} round-robin rounds, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}"
    )
    print(
        f"ranker scoring: {n / best['score_chains']:.0f} chains/s (batch {args.batch}, max_length {args.max_length}, "
        f"CPU threads {torch.get_num_threads()}); median {n / med['score_chains']:.0f} chains/s"
    )
    per = {name: 1000 * best[name] / len(items) for name in ("ranker forward", "encoder forward")}
    print(
        f"ranker forward / plain encoder forward: {best['ranker forward'] / best['encoder forward']:.3f}x "
        f"({per['ranker forward']:.2f} vs {per['encoder forward']:.2f} ms per chain; median "
        f"{med['ranker forward'] / med['encoder forward']:.3f}x)"
    )
    print(f"score_chains / ranker forward (tokenizing, batching, meta): {best['score_chains'] / best['ranker forward']:.3f}x")


if __name__ == "__main__":
    main()
