"""The vllm backend. vLLM is a GPU extra: these tests run where it is installed with CUDA."""

import importlib.util
import math

import pytest

from harness.backends.vllm import prompt_seed

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_prompt_seed_depends_on_seed_and_text_not_position():
    assert prompt_seed(0, "q") == prompt_seed(0, "q")
    assert prompt_seed(0, "q") != prompt_seed(1, "q") and prompt_seed(0, "q") != prompt_seed(0, "r")


def test_without_vllm_the_backend_is_a_one_line_install_hint():
    if HAS_VLLM:
        pytest.skip("vllm is installed here; the hint is for machines without it")
    from harness.backends.vllm import VLLMConfig, VLLMDecoder
    from harness.errors import UserError

    with pytest.raises(UserError, match=r"pip install 'distillbench\[vllm\]'"):
        VLLMDecoder(VLLMConfig(model="x"))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (GPU extra: pip install 'distillbench[vllm]')")
def test_vllm_samples_k_per_prompt_with_logprobs(tiny_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vllm needs a CUDA GPU")
    from harness.backends.vllm import VLLMConfig, VLLMDecoder
    from harness.decoding import SamplingParams

    family, path = tiny_dir
    if family != "llama":
        pytest.skip("vLLM serves the causal (Llama-style) student")
    dec = VLLMDecoder(VLLMConfig(model=str(path), gpu_memory_utilization=0.3))
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=3)
    out = dec.sample(["Calculate 2 + 3.", "Calculate 7 - 1."], params)
    assert [len(g) for g in out] == [4, 4]
    assert all(0 < g.n_tokens <= 8 and math.isfinite(g.logprob) and g.logprob <= 0 for gs in out for g in gs)
    again = dec.sample(["Calculate 2 + 3.", "Calculate 7 - 1."], params)
    assert [[g.text for g in gs] for gs in out] == [[g.text for g in gs] for gs in again]
