"""`distillbench leaderboard` serves the app over real HTTP on 127.0.0.1, and stopping the command
stops the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(store: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "leaderboard", "--store", str(store), "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the leaderboard did not come up")


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen, port: int) -> bool:
    """SIGTERM to the command we started; True when its server stopped with it. The process group
    is ours (start_new_session): whatever is left of it is killed afterwards."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while answers(port) and time.time() < deadline:
            time.sleep(0.2)
        return not answers(port)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_command_serves_on_localhost_and_stops_its_server(tmp_path):
    port = free_port()
    proc = serve(tmp_path / "store", port)
    stopped = False
    try:
        wait_healthy(port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and "<html" in r.read().decode().lower()
    finally:
        stopped = stop(proc, port)
    assert proc.returncode == 0 and stopped  # the server went with the command
