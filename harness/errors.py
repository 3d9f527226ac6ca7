"""User-facing errors: the CLI prints them as one line and exits with status 2."""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterable

# --- secrets: every value registered here is replaced by *** wherever we print or store text ---

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]{4,}")


def register_secret(value: str | None) -> None:
    """Redact `value` (an API key read from the environment) from now on, in this process."""
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """text with every registered secret and any "Bearer <token>" replaced by ***."""
    if not isinstance(text, str):
        return text
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text) if "earer" in text or "EARER" in text else text


class UserError(Exception):
    """Bad input from the user (spec, name, file). Shown as one line, exit status 2; a secret a
    server echoed into the message is redacted wherever the message is shown or stored."""

    def __str__(self) -> str:
        return redact(super().__str__())


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


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str, what: str = "name") -> str:
    """A grid or run name: it becomes an MLflow experiment and a folder in the store, so it may
    hold only letters, digits, '.', '_' and '-' (no path: "../x" or "/abs" would write outside)."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(
            f"{what} {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it names an MLflow experiment and its folder in the store)"
        )
    return name
