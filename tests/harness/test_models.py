import json

import pytest
import torch

from harness.errors import UserError
from harness.models import TinyConfig, build_tiny_model, load_model


def test_tiny_model_is_a_regular_hf_directory(tiny_dir):
    family, path = tiny_dir
    cfg = json.loads((path / "config.json").read_text())
    assert (path / "tokenizer.json").exists() and (path / "model.safetensors").exists()
    if family == "t5":
        assert cfg["model_type"] == "t5" and cfg["d_kv"] >= 32
    else:
        assert cfg["model_type"] == "llama" and cfg["hidden_size"] // cfg["num_attention_heads"] >= 32
    model, tok, fam = load_model(path)
    assert fam == family
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    # digits are single tokens (a number's first one with its space): arithmetic is learnable by a tiny model
    ids = tok("Calculate 47 + 38.", add_special_tokens=False).input_ids
    assert [tok.decode([i]) for i in ids if tok.decode([i]).strip().isdigit()] == [" 4", "7", " 3", "8"]
    assert len(ids) == 7  # Calculate, " 4", "7", " +", " 3", "8", "."
    assert tok.decode(ids) == "Calculate 47 + 38."


def test_tiny_model_is_deterministic(tmp_path):
    texts = ["Calculate 1 + 2.", "3", "Calculate 4 - 5.", "-1"] * 20
    a = build_tiny_model("llama", texts, tmp_path / "a", TinyConfig(vocab_size=280))
    b = build_tiny_model("llama", texts, tmp_path / "b", TinyConfig(vocab_size=280))
    ma, _, _ = load_model(a)
    mb, _, _ = load_model(b)
    for (na, pa), (nb, pb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_untrained_token_nll_starts_near_log_vocab(tiny_dir, arith):
    """A randomly initialised student predicts about uniformly: its mean token NLL on real
    targets is log(vocab) plus a little (the tiny T5 used to start at ~65 from its std-1.0 tied
    embedding; build_tiny_model says why it is re-drawn). Both families, on chain targets."""
    import math

    from harness.student import Student

    family, path = tiny_dir
    s = Student.load(path)
    train = arith.load("train")[:64]
    with torch.no_grad():
        scored = s.score([e.question for e in train], [arith.write_chain(e)[0] for e in train])
        nll = (scored.token_nll().sum() / scored.mask.sum()).item()
    log_v = math.log(s.model.config.vocab_size)
    assert log_v - 0.05 < nll < log_v + 0.25, (family, nll, log_v)
    # the initial logits are small and alike in both families (std ~0.02 * sqrt(d_model))
    assert 0.1 < scored.logits[scored.mask].std(-1).mean().item() < 0.4


def test_head_size_below_32_is_refused(tmp_path):
    with pytest.raises(UserError, match="head size"):
        build_tiny_model("t5", ["a b c"], tmp_path, TinyConfig(d_model=64, n_heads=4))


def test_unknown_family(tmp_path):
    with pytest.raises(UserError, match="unknown model family"):
        build_tiny_model("gpt", ["a"], tmp_path)  # type: ignore[arg-type]


def test_missing_hub_model_fails_fast_offline():
    with pytest.raises(UserError, match=r"cannot load model 'no-such-org/no-such-model'.*HF_HUB_OFFLINE"):
        load_model("no-such-org/no-such-model")


def test_missing_local_dir(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
