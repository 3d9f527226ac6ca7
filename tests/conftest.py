"""Shared fixtures. Tests never touch the network: the hub is off and models are built here."""

from __future__ import annotations

import os
import tempfile

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on the machine's cores: one torch thread each, and in
    # every process a test starts (read by torch at import, inherited by subprocesses)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Hub-path tests load local folders; keep their arrow caches out of the user's ~/.cache.
_HF_CACHE = tempfile.TemporaryDirectory(prefix="distillbench-hf-datasets-")
os.environ["HF_DATASETS_CACHE"] = _HF_CACHE.name
# Method-contract reports (harness/contract.py) that grids check: one folder for the whole session,
# set before xdist starts its workers, so each method is checked once per session, not per test
# nor into the user's ~/.cache
if "DISTILLBENCH_CACHE" not in os.environ:
    _CACHE = tempfile.TemporaryDirectory(prefix="distillbench-test-cache-")
    os.environ["DISTILLBENCH_CACHE"] = _CACHE.name

import pytest

SMALL_ARITH = dict(n_train=200, n_valid=40, n_test=40, seed=0)


@pytest.fixture(scope="session")
def arith():
    from tasks import get_task

    return get_task("arith", **SMALL_ARITH)


@pytest.fixture(scope="session", params=["t5", "llama"])
def tiny_dir(request, tmp_path_factory, arith):
    """A tiny model directory per family, built once per session (read-only for tests)."""
    from harness.models import TinyConfig, build_tiny_model, corpus

    out = tmp_path_factory.mktemp(f"tiny-{request.param}")
    build_tiny_model(request.param, corpus(arith, arith.load("train")), out, TinyConfig(vocab_size=300))
    return request.param, out


@pytest.fixture
def student(tiny_dir):
    """A fresh student loaded from the tiny directory (tests may train it)."""
    from harness.student import Student

    return Student.load(tiny_dir[1])
