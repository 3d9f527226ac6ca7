"""Methods: one file each, registered here by name.

A method file holds a config dataclass (the paper's defaults and citation), its loss as a pure
function, `train(ctx, cfg)` and `test_input(task, example, cfg)`, bundled as `METHOD`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.errors import UserError, check_options
from harness.registry import lookup
from methods import dss, fdd, finetune, mi, mix, nat, nce, nt, qcrd, rft, single_task, ul
from methods.base import MethodDef

METHODS: dict[str, MethodDef] = {
    "finetune": finetune.METHOD,
    "dss": dss.METHOD,
    "single_task": single_task.METHOD,
    "mi": mi.METHOD,
    "mix": mix.METHOD,
    "ul": ul.METHOD,
    "nt": nt.METHOD,
    "nat": nat.METHOD,
    "nce": nce.METHOD,
    "qcrd": qcrd.METHOD,
    "fdd": fdd.METHOD,
    "rft": rft.METHOD,
}


def get_method(name: str) -> MethodDef:
    return lookup(METHODS, name, "method")


def make_config(method: MethodDef, options: dict[str, Any]) -> Any:
    """The method's config dataclass with `options` applied; unknown fields are a UserError."""
    check_options(f"method {method.name!r}", options, (f.name for f in dataclasses.fields(method.config)))
    try:
        return method.config(**options)
    except (TypeError, ValueError) as e:
        raise UserError(f"method {method.name!r}: {e}") from None


__all__ = ["METHODS", "MethodDef", "get_method", "make_config"]
