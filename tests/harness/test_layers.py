"""The harness's two layers (harness/__init__.py), checked by harness.check_imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import check_imports

ROOT = Path(__file__).resolve().parents[2]


def test_no_core_module_imports_upwards():
    assert check_imports.violations() == []
    r = subprocess.run([sys.executable, "-m", "harness.check_imports"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "layering ok" in r.stdout


def test_every_harness_module_is_in_a_layer():
    names = {p.stem for p in check_imports.HARNESS.glob("*.py")} | {p.name for p in check_imports.HARNESS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names -= {"__init__"}
    unplaced = names - set(check_imports.CORE) - set(check_imports.APP)
    assert unplaced == set(), f"add these to CORE or APP in harness/check_imports.py: {sorted(unplaced)}"


def test_an_upward_import_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "harness"
    fake.mkdir()
    for name in check_imports.CORE:
        (fake / f"{name}.py").write_text("import json\n")
    (fake / "scoring.py").write_text("def f():\n    from methods import METHODS\n    return METHODS\n")
    (fake / "store.py").write_text("from harness import run\n")
    monkeypatch.setattr(check_imports, "HARNESS", fake)
    found = check_imports.violations()
    assert len(found) == 2
    assert any("scoring.py:2: core module imports methods" in v for v in found)
    assert any("store.py:1: core module imports harness.run" in v for v in found)
