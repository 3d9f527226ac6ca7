"""Explicit name -> object lookup with "did you mean" errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from harness.errors import unknown

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """registry[name], or a UserError naming the closest registered names."""
    try:
        return registry[name]
    except KeyError:
        raise unknown(kind, name, registry) from None
