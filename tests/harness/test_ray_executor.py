"""The Ray executor (harness/executors.py): a local Ray instance with 2 CPUs, bound to 127.0.0.1,
runs a small grid to the results of the same cells run in this process."""

from __future__ import annotations

import os

import pytest

# a single-machine Ray node: its servers listen on 127.0.0.1 (read when ray is imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from harness.executors import Ray, Sequential
from harness.grid import run_grid
from harness.store import Store
from tests.test_grid_scale import cell

ray = pytest.importorskip("ray", reason="the Ray executor needs the `ray` extra (pip install 'distillbench[ray]'); `make test` installs it")


def listeners(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket of these processes."""
    import psutil

    out = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            out.append((c.pid, c.laddr.ip, c.laddr.port))
    return out


@pytest.mark.slow
def test_ray_gives_the_in_process_results_and_listens_on_loopback_only(tmp_path, monkeypatch):
    import psutil

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cells = [cell("finetune", grid="ray"), cell("single_task", grid="ray", method={"name": "single_task"})]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks' thread count: the same digits
    try:
        local = run_grid(cells, "ray", Store(tmp_path / "here"), show_progress=False, executor=Sequential())
    finally:
        torch.set_num_threads(threads)
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        # every process Ray started for this instance listens on loopback only
        pids = {p.pid for p in psutil.Process().children(recursive=True)}
        socks = listeners(pids)
        assert socks, "the Ray instance should listen somewhere"
        assert all(ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for _, ip, _ in socks), socks
        results = run_grid(cells, "ray", Store(tmp_path / "ray"), show_progress=False, executor=Ray(threads=1))
    finally:
        ray.shutdown()
    assert [r.error for r in results] == [None, None]
    for r, q in zip(results, local, strict=True):
        assert r.scores["greedy"] == q.scores["greedy"]
