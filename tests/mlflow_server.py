"""A real MLflow tracking server on 127.0.0.1 for tests: started by the test, stopped by its own
process handle (never by name), restartable on the same port and database."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = root / "server-artifacts"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}", "--artifacts-destination", str(self.artifacts)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root, start_new_session=True,
        )
        for _ in range(240):  # bounded wait for start-up
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return
            except OSError:
                time.sleep(0.5)
        pytest.fail("mlflow server did not start within 120 s")

    def stop(self) -> None:
        """Stop the server this object started (its process group: the server's workers too)."""
        import os
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # a refused connection from here on, not a half-closed one
        for _ in range(40):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=0.5)
                time.sleep(0.25)
            except OSError:
                return
