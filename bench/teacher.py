"""K teacher chains per prompt: the `sampled` teacher with one batched call vs a loop of single samples.

Same tiny teacher, same few-shot teacher prompts (`task.prompt(example)`), same sampling
parameters, measured in one run. Prints the speed-up of the batched HF teacher (the bank chunk
generator of harness.teacher.sampled over HFDecoder) over a loop calling the same decoder once
per (prompt, sample), and tokens/s for both. With vLLM importable and CUDA available it also
times the `vllm` backend (harness.backends.vllm.VLLMDecoder, i.e. `vllm.LLM(model=<tiny dir>)`)
through the same generator and prints its ratio against the batched HF teacher.

    python bench/teacher.py [--family llama|t5] [--prompts 32] [--k 8] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.decode import timed
from harness.decoding import HFDecoder, SamplingParams
from harness.models import build_tiny_model, corpus
from harness.student import Student
from harness.teacher import sampled
from tasks import get_task


def vllm_skip_reason(family: str) -> str | None:
    """Why the vLLM comparison cannot run here (None when it can)."""
    if family != "llama":
        return f"vLLM serves decoder-only models; the tiny {family} teacher is encoder-decoder"
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'distillbench[vllm]' on a GPU machine)"
    import torch

    if not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="llama", choices=["llama", "t5"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per generate call (teacher.batch_size)")
    args = ap.parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    task = get_task("arith", n_train=500, n_valid=10, n_test=10)
    examples = task.load("train")[: args.prompts]
    tmp = tempfile.TemporaryDirectory()
    model_dir = build_tiny_model(args.family, corpus(task, task.load("train")), Path(tmp.name))
    # loaded as the `hf` teacher loads its model (harness.teacher.generator)
    teacher = Student.load(model_dir, device, max_input_len=2048, max_target_len=args.max_new_tokens)
    prompts = [task.prompt(ex) for ex in examples]
    prompt_tokens = [len(teacher.tokenizer(teacher.prompt_text(p)).input_ids) for p in prompts]
    params = SamplingParams(n=args.k, temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0)
    one = SamplingParams(n=1, temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0)

    dec = HFDecoder(teacher, batch_size=args.batch_size)
    generate = sampled(task, dec, params, f"teacher:hf:tiny-{args.family}")
    generate(examples[:2], 0)  # warm-up
    chains, t_batched = timed(lambda: generate(examples, 0))

    loop_dec = HFDecoder(teacher, batch_size=1)
    loop_dec.sample(prompts[:1], one)  # warm-up
    looped, t_loop = timed(lambda: [loop_dec.sample([p], one)[0][0] for p in prompts for _ in range(args.k)])

    assert all(len(cs) == args.k for cs in chains)
    tok_b = sum(c.n_tokens for cs in chains for c in cs)
    tok_l = sum(g.n_tokens for g in looped)
    cores = torch.cuda.get_device_name(0) if device == "cuda" else f"{os.cpu_count()} CPU cores"
    print(
        f"tiny {args.family} teacher, {len(examples)} arith few-shot prompts "
        f"({min(prompt_tokens)}-{max(prompt_tokens)} tokens) x K={args.k}, T=0.7, "
        f"max {args.max_new_tokens} new tokens, batch {args.batch_size} sequences, {device} ({cores})"
    )
    print(f"hf batched (sampled teacher, num_return_sequences): {t_batched:7.2f} s  {tok_b / t_batched:9.0f} tokens/s")
    print(f"hf loop of single samples (baseline):              {t_loop:7.2f} s  {tok_l / t_loop:9.0f} tokens/s")
    print(f"speed-up (loop time / batched time): {t_loop / t_batched:.1f}x")

    reason = vllm_skip_reason(args.family)
    if reason is not None:
        print(f"vllm vs hf: skipped ({reason})")
        tmp.cleanup()
        return
    from harness.backends.vllm import VLLMConfig, VLLMDecoder

    vdec = VLLMDecoder(VLLMConfig(model=str(model_dir), gpu_memory_utilization=0.3))
    vgenerate = sampled(task, vdec, params, f"teacher:vllm:tiny-{args.family}")
    vgenerate(examples[:2], 0)  # warm-up
    vchains, t_vllm = timed(lambda: vgenerate(examples, 0))
    tok_v = sum(c.n_tokens for cs in vchains for c in cs)
    print(f"vllm (sampled teacher, n={args.k} per request):        {t_vllm:7.2f} s  {tok_v / t_vllm:9.0f} tokens/s")
    print(f"vllm speed-up over hf batched (hf time / vllm time): {t_batched / t_vllm:.1f}x")
    tmp.cleanup()


if __name__ == "__main__":
    main()
