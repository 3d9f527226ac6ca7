"""Check the harness layering (harness/__init__.py): no core module imports an application
module, a task, a method or the leaderboard, at module level or inside a function.

    python -m harness.check_imports      # prints each violation; exit status 1 when there is one
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parent
CORE = (
    "types", "errors", "registry", "settings", "store", "student", "models", "training", "decoding",
    "aggregate", "curves", "scoring", "compare", "power", "bank", "tracking", "backends", "ranker", "cells", "contamination",
    "noise",
)  # fmt: skip
APP = ("config", "teacher", "importers", "evaluate", "run", "executors", "grid", "status", "dryrun", "cli", "check_imports", "lmeval", "contract", "scaffold", "contamination_check")
UPPER = ("tasks", "methods", "leaderboard")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "harness":  # from harness import teacher
                out += [(node.lineno, f"harness.{a.name}") for a in node.names]
    return out


def violations() -> list[str]:
    """One line per import that goes up from the core."""
    found = []
    for name in CORE:
        target = HARNESS / name
        files = sorted(target.glob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        for path in files:
            for line, module in _imports(path):
                top, _, rest = module.partition(".")
                sub = rest.partition(".")[0]
                if top in UPPER or (top == "harness" and sub in APP):
                    found.append(f"{path.relative_to(HARNESS.parent)}:{line}: core module imports {module}")
    return found


def main() -> int:
    found = violations()
    for v in found:
        print(v)
    print(f"{len(found)} layering violation(s)" if found else "layering ok: no core module imports tasks, methods, leaderboard or the application")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
