"""The `vllm` teacher/student backend (GPU; `pip install 'distillbench[vllm]'`).

One `generate` call for all prompts, each prompt one request with n=K samples and its own seed
(derived from the call's seed and the prompt, so a resumed build asks the same), raw model
log-probabilities (untempered, as the HF backend reports), and an optional LoRA adapter.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.decoding import Generation, SamplingParams
from harness.errors import UserError


@dataclass(frozen=True)
class VLLMConfig:
    model: str
    lora: str | None = None  # a LoRA adapter folder served on top of `model`
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None


def prompt_seed(seed: int, prompt: str) -> int:
    """A request's seed: fixed by the call's seed and the prompt text (not its position)."""
    return int(hashlib.sha256(f"{seed}\0{prompt}".encode()).hexdigest()[:8], 16)


class VLLMDecoder:
    """harness.decoding.Decoder over a vllm.LLM engine."""

    def __init__(self, config: VLLMConfig) -> None:
        try:
            import vllm
        except ImportError:
            raise UserError("the vllm backend needs vLLM on a GPU machine: pip install 'distillbench[vllm]'") from None
        self.config = config
        self._vllm = vllm
        kw: dict[str, Any] = {"dtype": config.dtype, "gpu_memory_utilization": config.gpu_memory_utilization}
        if config.max_model_len:
            kw["max_model_len"] = config.max_model_len
        if config.lora:
            kw["enable_lora"] = True
        self.llm = vllm.LLM(model=config.model, **kw)
        self._lora = None
        if config.lora:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, config.lora)

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        sp = [
            self._vllm.SamplingParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=prompt_seed(params.seed, p),
                logprobs=0,  # the sampled token's own logprob only
            )
            for p in prompts
        ]
        outs = self.llm.generate(list(prompts), sp, lora_request=self._lora, use_tqdm=False)
        return [
            [
                Generation(
                    text=c.text.strip(),
                    logprob=c.cumulative_logprob if c.cumulative_logprob is not None else math.nan,
                    n_tokens=len(c.token_ids),
                    token_ids=tuple(c.token_ids),
                )
                for c in sorted(o.outputs, key=lambda c: c.index)
            ]
            for o in outs
        ]
