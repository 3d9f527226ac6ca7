"""Decoders: K samples per prompt, each with its text, log-probability and token count.

Backends share one interface (`Decoder.sample`). This file holds the Hugging Face backend and
`make_decoder` (hf or vllm for a student); the vLLM and OpenAI-compatible backends are adapters
with the same signature (harness.backends.vllm, harness.backends.openai).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from harness.student import Student
from harness.types import Chain, Example


@dataclass(frozen=True)
class SamplingParams:
    """n samples per prompt; temperature 0 means greedy (then n must be 1)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature == 0 and self.n != 1:
            raise ValueError("greedy decoding (temperature 0) gives one sample: use n=1")


GREEDY = SamplingParams(n=1, temperature=0.0)


@dataclass(frozen=True)
class Generation:
    text: str
    logprob: float  # sum over generated tokens of log p_model(token), untempered (T=1)
    n_tokens: int  # generated tokens, EOS included when one was produced
    token_ids: tuple[int, ...] = ()  # the generated tokens, EOS included (not stored in Chains)


class Decoder(Protocol):
    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        """params.n generations for each prompt, in prompt order."""
        ...


class HFDecoder:
    """Batched `generate` with `num_return_sequences`: one call per batch of prompts."""

    def __init__(self, student: Student, batch_size: int = 64) -> None:
        self.student = student
        self.batch_size = batch_size

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        s = self.student
        # Seeding once per call makes a call reproducible for the same prompts and batch size.
        torch.manual_seed(params.seed)
        was_training = s.model.training
        s.model.eval()
        out: list[list[Generation]] = []
        # fewer prompts per batch when each expands into n sequences
        step = max(1, self.batch_size // params.n)
        try:
            for i in range(0, len(prompts), step):
                out.extend(self._batch([s.prompt_text(p) for p in prompts[i : i + step]], params))
        finally:
            s.model.train(was_training)
        return out

    def _batch(self, texts: list[str], params: SamplingParams) -> list[list[Generation]]:
        s, tok = self.student, self.student.tokenizer
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=s.max_input_len).to(s.device)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False)
        res = s.model.generate(**enc, **kwargs)
        prompt_len = 0 if s.family == "t5" else enc.input_ids.shape[1]
        seq = res.sequences[:, prompt_len:]
        if s.family == "t5":
            seq = seq[:, 1:]  # drop the decoder start token
        logits = torch.stack(res.logits, dim=1).float()  # [B*n, T, V], raw (untempered)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, seq.unsqueeze(-1)).squeeze(-1)
        # tokens up to and including the first EOS count; padding after it does not
        is_eos = seq == tok.eos_token_id
        after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0
        valid = ~after_eos
        lp = (logp * valid).sum(1).tolist()
        n_tok = valid.sum(1).tolist()
        texts_out = tok.batch_decode(seq.masked_fill(~valid, tok.pad_token_id), skip_special_tokens=True)
        ids = [tuple(row[:n]) for row, n in zip(seq.tolist(), n_tok, strict=True)]
        gens = [Generation(t.strip(), float(lp_), int(n), i) for t, lp_, n, i in zip(texts_out, lp, n_tok, ids, strict=True)]
        return [gens[j * params.n : (j + 1) * params.n] for j in range(len(texts))]


DECODE_BACKENDS = ("hf", "vllm")


def make_decoder(backend: str, student: Student, batch_size: int = 64) -> Decoder:
    """The decoder of `backend` ('hf' or 'vllm') for a loaded student.

    vLLM needs a model folder: the one the student was loaded from while its weights there are
    still the ones in memory (a trained student's `best` checkpoint), else a temporary export of
    the current weights, in the student's own dtype so its numbers match HFDecoder's. vLLM serves
    causal models only: for an encoder-decoder (T5) student a warning says so and hf decodes.
    """
    if backend == "hf":
        return HFDecoder(student, batch_size)
    if backend != "vllm":
        from harness.errors import unknown

        raise unknown("decoding backend", backend, DECODE_BACKENDS)
    from harness.backends import vllm as vb

    if student.family == "t5":
        vb.warn_fallback(getattr(student.model, "name_or_path", "") or "the student")
        return HFDecoder(student, batch_size)
    folder, tmp = vb.student_folder(student)
    util = 0.85
    if torch.cuda.is_available():  # the student already holds GPU memory: take a share of what is free
        free, total = torch.cuda.mem_get_info()
        util = max(0.05, min(0.85, free / total - 0.05))
    dtype = str(getattr(student.model, "dtype", "auto")).removeprefix("torch.")
    dec = vb.VLLMDecoder(vb.VLLMConfig(model=str(folder), dtype=dtype, gpu_memory_utilization=util))
    dec._export = tmp  # type: ignore[attr-defined]  # the exported folder lives as long as the decoder
    return dec


def to_chains(
    examples: Sequence[Example],
    generations: Sequence[Sequence[Generation]],
    task: Any,
    source: str,
    params: SamplingParams,
    first_sample: int = 0,
) -> list[Chain]:
    """Wrap generations as Chains: extract each answer and check it against the gold answer.

    `first_sample` numbers the chains of a later window after those already drawn.
    """
    chains = []
    for ex, gens in zip(examples, generations, strict=True):
        for i, g in enumerate(gens, first_sample):
            answer = task.extract(g.text)
            chains.append(
                Chain(
                    example_id=ex.id,
                    source=source,
                    text=g.text,
                    answer=answer,
                    correct=task.equivalent(answer, ex.answer),
                    logprob=g.logprob,
                    n_tokens=g.n_tokens,
                    meta={**asdict(params), "sample": i},
                )
            )
    return chains


def sample_early_stopping(
    decoder: Decoder,
    examples: Sequence[Example],
    inputs: Sequence[str],
    task: Any,
    source: str,
    params: SamplingParams,
    window: int,
) -> list[Chain]:
    """Early-stopping self-consistency at decoding time (Li et al. 2024): sample `window` chains
    per example at a time, and stop sampling an example at its first window whose answers are all
    parsed and equivalent; at most `params.n` chains each. Window i uses seed `params.seed + i`.

    The `esc:<window>` scheme over the chains this returns decides exactly as ESC does, and they
    are all the chains that were decoded: the saving is real, not simulated.
    """
    from harness.aggregate import group

    if window < 1 or params.n < window:
        raise ValueError(f"early stopping needs 1 <= window <= n, got window={window}, n={params.n}")
    chains: list[Chain] = []
    pending = list(range(len(examples)))
    for i, start in enumerate(range(0, params.n, window)):
        if not pending:
            break
        size = min(window, params.n - start)
        p = dataclasses.replace(params, n=size, seed=params.seed + i)
        gens = decoder.sample([inputs[j] for j in pending], p)
        new = to_chains([examples[j] for j in pending], gens, task, source, p, first_sample=start)
        chains += new
        still = []
        for j, ex_chains in zip(pending, (new[k * size : (k + 1) * size] for k in range(len(pending))), strict=True):
            ids = group([c.answer for c in ex_chains], task.canonical, task.equivalent).ids
            if not (size == window and ids[0] >= 0 and all(g == ids[0] for g in ids)):
                still.append(j)
        pending = still
    order = {ex.id: n for n, ex in enumerate(examples)}
    return sorted(chains, key=lambda c: (order[c.example_id], c.meta["sample"]))
