"""Teacher prompts that write new problems (FDD, Zhu et al. 2024, arXiv 2411.14698): "a harder
variant of this problem" for a problem the student solved, "a new problem of similar difficulty"
for one it failed. One pair per task family (`Task.problem_family`: "word" for numeric word
problems and arithmetic, "math" for MATH), versioned like task prompts: `PROMPT_VERSION` is in
the key of every bank of generated problems, so a changed prompt never reuses old problems.

The teacher answers with the problem on a line starting "Problem:"; `parse_problem` reads it (and
returns None for an answer without one: the problem is rejected and counted, never guessed).
The generated problem is then solved K times with the task's own few-shot prompt (`task.prompt`).
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import UserError
from harness.types import Example
from tasks.base import check_problem_kind

PROMPT_VERSION = "1"
MAX_PROBLEM_CHARS = 2000  # longer "problems" are a teacher that ran on: rejected as unparsed

_HEAD = {
    "word": "You write grade-school math word problems for a student to practise on.",
    "math": "You write competition mathematics problems (in the style of the MATH dataset) for a student to practise on.",
}
_ASK = {
    ("word", "harder"): (
        "The student solved this problem correctly:\n\nProblem: {question}\n\n"
        "Write one new problem that is a harder variant of it: one or two more reasoning steps, or larger "
        "numbers, in a story of its own. It must have exactly one numeric answer."
    ),
    ("word", "similar"): (
        "The student could not solve this problem:\n\nProblem: {question}\n\n"
        "Write one new problem of similar difficulty that practises the same steps, with different numbers "
        "and a different story. It must have exactly one numeric answer."
    ),
    ("math", "harder"): (
        "The student solved this problem{about} correctly:\n\nProblem: {question}\n\n"
        "Write one new problem on the same topic that is harder: one more idea or step. It must have exactly "
        "one final answer that can be written in \\boxed{{}}. Use LaTeX for mathematics."
    ),
    ("math", "similar"): (
        "The student could not solve this problem{about}:\n\nProblem: {question}\n\n"
        "Write one new problem on the same topic and of similar difficulty, not a copy with other numbers. "
        "It must have exactly one final answer that can be written in \\boxed{{}}. Use LaTeX for mathematics."
    ),
}
_TAIL = 'Do not solve it. Reply with the problem only, on a line starting with "Problem:".'


def family_of(task: Any) -> str:
    """The task's problem family; a one-line error for a task whose problems cannot be written."""
    family = getattr(task, "problem_family", None)
    if family not in _HEAD:
        raise UserError(
            f"task {task.name!r} has no problem-writing prompts (families: {', '.join(_HEAD)}): "
            "FDD's teacher writes math problems only"
        )
    return family


def problem_prompt(task: Any, example: Example, kind: str) -> str:
    """The teacher prompt asking for a `kind` problem ("harder" / "similar") from `example`."""
    check_problem_kind(kind)
    family = family_of(task)
    subject, level = example.meta.get("subject"), example.meta.get("level")
    level = str(level).removeprefix("Level ").strip() if level else ""
    about = f" ({subject}{f', level {level}' if level.isdigit() else ''})" if subject else ""  # MATH's "Level ?" rows: none
    ask = _ASK[family, kind].format(question=example.question.strip(), about=about)
    return f"{_HEAD[family]}\n\n{ask}\n{_TAIL}\n"


_PROBLEM = re.compile(r"(?im)^\s*\**\s*(?:new\s+)?problem\s*\**\s*:\s*\**")
_END = re.compile(r"(?im)^\s*\**\s*(?:solution|answer|problem)\s*\**\s*:|\n\s*\n")


def parse_problem(text: str) -> str | None:
    """The problem a teacher wrote: the text after its first "Problem:" up to a blank line, a
    "Solution:" / "Answer:" line or a second "Problem:"; None when there is none or it is empty
    or runs past MAX_PROBLEM_CHARS."""
    m = _PROBLEM.search(text)
    if m is None:
        return None
    rest = text[m.end() :].lstrip()
    end = _END.search(rest)
    problem = " ".join((rest[: end.start()] if end else rest).split()).strip("*").strip()  # a bold line's closing **
    return problem if problem and len(problem) <= MAX_PROBLEM_CHARS else None
