"""The task registry: names a spec or the CLI may use, and their options."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from harness.errors import UserError, check_options
from harness.registry import lookup
from tasks.addsub import AddSubTask
from tasks.anli import ANLITask
from tasks.arith import ArithTask
from tasks.asdiv import ASDivATask, ASDivTask
from tasks.base import Task
from tasks.csqa import CSQATask
from tasks.esnli import ESNLITask
from tasks.gsm8k import GSM8KTask
from tasks.gsm_symbolic import GSMSymbolicTask
from tasks.math import Math500Task, MathTask
from tasks.multiarith import MultiArithTask
from tasks.singleeq import SingleEqTask
from tasks.svamp import SVAMPTask

TASKS: dict[str, Callable[..., Task]] = {
    "arith": ArithTask,
    "gsm_symbolic": GSMSymbolicTask,
    "gsm8k": GSM8KTask,
    "multiarith": MultiArithTask,
    "addsub": AddSubTask,
    "singleeq": SingleEqTask,
    "svamp": SVAMPTask,
    "csqa": CSQATask,
    "anli": ANLITask,
    "esnli": ESNLITask,
    "math": MathTask,
    "math500": Math500Task,
    "asdiv": ASDivTask,
    "asdiv_a": ASDivATask,
}


def task_options(name: str) -> dict[str, Any]:
    """Option name -> default for a registered task: its constructor's keyword arguments."""
    cls = lookup(TASKS, name, "task")
    params = inspect.signature(cls).parameters.values()
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def get_task(name: str, **options: Any) -> Task:
    """The task `name` built with `options`; unknown names and options are one-line UserErrors."""
    cls = lookup(TASKS, name, "task")
    check_options(f"task {name!r}", options, task_options(name))
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise UserError(f"task {name!r}: {e}") from None
