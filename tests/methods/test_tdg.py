"""NAT and NCE (TDG, methods/nat.py, methods/nce.py): the integrate unit, the two stages, the
calibrated distillation loss, and resuming stage 2 after a kill."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.student import Student
from harness.teacher import oracle_chains, split_bank
from harness.training import TrainConfig, TrainContext
from methods import METHODS
from methods.nat import IntegrateUnit, NATConfig, NATStudent, integrate, integrate_factored, peft_with
from methods.nce import NCEConfig, calibration_weight, loss_fn, nce_loss

CFG = TrainConfig(steps=4, batch_size=4, lr=3e-3, eval_every=2, log_every=1, seed=0)


def by_example(chains):
    out: dict[str, list] = {}
    for c in chains:
        out.setdefault(c.example_id, []).append(c)
    return out


def context(student, task, out_dir, logged=None, models=None, config=CFG, evaluate=lambda s: 0.0) -> TrainContext:
    train = task.load("train")[:16]
    pos, neg = split_bank(oracle_chains(task, train, k=2, wrong_rate=0.5, seed=0))
    return TrainContext(
        student=student, task=task, train=train, positives=by_example(pos), negatives=by_example(neg), config=config,
        evaluate=evaluate, out_dir=out_dir, log=(lambda m, s: logged.append((s, m))) if logged is not None else (lambda m, s: None),
        show_progress=False, models=models or {},
    )


def nat_student(path, seed=0, neg_scale=0.5) -> NATStudent:
    """A NAT student at stage 2's start, its negative adapter set to non-zero weights."""
    plain = Student.load(path)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q", "v"] if plain.family == "t5" else ["q_proj", "v_proj"]}
    model = peft_with(plain.model, plain.family, lora, "neg", str(path), seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B.neg" in n:
                p.normal_(0, neg_scale)
    return NATStudent.build(model, plain, NATConfig(), lora, str(path), seed)


# --- the integrate unit --------------------------------------------------------------------------


def test_stage_two_starts_as_the_base_model_exactly(tiny_dir):
    """W2 is zero at initialisation, so the integrated output is h whatever the adapters hold."""
    family, path = tiny_dir
    nat = nat_student(path)
    nat.model.eval()
    base = Student.load(path)
    base.model.eval()
    x, y = ["Calculate 12 + 7.", "Calculate 3 - 9."], ["19", "-6"]
    with torch.no_grad():
        got = nat.score(x, y).logits
        want = base.score(x, y).logits
        with nat.branch("neg"):  # the negative branch alone does differ: the test can see adapters
            neg = nat.score(x, y).logits
    assert torch.equal(got, want)
    assert not torch.allclose(neg, want)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.floats(0.05, 1.0), st.floats(0.1, 1e3), st.integers(0, 2**16))
def test_integration_weight_stays_within_beta_on_any_projection_shape(d_in, d_out, beta, scale, seed):
    """a in [-beta, beta] for any input, including non-square projections (d_in != d_out), and
    the output keeps h's shape."""
    g = torch.Generator().manual_seed(seed)
    unit = IntegrateUnit(d_in, d_out, att_dim=8, hidden=8)
    with torch.no_grad():
        unit.W2.weight.normal_(generator=g)
    x = torch.randn(2, 3, d_in, generator=g) * scale
    h, d_pos, d_neg = (torch.randn(2, 3, d_out, generator=g) * scale for _ in range(3))
    out, a = integrate(x, h, d_pos, d_neg, unit, beta=beta)
    assert out.shape == h.shape and a.shape == (2, 3)
    assert (a.abs() <= beta + 1e-6).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20), st.integers(1, 20), st.integers(1, 4), st.floats(0.1, 2.0), st.integers(0, 2**16))
def test_the_factored_integration_is_the_same_function(d_in, d_out, r, s, seed):
    """What training runs (integrate_factored, from the adapters' factors) equals the paper's form
    (integrate, from the full deltas), output and a, in value and in gradient."""
    g = torch.Generator().manual_seed(seed)
    unit = IntegrateUnit(d_in, d_out, att_dim=6, hidden=5)
    with torch.no_grad():
        unit.W2.weight.normal_(generator=g)
    x = torch.randn(3, d_in, generator=g, dtype=torch.float64)
    h = torch.randn(3, d_out, generator=g, dtype=torch.float64)
    u_pos, u_neg = torch.randn(3, r, generator=g, dtype=torch.float64), torch.randn(3, r, generator=g, dtype=torch.float64)
    B_pos = torch.randn(d_out, r, generator=g, dtype=torch.float64, requires_grad=True)
    B_neg = torch.randn(d_out, r, generator=g, dtype=torch.float64)
    unit = unit.double()
    ref, a_ref = integrate(x, h, s * u_pos @ B_pos.T, 2 * s * u_neg @ B_neg.T, unit, 0.5, 1.0)
    fast, a_fast = integrate_factored(x, h, u_pos, u_neg, B_pos, B_neg, s, 2 * s, unit, 0.5, 1.0)
    assert torch.allclose(ref, fast, atol=1e-9) and torch.allclose(a_ref, a_fast, atol=1e-9)
    g_ref = torch.autograd.grad(ref.sum(), [B_pos, unit.W1.weight, unit.W_K.weight])
    g_fast = torch.autograd.grad(fast.sum(), [B_pos, unit.W1.weight, unit.W_K.weight])
    assert all(torch.allclose(u, v, atol=1e-8) for u, v in zip(g_ref, g_fast))


def test_integration_by_hand():
    """One position, d_in 1, d_out 2: q . k and v computed by hand."""
    unit = IntegrateUnit(1, 2, att_dim=1, hidden=1)
    with torch.no_grad():
        unit.W_Q.weight.fill_(1.0)  # q = x
        unit.W_K.weight.copy_(torch.tensor([[1.0, 0.0]]))  # k = first coordinate
        unit.W1.weight.copy_(torch.tensor([[0.0, 1.0]]))  # second coordinate, through GELU
        unit.W2.weight.copy_(torch.tensor([[1.0], [2.0]]))
    x, h = torch.tensor([2.0]), torch.tensor([1.0, 1.0])
    d_pos, d_neg = torch.tensor([0.0, 1.0]), torch.tensor([1.0, -1.0])
    out, a = integrate(x, h, d_pos, d_neg, unit, beta=0.5)
    # pos = [1, 2], neg = [2, 0]; q.k_pos = 2, q.k_neg = 4; att_neg = e^4 / (e^2 + e^4)
    att_neg = math.exp(4) / (math.exp(2) + math.exp(4))
    want_a = (2 * att_neg - 1) * 0.5
    gelu = lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    v_pos, v_neg = gelu(2.0) * torch.tensor([1.0, 2.0]), gelu(0.0) * torch.tensor([1.0, 2.0])
    assert a.item() == pytest.approx(want_a, rel=1e-6)
    assert out.tolist() == pytest.approx((h + v_pos * (1 - want_a) + v_neg * want_a).tolist(), rel=1e-6)


def test_non_square_projection_in_a_real_model(tmp_path):
    """A Llama with grouped KV heads: v_proj maps 128 -> 64, which the authors' code cannot adapt."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.models import train_tokenizer

    tok = train_tokenizer(["Calculate 1 + 2. The answer is 3."] * 4, 300, "llama")
    cfg = LlamaConfig(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                      num_hidden_layers=1, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    nat = nat_student(tmp_path)
    v = next(layer for name, layer in nat.layers.items() if name.endswith("v_proj"))
    assert (v.get_base_layer().in_features, v.get_base_layer().out_features) == (128, 64)
    s = nat.score(["Calculate 1 + 2."], ["3"])
    s.token_nll().sum().backward()  # gradients flow through the unit of the non-square layer
    assert v.nat_integrate.W2.weight.grad is not None


# --- the two stages ------------------------------------------------------------------------------


def test_stage_two_leaves_the_negative_adapter_untouched_and_logs_a(student, arith, tmp_path):
    """Stage 1's saved LoRA_neg is bit-identical to the trained NAT model's; `a` is logged per
    layer and stays within beta; a second NAT run reuses stage 1 instead of training it again."""
    from safetensors.torch import load_file

    logged: list = []
    ctx = context(student, arith, tmp_path / "a", logged)
    METHODS["nat"].train(ctx, NATConfig())
    nat = ctx.student
    assert isinstance(nat, NATStudent)
    stage1 = next((tmp_path / "a" / "stages").iterdir())
    saved = load_file(str(stage1 / "best" / "neg" / "adapter_model.safetensors"))
    params = dict(nat.model.named_parameters())
    for name, value in saved.items():
        key = next(k for k in params if k.replace(".neg.", ".") == name.replace(".weight", ".weight"))
        assert torch.equal(params[key].detach().cpu(), value), key
    assert all(not p.requires_grad for n, p in params.items() if ".neg." in n)
    a_rows = [m for _, m in logged if "train/nat/a_mean" in m]
    assert a_rows and all(abs(m["train/nat/a_mean"]) <= 0.5 for m in a_rows)
    layers = {k for m in a_rows for k in m if k.startswith("train/nat/a/")}
    assert len(layers) == len(nat.layers)
    assert [m["nat/stage1_reused"] for _, m in logged if "nat/stage1_reused" in m] == [0.0]
    assert any("nat_stage1/train/loss" in m for _, m in logged)  # stage 1's own curve


def test_nat_checkpoint_reloads_with_the_same_outputs(student, arith, tmp_path):
    ctx = context(student, arith, tmp_path)
    METHODS["nat"].train(ctx, NATConfig())
    ctx.student.model.eval()
    again = METHODS["nat"].load_student(tmp_path / "best")
    x, y = ["Calculate 5 + 4."], ["9"]
    with torch.no_grad():
        assert torch.equal(ctx.student.score(x, y).logits, again.score(x, y).logits)
        with ctx.student.branch("neg"), again.branch("neg"):
            assert torch.equal(ctx.student.score(x, y).logits, again.score(x, y).logits)
    with pytest.raises(Exception, match="cannot be merged"):
        again.merged()


NAT_RESUME = """
import sys, time
from pathlib import Path
import torch
from harness.student import Student
from harness.teacher import oracle_chains, split_bank
from harness.training import TrainConfig, TrainContext
from methods import METHODS
from methods.nat import NATConfig
from tasks import get_task

def run(path, out, sleep):
    task = get_task("arith", n_train=64, n_valid=8, n_test=8)
    train = task.load("train")[:16]
    pos, neg = split_bank(oracle_chains(task, train, k=2, wrong_rate=0.5, seed=0))
    group = lambda cs: {c.example_id: [d for d in cs if d.example_id == c.example_id] for c in cs}
    def evaluate(s):
        time.sleep(sleep)  # slow evaluations leave time to kill stage 2 mid-way
        return 0.0
    cfg = TrainConfig(steps=12, batch_size=4, lr=3e-3, eval_every=3, log_every=3, seed=1)
    student = Student.load(path, lora={"r": 4, "alpha": 8, "dropout": 0.1}, seed=1)
    ctx = TrainContext(student=student, task=task, train=train, positives=group(pos), negatives=group(neg),
                       config=cfg, evaluate=evaluate, out_dir=Path(out), show_progress=False)
    METHODS["nat"].train(ctx, NATConfig())
    return {k: v.detach().clone() for k, v in ctx.student.trainable_parameters().items()}

if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], float(sys.argv[3]))
"""


@pytest.mark.parametrize("tiny_dir", ["llama"], indirect=True)  # LoRA dropout: the RNG states must resume too
def test_stage_two_resumes_after_a_kill_like_an_uninterrupted_run(tiny_dir, tmp_path):
    """SIGKILL a NAT run once stage 2 has saved its state, restart it: stage 1 is reused from its
    cache, stage 2 continues, and the final weights equal an uninterrupted run's."""
    import os
    import subprocess
    import sys
    import time

    family, path = tiny_dir
    script = tmp_path / "nat.py"
    script.write_text(NAT_RESUME)
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "resumed"
    killed = subprocess.Popen(
        [sys.executable, str(script), str(path), str(out), "0.5"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE, text=True,
    )
    ns: dict = {}
    exec(NAT_RESUME, ns)
    w_full = ns["run"](path, tmp_path / "full", 0.0)  # meanwhile, uninterrupted

    state = out / "last.pt"  # stage 2's (stage 1 trains in out/stages/)
    deadline = time.time() + 180
    while not state.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    killed.kill()
    killed.wait()
    assert killed.returncode == -9, killed.stderr.read()
    saved_step = torch.load(state, weights_only=True)["step"]
    assert 3 <= saved_step < 12

    w_resumed = ns["run"](path, out, 0.0)
    assert w_full.keys() == w_resumed.keys()
    assert any(".pos." in k for k in w_full) and any("nat_integrate" in k for k in w_full)
    assert all(torch.allclose(w_full[k], w_resumed[k], atol=1e-6) for k in w_full)


# --- NCE -----------------------------------------------------------------------------------------


def test_calibration_weight_by_hand():
    """V = 2: p_pos = (0.5, 0.5), p_neg = (0.9, 0.1) at one token, equal at the other."""
    pos = torch.log(torch.tensor([[[0.5, 0.5], [0.3, 0.7]]]))
    neg = torch.log(torch.tensor([[[0.9, 0.1], [0.3, 0.7]]]))
    mask = torch.tensor([[True, True]])
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert calibration_weight(pos, neg, mask).tolist() == pytest.approx([math.tanh(kl / 2)], rel=1e-5)
    assert calibration_weight(pos, neg, mask, "token")[0].tolist() == pytest.approx([math.tanh(kl), 0.0], abs=1e-6)
    # a masked position does not count
    assert calibration_weight(pos, neg, torch.tensor([[True, False]])).tolist() == pytest.approx([math.tanh(kl)], rel=1e-5)


def test_nce_loss_is_ce_plus_half_kd_when_the_two_branches_agree():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 5, generator=g)
    teacher = torch.randn(2, 3, 5, generator=g)
    targets = torch.tensor([[1, 2, 0], [4, 4, 3]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    loss, w = nce_loss(student, targets, mask, teacher, teacher.clone(), alpha=0.5)
    assert w.tolist() == [0.0, 0.0]
    ce = torch.nn.functional.cross_entropy(student.transpose(1, 2), targets, reduction="none")
    kd = -(teacher.softmax(-1) * student.log_softmax(-1)).sum(-1)
    per_token = (0.5 * ce + 0.5 * kd * 0.5) * mask
    want = (per_token.sum(1) / mask.sum(1)).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    # alpha 0: plain CE whatever the teacher says
    loss0, _ = nce_loss(student, targets, mask, teacher, torch.randn(2, 3, 5, generator=g), alpha=0.0)
    assert loss0.item() == pytest.approx(((ce * mask).sum(1) / mask.sum(1)).mean().item(), rel=1e-6)
    # disagreement raises the KD weight: a larger loss than with agreeing branches
    other = teacher + 3 * torch.randn(2, 3, 5, generator=g)
    loss_w, w2 = nce_loss(student, targets, mask, teacher, other, alpha=0.5)
    assert (w2 > 0).all() and loss_w > loss


def test_nce_gradients_reach_only_the_new_student(tiny_dir, arith, tmp_path):
    family, path = tiny_dir
    nat = nat_student(path)
    nat.model.eval()
    for p in nat.model.parameters():
        p.requires_grad = False
    fresh = Student.load(path, lora={"r": 4, "alpha": 8, "dropout": 0.0}, seed=2)
    batch = [{"input": "Calculate 2 + 3.", "target": "5"}, {"input": "Calculate 9 - 4.", "target": "5"}]
    loss, metrics = loss_fn(nat, NCEConfig(), "sequence")(fresh, batch)
    loss.backward()
    assert 0.0 < metrics["nce/w"] < 1.0  # the negative branch differs from NAT: a real weight
    assert all(p.grad is None for p in nat.model.parameters())
    grads = [p.grad for p in fresh.trainable_parameters().values()]
    assert grads and all(g is not None for g in grads)


def test_nce_needs_the_nat_model(student, arith, tmp_path):
    with pytest.raises(Exception, match="needs a trained NAT model"):
        METHODS["nce"].train(context(student, arith, tmp_path), NCEConfig())
