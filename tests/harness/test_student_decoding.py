import pytest
import torch

from harness.decoding import GREEDY, HFDecoder, SamplingParams, to_chains


def test_score_masks_only_target_tokens(student):
    inputs = ["Calculate 1 + 2.", "Calculate 14 - 7."]
    targets = ["3", "7 is the answer"]
    s = student.score(inputs, targets)
    B, T, V = s.logits.shape
    assert (B, T) == s.targets.shape == s.mask.shape and V == len(student.tokenizer)
    n_target = [len(student.tokenizer(t, add_special_tokens=False).input_ids) + 1 for t in targets]  # + EOS
    assert s.mask.sum(1).tolist() == n_target
    nll = s.token_nll()
    assert torch.all(nll[~s.mask] == 0) and torch.all(nll[s.mask] > 0)
    assert torch.allclose(s.sequence_nll(), nll.sum(1) / torch.tensor(n_target))


def test_score_is_independent_of_batch_padding(student):
    student.model.eval()
    alone = student.score(["Calculate 1 + 2."], ["3"]).sequence_nll()
    padded = student.score(["Calculate 1 + 2.", "Calculate 11 + 22 - 33 + 44."], ["3", "44 and more tokens"]).sequence_nll()
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_k_samples_per_prompt_in_one_call(student):
    prompts = ["Calculate 1 + 2.", "Calculate 3 - 9.", "Calculate 5 + 5."]
    p = SamplingParams(n=4, temperature=1.0, max_new_tokens=6, seed=1)
    out = HFDecoder(student, batch_size=8).sample(prompts, p)
    assert [len(g) for g in out] == [4, 4, 4]
    for gens in out:
        for g in gens:
            assert g.logprob <= 0 and 1 <= g.n_tokens <= 6
    again = HFDecoder(student, batch_size=8).sample(prompts, p)
    assert [[g.text for g in gens] for gens in out] == [[g.text for g in gens] for gens in again]


def test_greedy_is_deterministic_and_batch_independent(student):
    prompts = [f"Calculate {i} + {i + 1}." for i in range(6)]
    params = SamplingParams(max_new_tokens=5)
    a = HFDecoder(student, batch_size=64).sample(prompts, params)
    b = HFDecoder(student, batch_size=2).sample(prompts, params)
    assert [g[0].text for g in a] == [g[0].text for g in b]
    assert [g[0].logprob for g in a] == pytest.approx([g[0].logprob for g in b], abs=1e-4)


def forced_logprob(student, prompt: str, ids: tuple[int, ...]) -> float:
    """log p(ids | prompt) by one teacher-forced forward pass over exactly these tokens."""
    tok, model = student.tokenizer, student.model
    target = torch.tensor([list(ids)])
    with torch.no_grad():
        if student.family == "t5":
            enc = tok([prompt], return_tensors="pt")
            start = torch.tensor([[model.config.decoder_start_token_id]])
            logits = model(**enc, decoder_input_ids=torch.cat([start, target[:, :-1]], 1)).logits
        else:
            p = tok([student.prompt_text(prompt)], return_tensors="pt").input_ids
            logits = model(input_ids=torch.cat([p, target], 1)).logits[:, p.shape[1] - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).sum().item()


def test_logprob_is_the_models_own(student, arith):
    """The decoder's per-chain log-probability is the untempered model's: teacher-forcing the
    generated tokens gives the same number, for sampled (T=0.7) and greedy chains alike."""
    student.model.eval()
    prompts = [ex.question for ex in arith.load("valid")[:6]]
    dec = HFDecoder(student, batch_size=8)
    for params in (SamplingParams(n=3, temperature=0.7, max_new_tokens=8, seed=3), GREEDY):
        for prompt, gens in zip(prompts, dec.sample(prompts, params)):
            for g in gens:
                assert len(g.token_ids) == g.n_tokens
                assert forced_logprob(student, prompt, g.token_ids) == pytest.approx(g.logprob, abs=1e-3)


def test_to_chains_extracts_and_checks(student, arith):
    exs = arith.load("test")[:3]
    gens = HFDecoder(student).sample([e.question for e in exs], GREEDY)
    chains = to_chains(exs, gens, arith, "student:test", GREEDY)
    assert [c.example_id for c in chains] == [e.id for e in exs]
    for c, e in zip(chains, exs):
        assert c.answer == arith.extract(c.text)
        assert c.correct == arith.equivalent(c.answer, e.answer)
        assert c.meta["temperature"] == 0 and c.meta["sample"] == 0


def test_sampling_params_validation():
    with pytest.raises(ValueError):
        SamplingParams(n=4, temperature=0)
    with pytest.raises(ValueError):
        SamplingParams(n=0)
