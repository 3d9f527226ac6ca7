"""`distillbench new-method`: the method it writes is registered, passes the method contract and
its own generated tests as written (on a copy of methods/, in a subprocess)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.scaffold import write

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_method_is_registered_passes_its_contract_and_its_tests(tmp_path):
    shutil.copytree(ROOT / "methods", tmp_path / "methods", ignore=shutil.ignore_patterns("__pycache__"))
    written = write("weighted_pos", tmp_path)
    assert [p.name for p in written] == ["weighted_pos.py", "test_weighted_pos.py", "__init__.py"]
    registry = (tmp_path / "methods" / "__init__.py").read_text()
    assert '"weighted_pos": weighted_pos.METHOD,' in registry
    assert re.search(r"^from methods import .*\bweighted_pos\b", registry, re.M)

    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "DISTILLBENCH_CACHE": str(tmp_path / "cache")}
    code = ("from harness import contract; r = contract.check('weighted_pos'); "
            "print([(c.name, c.ok, c.detail) for c in r.clauses]); assert r.ok")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/methods/test_weighted_pos.py"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout[-2000:]


def test_bad_or_taken_names_are_one_line_errors(tmp_path):
    shutil.copytree(ROOT / "methods", tmp_path / "methods", ignore=shutil.ignore_patterns("__pycache__"))
    for name, words in (("dss", "exists already"), ("Bad-Name", "lower case"), ("class", "lower case")):
        with pytest.raises(UserError, match=words):
            write(name, tmp_path)
    with pytest.raises(UserError, match="not the methods registry"):
        write("fine", tmp_path / "elsewhere")
    assert not (tmp_path / "methods" / "fine.py").exists()
