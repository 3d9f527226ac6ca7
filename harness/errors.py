"""User-facing errors: the CLI prints them as one line and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user (spec, name, file). Shown as one line, exit status 2."""


def did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    """' (did you mean 'a' or 'b'?)' for the closest options, or a list of what exists.
    `prefix` is prepended to each option shown (e.g. the section of a dotted spec key)."""
    options = sorted(options)
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if close:
        return " (did you mean " + " or ".join(repr(prefix + c) for c in close) + "?)"
    return " (choose from: " + ", ".join(prefix + o for o in options) + ")"


def unknown(kind: str, name: str, options: Iterable[str]) -> UserError:
    return UserError(f"unknown {kind} {name!r}{did_you_mean(name, options)}")


def check_options(owner: str, options: Iterable[str], known: Iterable[str]) -> None:
    """UserError for the first option not in `known`: "unknown option 'x' for method 'dss' ..."."""
    known = list(known)
    for key in options:
        if key not in known:
            raise UserError(f"unknown option {key!r} for {owner}{did_you_mean(key, known)}")


_SAFE_NAME = __import__("re").compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str, what: str = "name") -> str:
    """A grid or run name: it becomes an MLflow experiment and a folder in the store, so it may
    hold only letters, digits, '.', '_' and '-' (no path: "../x" or "/abs" would write outside)."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(
            f"{what} {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it names an MLflow experiment and its folder in the store)"
        )
    return name
