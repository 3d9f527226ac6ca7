"""The two records every stage passes along: Example (a task item) and Chain (one generated text)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One task item. `answer` is the canonical gold answer as a string."""

    id: str  # stable across loads
    question: str
    answer: str
    choices: tuple[str, ...] | None = None
    rationale: str | None = None  # gold rationale when the dataset has one
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        choices = d.get("choices")
        return cls(
            id=d["id"],
            question=d["question"],
            answer=d["answer"],
            choices=tuple(choices) if choices is not None else None,
            rationale=d.get("rationale"),
            meta=dict(d.get("meta") or {}),
        )


@dataclass(frozen=True)
class Chain:
    """One generated text for one example, from a teacher or a student."""

    example_id: str
    source: str  # "teacher:<model>" or "student:<run>"
    text: str
    answer: str | None  # extracted answer, None when nothing parsable was found
    correct: bool | None = None  # None when unknown (no gold, or not checked)
    logprob: float | None = None  # sum of token log-probabilities under the model (T=1)
    n_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # temperature, seed, sample index, ...
    # Teacher chains, split where the closing answer statement starts: text = rationale + " " +
    # statement ("3 + 4 = 7." / "The answer is 7."). None: not split (a chain with no statement is
    # all rationale). Methods pick which part they train on (DSS's explain task: the rationale).
    rationale: str | None = None
    statement: str | None = None

    @property
    def reasoning(self) -> str:
        """The rationale without the answer statement (the whole text when it was not split)."""
        return self.rationale if self.rationale is not None else self.text

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("rationale", "statement"):  # student chains are not split: keep their rows short
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chain:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
