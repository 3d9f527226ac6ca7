import math

import pytest
import torch

from harness.errors import UserError
from methods import METHODS, get_method, make_config
from methods.dss import DSSConfig, dss_loss, loss_fn
from methods.finetune import nll_loss


def test_nll_loss_hand_computed():
    token_nll = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # sequence means 2.0 and 2.0 -> 2.0 (a token mean over the batch would give 2.0 too; change one)
    assert nll_loss(token_nll, mask).item() == pytest.approx(2.0)
    token_nll2 = torch.tensor([[1.0, 3.0, 0.0], [5.0, 0.0, 0.0]])
    # per-sequence means (2, 5) -> 3.5, not the token mean 3.0
    assert nll_loss(token_nll2, mask).item() == pytest.approx(3.5)


def test_nll_loss_ignores_masked_positions_and_empty_rows():
    t = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    m = torch.tensor([[True, False], [False, False]])
    assert nll_loss(t, m).item() == pytest.approx(0.5)  # empty row contributes 0, never NaN


def test_dss_loss_weights():
    p, e = torch.tensor(2.0), torch.tensor(4.0)
    assert dss_loss(p, e, 0.5).item() == pytest.approx(3.0)
    assert dss_loss(p, e, 1.0).item() == pytest.approx(2.0)  # alpha 1: label loss only
    assert dss_loss(p, e, 0.0).item() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        DSSConfig(alpha=1.5)


def test_dss_alpha_one_ignores_rationales(student):
    """With alpha = 1 the rationale gets no gradient weight: the loss equals finetune's on the
    predict-prefixed input, whatever the rationale says."""
    student.model.eval()
    batch = [{"input": "Calculate 1 + 2.", "label": "3", "rationale": "1 + 2 = 3. The answer is 3."}]
    other = [{**batch[0], "rationale": "something else entirely"}]
    cfg = DSSConfig(alpha=1.0)
    a, _ = loss_fn(cfg)(student, batch)
    b, _ = loss_fn(cfg)(student, other)
    assert a.item() == pytest.approx(b.item(), abs=1e-5)
    s = student.score(["predict: Calculate 1 + 2."], ["3"])
    assert a.item() == pytest.approx(nll_loss(s.token_nll(), s.mask).item(), abs=1e-5)


def test_dss_metrics_report_both_parts(student):
    batch = [{"input": "Calculate 1 + 2.", "label": "3", "rationale": "1 + 2 = 3. The answer is 3."}]
    total, m = loss_fn(DSSConfig())(student, batch)
    assert total.item() == pytest.approx(0.5 * m["pred_loss"] + 0.5 * m["expl_loss"], rel=1e-5)
    assert math.isfinite(m["expl_loss"]) and m["expl_loss"] > 0


def test_test_inputs(arith):
    ex = arith.load("test")[0]
    assert METHODS["finetune"].test_input(arith, ex, make_config(METHODS["finetune"], {})) == ex.question
    assert METHODS["dss"].test_input(arith, ex, DSSConfig()) == "predict: " + ex.question


def test_registry_and_config_errors():
    assert get_method("dss").name == "dss"
    with pytest.raises(UserError, match=r"unknown method 'dds' \(did you mean .*'dss'"):
        get_method("dds")
    with pytest.raises(UserError, match=r"unknown option 'alhpa' for method 'dss' \(did you mean 'alpha'"):
        make_config(METHODS["dss"], {"alhpa": 0.1})
    with pytest.raises(UserError, match="alpha must be in"):
        make_config(METHODS["dss"], {"alpha": 2})


def test_every_method_has_citation_and_defaults():
    for name, m in METHODS.items():
        assert m.name == name and m.citation and m.consumes
        m.config()  # paper defaults construct
