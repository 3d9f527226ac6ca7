"""The student wrapper: full fine-tuning or LoRA (peft) on both families."""

import json

import pytest
import torch

from harness.config import RunSpec, validate
from harness.decoding import GREEDY, HFDecoder
from harness.errors import UserError
from harness.student import LORA_TARGETS, Student
from harness.training import TrainConfig, fit
from methods.common import item_nll

finetune_loss = item_nll()

ITEMS = [{"input": f"Calculate {i} + 1.", "target": str(i + 1)} for i in range(16)]
PROMPTS = ["Calculate 3 + 1.", "Calculate 12 - 5."]


def test_lora_trains_only_the_adapter_then_saves_reloads_and_decodes(tiny_dir, tmp_path):
    family, path = tiny_dir
    student = Student.load(path, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    assert student.is_lora
    trainable = student.trainable_parameters()
    # the family's default targets: T5's q and v, Llama's q_proj and v_proj
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trainable} == set(LORA_TARGETS[family])
    before = {k: v.clone() for k, v in student.model.state_dict().items()}
    fit(student, ITEMS, finetune_loss, TrainConfig(steps=6, batch_size=8, lr=1e-2, eval_every=6), lambda s: 0.0, tmp_path, show_progress=False)
    after = student.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all("lora_" in k for k in changed)  # the base never moves
    assert any("lora_B" in k for k in changed)  # B starts at zero: the adapter did learn

    best = tmp_path / "best"
    cfg = json.loads((best / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(path.resolve()) and cfg["r"] == 4
    assert not (best / "model.safetensors").exists()  # an adapter, not a second copy of the model
    loaded = Student.load(best)
    assert loaded.is_lora and loaded.family == family
    student.model.eval()
    loaded.model.eval()
    with torch.no_grad():
        a = student.score(PROMPTS, ["4", "7"]).sequence_nll()
        b = loaded.score(PROMPTS, ["4", "7"]).sequence_nll()
    assert torch.allclose(a, b, atol=1e-6)
    gens = HFDecoder(loaded).sample(PROMPTS, GREEDY)
    assert [g[0].text for g in gens] == [g[0].text for g in HFDecoder(student).sample(PROMPTS, GREEDY)]
    merged = loaded.merged()
    assert not hasattr(merged, "peft_config") and loaded.is_lora


def test_lora_init_is_seeded_and_leaves_the_global_rng_alone(tiny_dir):
    _, path = tiny_dir
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = Student.load(path, lora={"r": 2}, seed=1)
    assert torch.equal(torch.rand(1), expected)
    b = Student.load(path, lora={"r": 2}, seed=1)
    c = Student.load(path, lora={"r": 2}, seed=2)
    sa, sb, sc = (s.trainable_parameters() for s in (a, b, c))
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert any(not torch.equal(sa[n], sc[n]) for n in sa)


def test_unknown_lora_target_is_a_user_error(tiny_dir):
    with pytest.raises(UserError, match="student.lora"):
        Student.load(tiny_dir[1], lora={"target_modules": ["no_such_layer"]})


def test_lora_spec_section():
    base = {"task": {"name": "arith"}, "method": {"name": "finetune"}}
    spec = validate(RunSpec, {**base, "student": {"lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]}}}, "t")
    assert spec.student.lora.r == 16 and spec.student.lora.alpha == 16 and spec.student.lora.dropout == 0.05
    assert validate(RunSpec, base, "t").student.lora is None  # full fine-tuning by default
    with pytest.raises(UserError, match=r"unknown spec key 'student.lora.alhpa' \(did you mean 'student.lora.alpha'"):
        validate(RunSpec, {**base, "student": {"lora": {"alhpa": 8}}}, "t")
