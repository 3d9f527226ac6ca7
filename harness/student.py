"""One wrapper over seq2seq (T5) and causal (Llama-style) students.

Methods see only `Student.score(inputs, targets)`: the logits aligned with the target tokens, the
target ids and a mask, identical in shape for both families, so every loss runs on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.models import Family, load_model

# The causal family reads "<input>\n<target></s>"; the newline marks where the answer starts.
CAUSAL_SEP = "\n"


@dataclass
class Scored:
    """Per-token view of a batch of (input, target) pairs.

    logits [B, T, V] predict targets [B, T]; mask [B, T] is True on target tokens (EOS included).
    """

    logits: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def token_nll(self) -> torch.Tensor:
        """[B, T] negative log-likelihood of each target token (0 where masked)."""
        nll = F.cross_entropy(self.logits.transpose(1, 2), self.targets, reduction="none")
        return nll * self.mask

    def sequence_nll(self) -> torch.Tensor:
        """[B] mean NLL over each sequence's target tokens."""
        return self.token_nll().sum(1) / self.mask.sum(1).clamp(min=1)


@dataclass
class Student:
    model: Any
    tokenizer: Any
    family: Family
    max_input_len: int = 256
    max_target_len: int = 128

    @classmethod
    def load(cls, name_or_path: str | Path, device: str = "cpu", **lengths: int) -> Student:
        model, tokenizer, family = load_model(name_or_path, device)
        return cls(model, tokenizer, family, **lengths)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_text(self, input_text: str) -> str:
        """What generation continues from."""
        return input_text + CAUSAL_SEP if self.family == "llama" else input_text

    def score(self, inputs: list[str], targets: list[str]) -> Scored:
        """Run the model on (input, target) pairs with teacher forcing."""
        tok = self.tokenizer
        if self.family == "t5":
            enc = tok(inputs, max_length=self.max_input_len, truncation=True, padding=True, return_tensors="pt")
            lab = tok(targets, max_length=self.max_target_len, truncation=True, padding=True, return_tensors="pt")
            labels = lab.input_ids.masked_fill(lab.attention_mask == 0, -100).to(self.device)
            out = self.model(
                input_ids=enc.input_ids.to(self.device),
                attention_mask=enc.attention_mask.to(self.device),
                labels=labels,
            )
            mask = labels != -100
            return Scored(out.logits, labels.clamp(min=0), mask)
        # causal: concatenate, right-pad, and score only the target part
        eos = tok.eos_token_id
        rows, label_rows = [], []
        for x, y in zip(inputs, targets, strict=True):
            p = tok(self.prompt_text(x), truncation=True, max_length=self.max_input_len).input_ids
            t = tok(y, add_special_tokens=False, truncation=True, max_length=self.max_target_len - 1).input_ids + [eos]
            rows.append(p + t)
            label_rows.append([-100] * len(p) + t)
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        labels = torch.tensor([r + [-100] * (width - len(r)) for r in label_rows], device=self.device)
        attn = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        logits = self.model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        labels = labels[:, 1:]
        mask = labels != -100
        return Scored(logits, labels.clamp(min=0), mask)

    def save(self, out: Path) -> None:
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
