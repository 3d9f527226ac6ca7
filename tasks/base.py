"""The Task contract: everything the harness reads of a task, in one place.

A task is one file in `tasks/` with a class registered in `tasks.TASKS`. The class is built from
a spec's options (`get_task(name, **options)`), so its constructor's keyword arguments are its
options. It must provide the members of `Task` below; `TaskDefaults` gives the optional ones
a default (inherit it, or one of the shared bases that do: `checking.NumericAnswers`,
`files.WordProblemFiles`). README "Adding a task" walks through a jsonl task.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from harness.errors import UserError
from harness.types import Example

SPLITS = ("train", "valid", "test")
PROBLEM_KINDS = ("harder", "similar")  # what `write_problem` writes (FDD's two requests)


class Task(Protocol):
    """A benchmark task: data, prompts, answer extraction and checking.

    `version` changes whenever loading or gold answers change; `prompt_version` whenever the
    teacher prompt or the student input format changes. Both, and `options()`, are part of every
    cache key.
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

    # --- optional: TaskDefaults gives each a default -------------------------------------------

    def options(self) -> dict[str, Any]:
        """The options this task was built with (JSON values): they enter every cache key."""
        ...

    def skipped(self) -> Sequence[str]:
        """One message per malformed data row left out under `skip_bad` (none by default)."""
        ...

    def data_root(self) -> str | None:
        """The folder the task reads its files from (teacher releases are looked for beside it)."""
        ...

    @property
    def writes_chains(self) -> bool:
        """Whether `write_chain` works: procedural tasks that can write a worked solution."""
        ...

    def write_chain(self, example: Example, slip_rng: random.Random | None = None) -> tuple[str, str]:
        """(chain, its final answer): the task's own worked solution (the `oracle` teacher); with
        `slip_rng`, one plausible wrong step (a negative)."""
        ...

    # The kind of problems a teacher can write for the task (FDD): "word" for numeric word
    # problems and arithmetic, "math" for MATH, None where problems cannot be generated (NLI, CSQA).
    problem_family: ClassVar[str | None]

    @property
    def writes_problems(self) -> bool:
        """Whether `write_problem` works: procedural tasks that can write new problems."""
        ...

    def write_problem(self, example: Example, kind: str, rng: random.Random) -> Example:
        """A new problem written from `example`: kind "harder" (a harder variant: more terms or
        larger numbers) or "similar" (same difficulty parameters, new numbers). The new Example
        has the task's own id scheme (so a generated question equal to an existing one has its
        id), its computed gold answer, and what `write_chain` needs (rationale / meta)."""
        ...


def check_problem_kind(kind: str) -> None:
    """ValueError for a `write_problem` kind other than "harder" / "similar"."""
    if kind not in PROBLEM_KINDS:
        raise ValueError(f"unknown problem kind {kind!r}: expected one of {list(PROBLEM_KINDS)}")


class TaskDefaults:
    """Defaults for the optional members of the Task contract."""

    def options(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self):
            return dataclasses.asdict(self)
        # a key without the task's options would silently share caches across option values
        raise TypeError(f"task {type(self).__name__} is not a dataclass: define options() for its cache keys")

    def skipped(self) -> Sequence[str]:
        return ()

    def data_root(self) -> str | None:
        return getattr(self, "data_dir", None)

    @property
    def writes_chains(self) -> bool:
        return type(self).write_chain is not TaskDefaults.write_chain

    def write_chain(self, example: Example, slip_rng: random.Random | None = None) -> tuple[str, str]:
        name = getattr(self, "name", type(self).__name__)
        raise UserError(f"teacher 'oracle' only works for procedural tasks: task {name!r} cannot write its own chains")

    problem_family: ClassVar[str | None] = None

    @property
    def writes_problems(self) -> bool:
        return type(self).write_problem is not TaskDefaults.write_problem

    def write_problem(self, example: Example, kind: str, rng: random.Random) -> Example:
        check_problem_kind(kind)
        name = getattr(self, "name", type(self).__name__)
        raise UserError(
            f"teacher 'oracle' cannot write problems for task {name!r}: only procedural tasks can (arith, gsm_symbolic)"
        )


def task_key(task: Task) -> dict[str, Any]:
    """What identifies a task's data, prompts and checking in every cache key."""
    return {"name": task.name, "version": task.version, "prompt_version": task.prompt_version, "options": task.options()}
