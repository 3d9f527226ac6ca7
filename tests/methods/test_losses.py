"""The pure loss functions of single_task / mi / mix / ul / nt against hand-computed values, and
the properties the papers require (zero where it must be zero, gradient only where it should)."""

import math

import pytest
import torch

from harness.errors import UserError
from methods import METHODS, make_config
from methods.dss import DSSConfig
from methods.dss import loss_fn as dss_loss_fn
from methods.finetune import nll_loss
from methods.mi import MIConfig, max_over_time, mi_loss
from methods.mi import loss_fn as mi_loss_fn
from methods.nt import NTConfig, nt_loss
from methods.ul import ULConfig, ul_loss, unlikelihood


def test_max_over_time_excludes_masked_positions():
    probs = torch.tensor([[[0.1, 0.9], [0.8, 0.2], [0.99, 0.99]]])  # the last position is padding
    mask = torch.tensor([[True, True, False]])
    assert max_over_time(probs, mask)[0].tolist() == pytest.approx([0.8, 0.9])
    # a row with no target token pools to zeros, not to the padding's values
    assert max_over_time(probs, torch.zeros(1, 3, dtype=torch.bool)).tolist() == [[0.0, 0.0]]


def test_mi_loss_hand_computed():
    # one sequence, V = 2; logits chosen so the softmaxes are easy: ln 3 -> (0.25, 0.75) etc.
    l3 = math.log(3.0)
    pred = torch.tensor([[[0.0, l3], [l3, 0.0], [50.0, 0.0]]])  # softmax rows (.25,.75), (.75,.25), padding
    pred_mask = torch.tensor([[True, True, False]])
    expl = torch.tensor([[[0.0, 0.0], [0.0, l3]]])  # (.5,.5), (.25,.75)
    expl_mask = torch.tensor([[True, True]])
    a = [0.75, 0.75]  # max over the two unmasked label positions (padding's 1.0 excluded)
    b = [0.5, 0.75]
    log_softmax_b = [b[0] - math.log(math.exp(b[0]) + math.exp(b[1])), b[1] - math.log(math.exp(b[0]) + math.exp(b[1]))]
    expected = -(a[0] * log_softmax_b[0] + a[1] * log_softmax_b[1])
    assert mi_loss(pred, pred_mask, expl, expl_mask).item() == pytest.approx(expected, rel=1e-6)
    # the batch mean of two copies is the same value
    two = mi_loss(pred.repeat(2, 1, 1), pred_mask.repeat(2, 1), expl.repeat(2, 1, 1), expl_mask.repeat(2, 1))
    assert two.item() == pytest.approx(expected, rel=1e-6)


def test_mi_loss_gradient_only_into_rationale_logits():
    torch.manual_seed(0)
    pred = torch.randn(2, 3, 5, requires_grad=True)
    expl = torch.randn(2, 4, 5, requires_grad=True)
    pm = torch.tensor([[True, True, False], [True, True, True]])
    em = torch.tensor([[True, True, True, False], [True, False, False, False]])
    mi_loss(pred, pm, expl, em).backward()
    assert pred.grad is None  # `a` is detached: no gradient into the label head from the MI term
    assert expl.grad is not None and expl.grad.abs().sum() > 0
    # padding positions of the rationale pass get no gradient (they never enter the max)
    assert expl.grad[0, 3].abs().sum() == 0 and expl.grad[1, 1:].abs().sum() == 0


def test_unlikelihood_hand_computed_and_clamped():
    p = torch.tensor([[0.5, 0.9, 0.2]])
    u = unlikelihood(-p.log())
    assert u.tolist()[0] == pytest.approx([-math.log(0.5), -math.log(0.1), -math.log(0.8)], rel=1e-5)
    # p = 1 (nll 0) would be -log 0 = inf: clamped to -log(eps), finite, with zero gradient
    nll = torch.zeros(1, 1, requires_grad=True)
    out = unlikelihood(nll, eps=1e-6)
    out.sum().backward()
    assert out.item() == pytest.approx(-math.log(1e-6), rel=1e-5)
    assert nll.grad.item() == 0.0


def test_ul_loss_hand_computed():
    # row 0 positive: NLLs 1 and 3 -> 2.0; row 1 negative: p = .5, .75 (2 tokens + 1 padding)
    token_nll = torch.tensor([[1.0, 3.0, 0.0], [-math.log(0.5), -math.log(0.75), 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    negative = torch.tensor([False, True])
    ul_row = (-math.log(0.5) - math.log(0.25)) / 2
    assert ul_loss(token_nll, mask, negative, alpha=1.0).item() == pytest.approx((2.0 + ul_row) / 2, rel=1e-6)
    assert ul_loss(token_nll, mask, negative, alpha=0.5).item() == pytest.approx((2.0 + 0.5 * ul_row) / 2, rel=1e-6)


def test_ul_and_nt_without_negatives_equal_nll():
    torch.manual_seed(1)
    token_nll = torch.rand(3, 4) * 3
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    token_nll = token_nll * mask
    none = torch.zeros(3, dtype=torch.bool)
    assert torch.equal(ul_loss(token_nll, mask, none), nll_loss(token_nll, mask))
    assert torch.equal(nt_loss(token_nll, mask, none), nll_loss(token_nll, mask))
    assert torch.equal(nt_loss(token_nll, mask, none, nll_cap=0.5), nll_loss(token_nll, mask))


def test_ul_alpha_zero_negatives_contribute_nothing():
    token_nll = torch.tensor([[1.0, 3.0], [0.2, 0.4]], requires_grad=True)
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss = ul_loss(token_nll, mask, torch.tensor([False, True]), alpha=0.0)
    loss.backward()
    assert loss.item() == pytest.approx(1.0)  # (2.0 + 0) / 2
    assert token_nll.grad[1].abs().sum() == 0


def test_ul_gradient_lowers_negative_token_probability():
    # d/d(nll) of -log(1 - exp(-nll)) < 0: descending the loss raises a negative token's NLL
    nll = torch.tensor([[0.3]], requires_grad=True)
    ul_loss(nll, torch.ones(1, 1, dtype=torch.bool), torch.tensor([True])).backward()
    assert nll.grad.item() < 0


def test_nt_loss_hand_computed_and_cap():
    raw = torch.tensor([[1.0, 3.0, 9.0], [2.0, 6.0, 9.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    token_nll = raw * mask  # as Scored.token_nll gives it: 0 (and no gradient) on padding
    negative = torch.tensor([False, True])
    loss = nt_loss(token_nll, mask, negative, weight=1.0)
    assert loss.item() == pytest.approx((2.0 - 4.0) / 2)
    loss.backward()
    # positive row pushed down (+), negative row's NLL pushed up (-), each 1/(B*|y|)
    assert raw.grad.flatten().tolist() == pytest.approx([0.25, 0.25, 0.0, -0.25, -0.25, 0.0])
    capped = nt_loss(token_nll.detach(), mask, negative, weight=0.5, nll_cap=4.0)
    assert capped.item() == pytest.approx((2.0 - 0.5 * (2.0 + 4.0) / 2) / 2)


def test_nt_cap_stops_gradient_of_improbable_tokens():
    token_nll = torch.tensor([[2.0, 6.0]], requires_grad=True)
    nt_loss(token_nll, torch.ones(1, 2, dtype=torch.bool), torch.tensor([True]), nll_cap=4.0).backward()
    assert token_nll.grad[0].tolist() == pytest.approx([-0.5, 0.0])


def test_mi_off_or_beta_zero_equals_dss_exactly(student):
    student.model.eval()
    batch = [
        {"input": "Calculate 1 + 2.", "label": "3", "rationale": "1 + 2 = 3. The answer is 3."},
        {"input": "Calculate 40 - 8.", "label": "32", "rationale": "40 - 8 = 32. The answer is 32."},
    ]
    with torch.no_grad():
        d, _ = dss_loss_fn(DSSConfig())(student, batch)
        off, m_off = mi_loss_fn(MIConfig(mi_term=False))(student, batch)
        zero, _ = mi_loss_fn(MIConfig(beta=0.0))(student, batch)
        on, m_on = mi_loss_fn(MIConfig())(student, batch)
    assert off.item() == d.item() and zero.item() == d.item()
    assert "mi_loss" not in m_off
    assert on.item() == pytest.approx(d.item() + 0.1 * m_on["mi_loss"], rel=1e-6)
    assert m_on["mi_loss"] > 0


def test_mi_term_gives_no_gradient_to_label_pass(student):
    """On a real student's logits (both families): the MI term sends no gradient into the label
    pass's logits, only into the rationale pass's."""
    p_scored = student.score(["predict: Calculate 1 + 2."], ["3"])
    e_scored = student.score(["explain: Calculate 1 + 2."], ["1 + 2 = 3. The answer is 3."])
    p_logits = p_scored.logits.detach().requires_grad_(True)
    e_logits = e_scored.logits.detach().requires_grad_(True)
    mi_loss(p_logits, p_scored.mask, e_logits, e_scored.mask).backward()
    assert p_logits.grad is None and e_logits.grad.abs().sum() > 0


def test_configs_validate_and_paper_defaults():
    assert MIConfig().beta == 0.1 and MIConfig().alpha == 0.5 and MIConfig().mi_term is True
    assert ULConfig().alpha == 1.0 and NTConfig().weight == 1.0 and NTConfig().nll_cap is None
    for name, bad in [
        ("mi", {"beta": -1}),
        ("ul", {"eps": 0}),
        ("nt", {"weight": -1}),
        ("single_task", {"max_chains": 0}),
    ]:
        with pytest.raises(UserError):
            make_config(METHODS[name], bad)
    with pytest.raises(UserError, match="did you mean 'beta'"):
        make_config(METHODS["mi"], {"betta": 0.2})


def test_test_inputs_of_new_methods(arith):
    ex = arith.load("test")[0]
    for name in ("single_task", "mix", "ul", "nt"):
        m = METHODS[name]
        assert m.test_input(arith, ex, m.config()) == ex.question
    assert METHODS["mi"].test_input(arith, ex, MIConfig()) == "predict: " + ex.question
