"""K samples per prompt: one batched `generate` call (num_return_sequences) vs a loop of single samples.

Same tiny student, same prompts, same sampling parameters, measured in one run. Prints the
speed-up of the batched HF decoder over the loop, and tokens/s for both.

    python bench/decode.py [--family llama|t5] [--prompts 64] [--k 8] [--max-new-tokens 24]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.decoding import HFDecoder, SamplingParams
from harness.models import build_tiny_model, corpus
from harness.student import Student
from tasks import get_task


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="llama", choices=["llama", "t5"])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()

    task = get_task("arith", n_train=500, n_valid=10, n_test=args.prompts)
    with tempfile.TemporaryDirectory() as d:
        build_tiny_model(args.family, corpus(task, task.load("train")), Path(d))
        student = Student.load(d)
    prompts = [ex.question for ex in task.load("test")]
    params = SamplingParams(n=args.k, temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0)
    one = SamplingParams(n=1, temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0)
    dec = HFDecoder(student, batch_size=256)
    dec.sample(prompts[:2], params)  # warm-up

    batched, t_batched = timed(lambda: dec.sample(prompts, params))
    loop_dec = HFDecoder(student, batch_size=1)
    looped, t_loop = timed(lambda: [loop_dec.sample([p], one)[0][0] for p in prompts for _ in range(args.k)])

    tok_b = sum(g.n_tokens for gs in batched for g in gs)
    tok_l = sum(g.n_tokens for g in looped)
    print(f"tiny {args.family}, {args.prompts} prompts x K={args.k}, max {args.max_new_tokens} new tokens, {os.cpu_count()} CPU cores")
    print(f"batched generate (num_return_sequences): {t_batched:7.2f} s  {tok_b / t_batched:9.0f} tokens/s")
    print(f"loop of single samples:                  {t_loop:7.2f} s  {tok_l / t_loop:9.0f} tokens/s")
    print(f"speed-up (loop time / batched time): {t_loop / t_batched:.1f}x")


if __name__ == "__main__":
    main()
