"""Issue 20, class 6: an API key a teacher server echoes (in x-request-id, in error bodies, in the
generated text) never reaches the screen, the store or the MLflow database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.errors import redact, register_secret
from tests.test_cli import ROOT

KEY = "sk-test-SECRET-0123456789abcdef"


def echo_server(deny: bool) -> tuple[ThreadingHTTPServer, str]:
    """An OpenAI-style endpoint on 127.0.0.1 that puts the Authorization header everywhere."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization", "")
            if deny:
                payload = json.dumps({"error": {"message": f"Incorrect API key provided: {auth}"}}).encode()
                status = 401
            else:
                text = f"I was called with {auth}. The answer is 3."
                choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                           for i in range(body.get("n", 1))]
                payload = json.dumps({"id": auth, "choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 9}}).encode()
                status = 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-request-id", f"echo {auth}")
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def spec(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "secrets.yaml"
    path.write_text(f"""name: secrets
base:
  task: {{name: arith, n_train: 16, n_valid: 4, n_test: 4}}
  method: {{name: finetune}}
  teacher: {{name: openai, model: m, k: 1, openai: {{base_url: "{url}", api_key_env: DB_SECRET_KEY, timeout_s: 5, max_retries: 0}}}}
  student: {{model: tiny, family: t5, tiny: {{vocab_size: 300}}}}
  train: {{steps: 2, eval_every: 2, log_every: 1, batch_size: 4}}
  decode: {{max_new_tokens: 4}}
  eval: {{schemes: [greedy], untrained: false, curves: false, bootstrap: 100}}
""")
    return path


def run_grid_cli(tmp_path: Path, url: str, store: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DB_SECRET_KEY": KEY, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    env.pop("DISTILLBENCH_DATA", None)
    return subprocess.run([sys.executable, "-m", "harness.cli", "grid", str(spec(tmp_path, url)), "--store", str(store), "-q"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def assert_nowhere(r: subprocess.CompletedProcess, store: Path) -> None:
    assert KEY not in r.stdout and KEY not in r.stderr
    leaked = [p for p in store.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == [], leaked  # bank chains, markers, tracebacks, predictions, mlflow.db, artifacts


@pytest.mark.slow
@pytest.mark.parametrize("deny", [False, True], ids=["echo-in-answers", "echo-in-errors"])
def test_an_echoed_key_is_redacted_everywhere(tmp_path, deny):
    httpd, url = echo_server(deny)
    try:
        store = tmp_path / "store"
        r = run_grid_cli(tmp_path, url, store)
    finally:
        httpd.shutdown()
        httpd.server_close()
    if deny:  # the bank cannot be built: the cell fails with the server's message, redacted
        assert r.returncode == 2 and "Incorrect API key provided: Bearer ***" in r.stderr + r.stdout, r.stderr
    else:
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for p in (store / "banks").rglob("chains*.jsonl") for line in p.read_text().splitlines()]
        chains = [r["chain"] for r in rows if r.get("kind") == "chain"]
        assert chains and all("Bearer ***" in c["text"] for c in chains)
    assert_nowhere(r, store)


def test_redact():
    register_secret("abcd1234secret")
    assert redact("key abcd1234secret and Bearer xyz.987-_ok, done") == "key *** and Bearer ***, done"
    assert redact("nothing here") == "nothing here"
    from harness.errors import UserError

    assert "abcd1234secret" not in str(UserError("server said abcd1234secret"))
