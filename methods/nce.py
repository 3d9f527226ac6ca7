"""nce — Negative Calibrated Enhancement: self-distillation from the NAT model (TDG, Li et al. 2024).

"Turning Dust into Gold" (Li et al., AAAI 2024, arXiv 2312.12832, Sec. 3.3; authors' code:
github Yiwei98/TDG, code/distill_NCE.py). A fresh student (the same base with a new LoRA) learns
the positive chains from the gold tokens and from the trained NAT model, whose two outputs
calibrate how much each example is distilled:

    p_pos = NAT(x) with its integrate unit (the full NAT model),
    p_neg = the NAT model's negative branch alone (base + LoRA_neg; the authors' "neg" mode),
    w_b   = tanh( 1/|y_b| sum_t KL(p_neg,t || p_pos,t) )                          one per sequence
    L     = (1 - alpha) CE + alpha T^2 KD(p_pos -> student) (0.5 + w_b)

where per target token CE = -log p_student(y_t), KD = -sum_v p_pos(v) log p_student(v) (the
authors' soft cross-entropy; its gradient is that of KL(p_pos || p_student)), both at temperature
T, reduced like every loss here (methods.common.reduce_tokens). alpha 0.5, T 1. `weighting: token`
uses w_b,t = tanh(KL_t) per token instead: the form the paper's text describes (its code weights
sequences). Gradients reach only the new student: the NAT model runs under no_grad, in eval mode.

NCE needs a trained NAT model: MethodDef.stages = ("nat",), so the pipeline trains (or reuses) the
NAT checkpoint of the same cell settings with the options in `nat:` and hands its folder over as
ctx.models["nat"]; the NCE run records which checkpoint (and NAT run, when one exists) it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from harness.errors import UserError
from harness.student import Student
from harness.training import Item, TrainContext, TrainResult
from methods.base import MethodDef
from methods.common import Reduction, chain_items, reduce_tokens
from methods.finetune import test_input  # the task's own input
from methods.nat import TDG_LORA, NATStudent, base_of, lora_options

CITATION = "Li et al. 2024, Turning Dust into Gold (TDG), AAAI, arXiv 2312.12832, Sec. 3.3 (NCE); code github Yiwei98/TDG"


@dataclass(frozen=True)
class NCEConfig:
    alpha: float = 0.5  # weight of the KD term
    temperature: float = 1.0
    weighting: Literal["sequence", "token"] = "sequence"  # sequence: the authors' code; token: the paper's text
    nat: dict[str, Any] = field(default_factory=dict)  # options of the NAT model distilled from (methods/nat.py)
    max_chains: int | None = None  # positives per example; None: all

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.weighting not in ("sequence", "token"):
            raise ValueError(f"weighting must be 'sequence' or 'token', got {self.weighting!r}")
        if not isinstance(self.nat, dict):
            raise ValueError(f"nat must be a mapping of NAT options, got {self.nat!r}")


def calibration_weight(pos_logits: torch.Tensor, neg_logits: torch.Tensor, mask: torch.Tensor, weighting: str = "sequence", temperature: float = 1.0) -> torch.Tensor:
    """w = tanh(mean_t KL(p_neg,t || p_pos,t)) [B] (sequence), or tanh(KL_t) [B, T] (token).
    pos_logits, neg_logits [B, T, V]; mask [B, T]."""
    log_pos = F.log_softmax(pos_logits.float() / temperature, -1)
    log_neg = F.log_softmax(neg_logits.float() / temperature, -1)
    kl = (log_neg.exp() * (log_neg - log_pos)).sum(-1) * mask  # [B, T]
    if weighting == "token":
        return torch.tanh(kl)
    return torch.tanh(kl.sum(1) / mask.sum(1).clamp(min=1))


def nce_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    weighting: str = "sequence",
    reduction: Reduction = "sequence",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, w): logits [B, T, V] of the student and of NAT's two branches aligned with targets
    [B, T], mask [B, T] -> the scalar loss of the module docstring and the weights w."""
    with torch.no_grad():
        w = calibration_weight(pos_logits, neg_logits, mask, weighting, temperature)
        p_pos = F.softmax(pos_logits.float() / temperature, -1)
    log_s = F.log_softmax(student_logits.float() / temperature, -1)
    ce = F.cross_entropy(student_logits.float().transpose(1, 2), targets, reduction="none")  # [B, T]
    kd = -(p_pos * log_s).sum(-1) * temperature**2  # [B, T]
    scale = 0.5 + (w if w.dim() == 2 else w.unsqueeze(1))
    per_token = ((1 - alpha) * ce + alpha * kd * scale) * mask
    return reduce_tokens(per_token, mask, reduction), w


def loss_fn(nat: NATStudent, cfg: NCEConfig, reduction: Reduction) -> Any:
    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        inputs, targets = [b["input"] for b in batch], [b["target"] for b in batch]
        s = student.score(inputs, targets)
        with torch.no_grad():
            pos = nat.score(inputs, targets).logits
            with nat.branch("neg"):
                neg = nat.score(inputs, targets).logits
        value, w = nce_loss(s.logits, s.targets, s.mask, pos, neg, cfg.alpha, cfg.temperature, cfg.weighting, reduction)
        w_mean = (w * s.mask).sum() / s.mask.sum().clamp(min=1) if w.dim() == 2 else w.mean()
        return value, {"nce/w": w_mean.item()}

    return loss


def train(ctx: TrainContext, cfg: NCEConfig) -> TrainResult:
    if "nat" not in ctx.models:
        raise UserError("nce needs a trained NAT model (ctx.models['nat']); the pipeline provides it through MethodDef.stages")
    nat = NATStudent.load_nat(ctx.models["nat"], str(ctx.student.device), max_input_len=ctx.student.max_input_len, max_target_len=ctx.student.max_target_len)
    nat.model.eval()  # the teacher: no dropout, no gradient
    for p in nat.model.parameters():
        p.requires_grad = False
    if nat.tokenizer.get_vocab() != ctx.student.tokenizer.get_vocab():
        raise UserError("nce: the NAT model's tokenizer differs from the student's; distil between models of one base")
    if not ctx.student.is_lora:  # a fresh student: the same base with a new LoRA (TDG's)
        _, ref = base_of(ctx.student)
        ctx.student.add_lora({**TDG_LORA, "target_modules": lora_options(ctx.student)["target_modules"]}, base=ref, seed=ctx.config.run_seed)
    items = chain_items(ctx, negatives=False, max_chains=cfg.max_chains)
    return ctx.fit(items, loss_fn(nat, cfg, ctx.config.loss_reduction))


METHOD = MethodDef(
    "nce", NCEConfig, train, test_input, CITATION,
    "teacher positives, distilled through the NAT model (its negative branch calibrates the weight)",
    inputs=frozenset({"positives", "model"}),
    passes=3,  # a student pass and two NAT passes (no backward) per item
    stages=("nat",),
    plan=(
        "the nat model of the same settings (options `nat:`): its cell's checkpoint, else trained once here",
        "a fresh LoRA student on the positive chains: CE + calibrated KD from NAT (2 NAT forward passes per batch)",
    ),
)
