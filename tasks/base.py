"""The Task interface every file in tasks/ implements."""

from __future__ import annotations

from typing import Protocol

from harness.types import Example

SPLITS = ("train", "valid", "test")


class Task(Protocol):
    """A benchmark task: data, prompts, answer extraction and checking.

    `version` changes whenever loading or gold answers change; `prompt_version` whenever the
    teacher prompt or the student input format changes. Both are part of every cache key.
    """

    name: str
    version: str
    prompt_version: str

    def load(self, split: str) -> list[Example]:
        """The examples of one split ("train", "valid" or "test"), in a stable order."""
        ...

    def prompt(self, example: Example) -> str:
        """Few-shot chain-of-thought prompt for a teacher."""
        ...

    def student_input(self, example: Example) -> str:
        """The student's input text (methods add their own prefixes, e.g. DSS's "predict: ")."""
        ...

    def extract(self, text: str) -> str | None:
        """The answer stated in a generated text, or None when nothing parsable is found."""
        ...

    def canonical(self, answer: str) -> str:
        """A normal form used to group answers: equal canonical forms are equivalent."""
        ...

    def equivalent(self, pred: str | None, gold: str) -> bool:
        """Whether a predicted answer matches the gold answer (None never matches)."""
        ...
