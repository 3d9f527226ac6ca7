"""The Task contract (tasks/base.py): every registered task provides all of it."""

from __future__ import annotations

import inspect
import json

import pytest

from tasks import TASKS, task_options
from tasks.base import Task, TaskDefaults

MEMBERS = [
    n for n in dir(Task) if not n.startswith("_") and n not in ("name", "version", "prompt_version")
]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_class_has_the_whole_contract(name):
    cls = TASKS[name]
    for member in MEMBERS:
        assert hasattr(cls, member), f"{name} lacks {member}"
    for attr in ("name", "version", "prompt_version"):
        assert isinstance(getattr(cls, attr), str)
    assert cls.name == name
    # options are the constructor's keyword arguments, every one with a default
    opts = task_options(name)
    assert opts and all(v is not inspect.Parameter.empty for v in opts.values())


def test_options_and_chain_writing_of_built_tasks():
    from tasks import get_task

    arith = get_task("arith", n_train=10, n_valid=5, n_test=5)
    assert arith.options() == {**task_options("arith"), "n_train": 10, "n_valid": 5, "n_test": 5, "operators": arith.operators}
    json.dumps(arith.options())  # JSON values: they go into cache keys
    assert arith.writes_chains and get_task("gsm_symbolic").writes_chains
    assert not get_task("svamp").writes_chains and not get_task("csqa").writes_chains
    assert get_task("svamp", data_dir="x").data_root() == "x" and list(arith.skipped()) == []


def test_a_task_that_is_not_a_dataclass_must_define_options():
    class Plain(TaskDefaults):
        name = "plain"

    with pytest.raises(TypeError, match="define options"):
        Plain().options()
    assert not Plain().writes_chains
