"""nat — Negative Assistant Training: a dual LoRA with an integrate unit (TDG, Li et al. 2024).

"Turning Dust into Gold" (Li et al., AAAI 2024, arXiv 2312.12832, Sec. 3.2; authors' code:
github Yiwei98/TDG, code/peft_NAT/tuners/lora.py and code/finetune.py).

Stage 1 trains a negative LoRA (adapter "neg") on the teacher's wrong chains only, with plain NLL;
no selection on valid (a negative model is not meant to be accurate): the last weights are kept.
It is a cached stage of its own (TrainContext.cached), shared by every cell with the same student,
bank, budget and seed, and it resumes after a kill like every training run.

Stage 2 freezes LoRA_neg and trains a positive LoRA (adapter "pos") plus the integrate unit on the
positive chains. Per adapted linear layer, with x its input and h = W x its base output:

    pos = h + s B_pos A_pos x                neg = h + s B_neg A_neg x          (s = alpha / r)
    q = W_Q x                                k_c = W_K c          for c in {pos, neg}
    v_c = W2 GELU(W1 c)                      (W2 zero-initialised)
    att = softmax_c(q . k_c / T)             a = (2 att_neg - 1) beta      in [-beta, beta]
    out = h + v_pos (1 - a) + v_neg a

so at initialisation out = h exactly. Sizes: W_Q [d_att, d_in], W_K [d_att, d_out], W1 [hidden,
d_out], W2 [d_out, hidden]; d_att = hidden = 128 as in the authors' code, which sized W_K and W1 by
d_in and so only ran on square projections: here any d_in != d_out works (T5's q/v, Llama's
q_proj/v_proj with grouped KV heads). No 1/sqrt(d_att) scaling and T = 1 (the authors' code).

Built on peft without forking it: the student is a peft model with two LoRA adapters, "neg" and
"pos", on the same target modules; peft's own forward is switched to the base output
(`disable_adapter_layers`) and a forward hook on each LoRA layer computes the integration from the
layer's peft adapters and its `nat_integrate` unit (a child module of the layer). Checkpoints are
peft's adapter folders (`neg/`, `pos/`: each loadable by peft alone) plus `nat_integrate.safetensors`
and `nat.json`. The mean integration weight `a` of every layer is logged while training
(`train/nat/a/<layer>`, and `train/nat/a_mean`).

LoRA settings: the run's `student.lora` when given, else TDG's (r 8, alpha 16, dropout 0.05 on the
family's query/value projections); both adapters use the same.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError
from harness.student import LORA_TARGETS, Student
from harness.training import Item, TrainContext, TrainResult, fit
from methods.base import MethodDef
from methods.common import chain_items, item_nll
from methods.finetune import test_input  # the task's own input

CITATION = "Li et al. 2024, Turning Dust into Gold (TDG), AAAI, arXiv 2312.12832, Sec. 3.2 (NAT); code github Yiwei98/TDG"

# TDG's LoRA (Sec. 4.1 and code/finetune.py), used when the run gives no student.lora
TDG_LORA: dict[str, Any] = {"r": 8, "alpha": 16, "dropout": 0.05}
UNIT = "nat_integrate"  # the child module of each LoRA layer holding its integrate unit
UNIT_FILE, META_FILE = "nat_integrate.safetensors", "nat.json"
MODES = ("nat", "neg", "pos", "base")  # what the adapted layers output (NATStudent.branch)


@dataclass(frozen=True)
class NATConfig:
    beta: float = 0.5  # bound of the integration weight a
    att_dim: int = 128  # width of W_Q, W_K (authors' code: 128)
    hidden: int = 128  # width of W1 (authors' code: 128)
    temperature: float = 1.0  # of the softmax over {pos, neg} (authors' code: T = 1)
    max_chains: int | None = None  # chains of each kind per example in both stages; None: all

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise ValueError(f"beta must be in (0, 1], got {self.beta}")
        if self.att_dim < 1 or self.hidden < 1:
            raise ValueError("att_dim and hidden must be >= 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.max_chains is not None and self.max_chains < 1:
            raise ValueError(f"max_chains must be >= 1 or None, got {self.max_chains}")


class IntegrateUnit(nn.Module):
    """W_Q, W_K, W1, W2 of one adapted layer (nn.Linear's default init; W2 zero)."""

    def __init__(self, d_in: int, d_out: int, att_dim: int = 128, hidden: int = 128) -> None:
        super().__init__()
        self.W_Q = nn.Linear(d_in, att_dim, bias=False)
        self.W_K = nn.Linear(d_out, att_dim, bias=False)
        self.W1 = nn.Linear(d_out, hidden, bias=False)
        self.W2 = nn.Linear(hidden, d_out, bias=False)
        nn.init.zeros_(self.W2.weight)


def integrate(
    x: torch.Tensor, h: torch.Tensor, d_pos: torch.Tensor, d_neg: torch.Tensor, unit: IntegrateUnit,
    beta: float = 0.5, temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., d_in], h / d_pos / d_neg [..., d_out] (base output, s B A x of each adapter) ->
    (out [..., d_out], a [...]), the equations of the module docstring."""
    pos, neg = h + d_pos, h + d_neg
    q = unit.W_Q(x)
    s_pos = (q * unit.W_K(pos)).sum(-1)
    s_neg = (q * unit.W_K(neg)).sum(-1)
    att_neg = torch.sigmoid((s_neg - s_pos) / temperature)  # the softmax over the two, its neg entry
    a = (2 * att_neg - 1) * beta
    v_pos = unit.W2(F.gelu(unit.W1(pos)))
    v_neg = unit.W2(F.gelu(unit.W1(neg)))
    out = h + v_pos * (1 - a).unsqueeze(-1) + v_neg * a.unsqueeze(-1)
    return out, a


def integrate_factored(
    x: torch.Tensor, h: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor, B_pos: torch.Tensor, B_neg: torch.Tensor,
    s_pos: float, s_neg: float, unit: IntegrateUnit, beta: float = 0.5, temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`integrate` computed from the adapters' low-rank factors, what training runs: the same
    function, at about a third of the unit's cost. With u_c = A_c dropout(x) [..., r], B_c [d_out, r]
    (so d_c = s_c B_c u_c):

        q.k_neg - q.k_pos = q . W_K (d_neg - d_pos)            h cancels: one r-sized product each
        W1 c = W1 h + s_c (W1 B_c) u_c                          one d_out-sized product for both
        v_pos (1 - a) + v_neg a = W2 [GELU(W1 pos)(1 - a) + GELU(W1 neg) a]     W2 is linear

    so the unit needs three full-width products (W_Q x, W1 h, W2 .) instead of seven.
    """
    q = unit.W_Q(x)
    k_diff = s_neg * (u_neg @ (unit.W_K.weight @ B_neg).T) - s_pos * (u_pos @ (unit.W_K.weight @ B_pos).T)
    att_neg = torch.sigmoid((q * k_diff).sum(-1) / temperature)
    a = (2 * att_neg - 1) * beta
    w1h = unit.W1(h)
    g_pos = F.gelu(w1h + s_pos * (u_pos @ (unit.W1.weight @ B_pos).T))
    g_neg = F.gelu(w1h + s_neg * (u_neg @ (unit.W1.weight @ B_neg).T))
    out = h + unit.W2(g_pos * (1 - a).unsqueeze(-1) + g_neg * a.unsqueeze(-1))
    return out, a


def _down(layer: Any, name: str, x: torch.Tensor) -> torch.Tensor:
    """A dropout(x) [..., r] of adapter `name` of a peft LoRA layer."""
    A = layer.lora_A[name]
    return A(layer.lora_dropout[name](x.to(A.weight.dtype)))


def _delta(layer: Any, name: str, x: torch.Tensor) -> torch.Tensor:
    """s B A dropout(x) of adapter `name` of a peft LoRA layer."""
    return layer.lora_B[name](_down(layer, name, x)) * layer.scaling[name]


@dataclass
class _Switch:
    """What the hooks read: the mode, and the sums of `a` while recording."""

    mode: str = "nat"
    beta: float = 0.5
    temperature: float = 1.0
    record: bool = False
    a_sum: dict[str, float] = field(default_factory=dict)


def lora_options(student: Student) -> dict[str, Any]:
    """r / alpha / dropout / target_modules of a LoRA student's adapter, else TDG's for its family."""
    if student.is_lora:
        c = next(iter(student.model.peft_config.values()))
        return {"r": c.r, "alpha": c.lora_alpha, "dropout": c.lora_dropout, "target_modules": sorted(c.target_modules)}
    return {**TDG_LORA, "target_modules": LORA_TARGETS[student.family]}


def base_of(student: Student) -> tuple[Any, str]:
    """(the plain transformers model under `student`, the path or hub id it was loaded from)."""
    if student.is_lora:
        ref = next(iter(student.model.peft_config.values())).base_model_name_or_path
        return student.model.unload(), ref
    ref = student.model.name_or_path
    return student.model, str(Path(ref).resolve()) if Path(ref).is_dir() else ref


def peft_with(model: Any, family: str, lora: dict[str, Any], adapter: str, base_ref: str, seed: int) -> Any:
    """`model` with a fresh LoRA adapter `adapter` (seeded), a peft model if it is not one yet."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if family == "t5" else TaskType.CAUSAL_LM,
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=list(lora["target_modules"]),
        base_model_name_or_path=base_ref,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(model, "peft_config"):
            model.add_adapter(adapter, config)
            return model
        try:
            return get_peft_model(model, config, adapter_name=adapter)
        except ValueError as e:
            raise UserError(f"nat: {str(e).splitlines()[0]}") from None


class NATStudent(Student):
    """A Student whose model is the dual-LoRA peft model with integrate units and hooks."""

    switch: _Switch
    layers: dict[str, Any]  # short layer name -> its peft LoRA layer
    meta: dict[str, Any]

    @classmethod
    def build(cls, peft_model: Any, student: Student, cfg: NATConfig, lora: dict[str, Any], base_ref: str, seed: int) -> NATStudent:
        """Stage 2's student: `peft_model` holds the trained "neg" adapter; adds "pos" and the
        integrate units (seeded), freezes everything else, and switches the layers to NAT."""
        from peft.tuners.lora import LoraLayer

        model = peft_with(peft_model, student.family, lora, "pos", base_ref, seed)
        model.base_model.disable_adapter_layers()  # peft's forward gives h; the hooks do the rest
        self = cls(model, student.tokenizer, student.family, student.max_input_len, student.max_target_len)
        self.switch = _Switch(beta=cfg.beta, temperature=cfg.temperature)
        self.layers = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            for name, layer in model.named_modules():
                if isinstance(layer, LoraLayer) and "pos" in layer.lora_A:
                    base = layer.get_base_layer()
                    unit = IntegrateUnit(base.in_features, base.out_features, cfg.att_dim, cfg.hidden)
                    layer.add_module(UNIT, unit.to(base.weight.device))
                    short = name.removeprefix("base_model.model.")
                    self.layers[short] = layer
                    layer.register_forward_hook(self._hook(short))
        for n, p in model.named_parameters():
            p.requires_grad = f".{UNIT}." in n or (".lora_" in n and ".pos." in n)
        self.meta = {"base": base_ref, "lora": lora, "config": asdict(cfg)}
        return self

    def _hook(self, short: str) -> Any:
        switch = self.switch

        def hook(layer: Any, args: tuple[Any, ...], h: torch.Tensor) -> torch.Tensor:
            x = args[0]
            if switch.mode == "base":
                return h
            if switch.mode in ("neg", "pos"):  # one adapter alone (NCE's p_neg is "neg")
                return h + _delta(layer, switch.mode, x).to(h.dtype)
            u_pos, u_neg = _down(layer, "pos", x), _down(layer, "neg", x)
            B_pos, B_neg = layer.lora_B["pos"].weight, layer.lora_B["neg"].weight
            unit = getattr(layer, UNIT)
            out, a = integrate_factored(
                x.to(u_pos.dtype), h.to(u_pos.dtype), u_pos, u_neg, B_pos, B_neg,
                layer.scaling["pos"], layer.scaling["neg"], unit, switch.beta, switch.temperature,
            )
            if switch.record:
                switch.a_sum[short] = switch.a_sum.get(short, 0.0) + a.detach().float().mean().item()
            return out.to(h.dtype)

        return hook

    @contextlib.contextmanager
    def branch(self, mode: str) -> Iterator[None]:
        """Run the model as `mode`: "nat" (integrated, the default), "neg" (base + LoRA_neg: the
        negative model), "pos" (base + LoRA_pos alone) or "base"."""
        if mode not in MODES:
            raise ValueError(f"unknown NAT mode {mode!r} (choose from: {', '.join(MODES)})")
        before, self.switch.mode = self.switch.mode, mode
        try:
            yield
        finally:
            self.switch.mode = before

    def integration_weights(self) -> dict[str, float]:
        """Mean `a` per layer over the forwards recorded since the last call (then reset)."""
        out = {f"nat/a/{k}": v for k, v in self.switch.a_sum.items()}
        if out:
            out["nat/a_mean"] = sum(out.values()) / len(out)
        self.switch.a_sum = {}
        return out

    def save(self, out: Path) -> None:
        from safetensors.torch import save_file

        super().save(out)  # peft: out/neg/ and out/pos/, and the tokenizer
        units = {n: p.detach().contiguous() for n, p in self.model.named_parameters() if f".{UNIT}." in n}
        save_file(units, str(Path(out) / UNIT_FILE))
        (Path(out) / META_FILE).write_text(json.dumps(self.meta, indent=1))

    def restore(self, folder: str | Path) -> None:
        from safetensors.torch import load_file

        super().restore(folder)  # both adapters
        units = load_file(str(Path(folder) / UNIT_FILE), device=str(self.device))
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in units.items():
                params[n].copy_(v)

    def merged(self) -> Any:
        raise UserError("a NAT student cannot be merged into a plain model (its integrate unit is not linear): decode it with decode.backend hf")

    @classmethod
    def load_nat(cls, folder: str | Path, device: str = "cpu", **lengths: int) -> NATStudent:
        """A saved NAT student (`save`'s folder): its base, both adapters and the units."""
        meta = json.loads((Path(folder) / META_FILE).read_text())
        plain = Student.load(meta["base"], device, **lengths)
        model = peft_with(plain.model, plain.family, meta["lora"], "neg", meta["base"], 0)
        self = cls.build(model, plain, NATConfig(**meta["config"]), meta["lora"], meta["base"], 0)
        self.restore(folder)
        self.model.eval()
        return self


def load_student(folder: str | Path, device: str = "cpu", **lengths: int) -> Student:
    return NATStudent.load_nat(folder, device, **lengths)


def nat_loss(reduction: str) -> Any:
    """Stage 2's loss: the NLL of positive chains through the integrated model (common.nll_loss),
    with the mean `a` of every layer as metrics."""
    nll = item_nll(reduction)  # type: ignore[arg-type]

    def loss(student: Student, batch: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        assert isinstance(student, NATStudent)
        student.switch.record = True
        try:
            value, metrics = nll(student, batch)
        finally:
            student.switch.record = False
        return value, {**metrics, **student.integration_weights()}

    return loss


def negative_stage(ctx: TrainContext, cfg: NATConfig, lora: dict[str, Any], base_ref: str, peft_model: Any) -> Path:
    """Stage 1 (cached): LoRA_neg trained on the negative chains, last weights kept. Trains in
    `peft_model` (adapter "neg") when the stage is not cached yet; returns the stage's folder."""
    negatives = [i for i in chain_items(ctx, negatives=True, max_chains=cfg.max_chains) if i["negative"]]
    trained = []

    def build(work: Path) -> None:
        trained.append(True)
        if not negatives:
            raise UserError("nat: the teacher bank has no negative chains for stage 1 (a teacher with k > 1 samples, or oracle wrong_rate > 0)")
        student = Student(peft_model, ctx.student.tokenizer, ctx.student.family, ctx.student.max_input_len, ctx.student.max_target_len)
        staged = lambda metrics, step: ctx.log({f"nat_stage1/{k}": v for k, v in metrics.items()}, step)  # noqa: E731
        fit(student, negatives, item_nll(ctx.config.loss_reduction), ctx.config, None, work, staged, ctx.show_progress)

    key = {"stage": "nat-negative-lora", "lora": lora, "max_chains": cfg.max_chains, "n_negatives": len(negatives)}
    folder = ctx.cached("nat-neg", key, build)
    ctx.log({"nat/stage1_reused": 0.0 if trained else 1.0, "data/stage1_negatives": len(negatives)}, 0)
    return folder


def train(ctx: TrainContext, cfg: NATConfig) -> TrainResult:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    lora = lora_options(ctx.student)
    model, base_ref = base_of(ctx.student)
    seed = ctx.config.run_seed
    neg_model = peft_with(model, ctx.student.family, lora, "neg", base_ref, seed)
    stage1 = negative_stage(ctx, cfg, lora, base_ref, neg_model)
    # cached or just trained: the stage's saved adapter is what stage 2 starts from, either way
    weights = load_file(str(stage1 / "best" / "neg" / "adapter_model.safetensors"), device=str(ctx.student.device))
    set_peft_model_state_dict(neg_model, weights, adapter_name="neg")
    ctx.student = NATStudent.build(neg_model, ctx.student, cfg, lora, base_ref, seed)
    items = chain_items(ctx, negatives=False, max_chains=cfg.max_chains)
    return ctx.fit(items, nat_loss(ctx.config.loss_reduction))


METHOD = MethodDef(
    "nat", NATConfig, train, test_input, CITATION,
    "teacher negatives (stage 1: LoRA_neg), then positives (stage 2: LoRA_pos + integrate unit)",
    inputs=frozenset({"positives", "negatives"}),
    load_student=load_student,
    plan=(
        "stage 1: LoRA_neg on the negative chains, last weights kept (cached: shared by every cell with this student, bank, budget and seed)",
        "stage 2: LoRA_pos + integrate unit on the positive chains, LoRA_neg frozen, best on valid",
    ),
)
