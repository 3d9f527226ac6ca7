"""The `openai` backend against a small real HTTP server on 127.0.0.1 (no network).

The server speaks enough of the chat-completions and completions protocol (n, temperature,
logprobs, usage, request ids) and scripts faults by prompt content: a 429 then success, a 500 then
success, malformed JSON then success, a bad shape then success, a hung request then success, and
prompts that always fail or always hang.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.backends.openai import OpenAIConfig, OpenAIDecoder, TeacherRequestError, Usage, request_seed
from harness.decoding import SamplingParams
from harness.errors import UserError

KEY = "sk-CANARY-7f3a9c-do-not-leak"
HANG_S = 1.0  # how long a hung request sleeps; the client's timeout is far shorter
TOKEN_LP = -0.25  # each generated token's logprob is TOKEN_LP * (choice index + 1)


def answer_text(prompt: str, i: int, temperature: float) -> str:
    return f"Working on {prompt} sample {i} at T={temperature:g}. The answer is {len(prompt) + i}."


class FakeOpenAI:
    """The server's state, shared by its handler threads."""

    def __init__(self, require_key: str | None = KEY, delay_s: float = 0.0) -> None:
        self.require_key = require_key
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # prompt -> requests received
        self.successes: Counter[str] = Counter()  # prompt -> 200 responses with a valid body
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.inflight = 0
        self.max_inflight = 0
        self.counter = 0


def make_handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            with state.lock:
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
                state.counter += 1
                rid = f"req-{state.counter}"
            try:
                self.handle_post(rid)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on a hung request
            finally:
                with state.lock:
                    state.inflight -= 1

        def handle_post(self, rid: str) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            chat = self.path == "/v1/chat/completions"
            if not chat and self.path != "/v1/completions":
                return self.send(404, b'{"error": {"message": "no such route"}}')
            prompt = body["messages"][-1]["content"] if chat else body["prompt"]
            auth = self.headers.get("Authorization")
            with state.lock:
                state.requests[prompt] += 1
                nth = state.requests[prompt]
                state.bodies.append(body)
                state.auth.append(auth)
            if state.require_key is not None and auth != f"Bearer {state.require_key}":
                # like real servers, echo (part of) the bad key: the client must scrub it
                msg = f"Incorrect API key provided: {(auth or '').removeprefix('Bearer ')}"
                return self.send(401, json.dumps({"error": {"message": msg}}).encode(), {"x-request-id": rid})
            if state.delay_s:
                time.sleep(state.delay_s)
            first = nth == 1
            if "RATE" in prompt and first:
                return self.send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0", "x-request-id": rid})
            if "FAIL500" in prompt and first:
                return self.send(500, b"Internal Server Error", {"x-request-id": rid})
            if "BADJSON" in prompt and first:
                return self.send(200, b'{"choices": [ {"text": "trunc', {"x-request-id": rid})
            if "SHAPE" in prompt and first:
                return self.send(200, json.dumps({"id": rid, "object": "oops"}).encode())
            if ("HANG" in prompt and first) or "FOREVER" in prompt:
                time.sleep(HANG_S)
                return self.send(200, b"{}")
            if "DOOMED" in prompt:
                return self.send(503, b'{"error": {"message": "overloaded"}}', {"x-request-id": f"doomed-{rid}"})
            if "BADREQ" in prompt:
                return self.send(400, b'{"error": {"message": "context too long"}}', {"x-request-id": rid})
            self.send(200, json.dumps(self.completion(body, prompt, chat, rid)).encode())
            with state.lock:
                state.successes[prompt] += 1

        def completion(self, body: dict, prompt: str, chat: bool, rid: str) -> dict:
            choices, total = [], 0
            for i in range(body.get("n", 1)):
                text = answer_text(prompt, i, body["temperature"])
                tokens = text.split()
                lps = [TOKEN_LP * (i + 1)] * len(tokens)
                total += len(tokens)
                if chat:
                    lp = {"content": [{"token": t, "logprob": x, "top_logprobs": []} for t, x in zip(tokens, lps)]}
                    choice = {"index": i, "message": {"role": "assistant", "content": " " + text}}
                    choice["logprobs"] = lp if body.get("logprobs") else None
                else:
                    lp = {
                        "tokens": tokens,
                        "token_logprobs": lps,
                        "top_logprobs": [{t: x} for t, x in zip(tokens, lps)],
                    }
                    choice = {"index": i, "text": text, "logprobs": lp if body.get("logprobs") is not None else None}
                choice["finish_reason"] = "stop"
                choices.append(choice)
            choices.reverse()  # servers may list choices in any order; `index` says which is which
            return {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "model": body["model"],
                "choices": choices,
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": total},
            }

    return Handler


@pytest.fixture
def server(monkeypatch):
    """A fresh fake endpoint per test; yields (base_url, state) and shuts it down afterwards."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("DB_TEST_KEY", KEY)
    state = FakeOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def config(url: str, **kw) -> OpenAIConfig:
    base = {
        "base_url": url, "model": "teacher-x", "api_key_env": "DB_TEST_KEY", "max_concurrency": 4,
        "timeout_s": 0.3, "max_retries": 3, "backoff_s": 0.02, "max_backoff_s": 0.1,
    }  # fmt: skip
    return OpenAIConfig(**{**base, **kw})


PARAMS = SamplingParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=40, seed=11)


def check_gens(prompt: str, gens, params=PARAMS, logprobs=True) -> None:
    assert len(gens) == params.n
    for i, g in enumerate(gens):
        text = answer_text(prompt, i, params.temperature)
        assert g.text == text  # stripped, and ordered by choice index
        assert g.n_tokens == len(text.split())
        assert g.token_ids == ()
        if logprobs:
            assert g.logprob == pytest.approx(TOKEN_LP * (i + 1) * len(text.split()))
        else:
            assert math.isnan(g.logprob)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_sample_protocol(server, api):
    url, state = server
    prompts = ["What is 3 + 4?", "What is 10 - 2?", "Name 7 things."]
    with OpenAIDecoder(config(url, api=api, system_prompt="Think step by step.")) as dec:
        out = dec.sample(prompts, PARAMS)
    assert len(out) == len(prompts)
    for p, gens in zip(prompts, out):
        check_gens(p, gens)
    assert state.requests == Counter({p: 1 for p in prompts})
    assert set(state.auth) == {f"Bearer {KEY}"}
    for body in state.bodies:
        assert body["model"] == "teacher-x"
        assert (body["n"], body["temperature"], body["top_p"], body["max_tokens"]) == (3, 0.7, 0.9, 40)
        assert body["logprobs"] == (True if api == "chat" else 1)
        if api == "chat":
            assert body["messages"][0] == {"role": "system", "content": "Think step by step."}
        else:
            assert "messages" not in body
        prompt = body["messages"][-1]["content"] if api == "chat" else body["prompt"]
        assert body["seed"] == request_seed(11, prompt, 0)
    u = dec.usage.as_dict()
    assert u["requests"] == 3 and u["retries"] == 0 and u["errors"] == 0
    assert u["prompt_tokens"] == sum(len(p.split()) for p in prompts)
    assert u["completion_tokens"] == sum(g.n_tokens for gens in out for g in gens)
    assert dec.last_usage.as_dict() == u
    assert dec.cost() is None


def test_no_logprobs_counts_tokens_from_usage(server):
    url, state = server
    dec = OpenAIDecoder(config(url, logprobs=False))
    [gens] = dec.sample(["What is 2 + 2?"], PARAMS)
    assert "logprobs" not in state.bodies[0]
    assert all(math.isnan(g.logprob) for g in gens)
    # usage.completion_tokens split evenly over the choices (remainder to the first)
    total = sum(len(answer_text("What is 2 + 2?", i, 0.7).split()) for i in range(3))
    counts = [g.n_tokens for g in gens]
    assert sum(counts) == total and max(counts) - min(counts) <= 1
    assert [g.text for g in gens] == [answer_text("What is 2 + 2?", i, 0.7) for i in range(3)]


def test_greedy_and_seeds_are_deterministic(server):
    url, state = server
    dec = OpenAIDecoder(config(url))
    prompts = ["same", "other", "same"]
    dec.sample(prompts, SamplingParams(n=1, temperature=0.0, seed=3))
    dec.sample(prompts, SamplingParams(n=1, temperature=0.0, seed=3))
    dec.sample(prompts, SamplingParams(n=1, temperature=0.0, seed=4))
    seeds = [(b["messages"][-1]["content"], b["seed"]) for b in state.bodies]
    first, second, third = (Counter(seeds[i : i + 3]) for i in (0, 3, 6))
    assert first == second  # a rerun asks the same
    assert len(first) == 3  # repeated prompts in one call get distinct seeds
    assert not set(first) & set(third)
    assert all(b["temperature"] == 0 and b["n"] == 1 for b in state.bodies)


def test_retries_recover_in_order(server, caplog):
    url, state = server
    prompts = ["plain one", "RATE limited", "FAIL500 once", "BADJSON once", "SHAPE once", "HANG once", "plain two"]
    caplog.set_level(logging.DEBUG)
    dec = OpenAIDecoder(config(url, max_concurrency=3))
    t0 = time.monotonic()
    out = dec.sample(prompts, PARAMS)
    assert time.monotonic() - t0 < 5
    for p, gens in zip(prompts, out):
        check_gens(p, gens)
    faulty = [p for p in prompts if "plain" not in p]
    assert state.requests == Counter({p: 2 if p in faulty else 1 for p in prompts})
    assert state.successes == Counter({p: 1 for p in prompts})  # no duplicate successful request
    u = dec.usage.as_dict()
    assert (u["requests"], u["retries"], u["errors"]) == (len(prompts) + len(faulty), len(faulty), 0)
    assert u["prompt_tokens"] == sum(len(p.split()) for p in prompts)  # failed attempts count nothing
    log = caplog.text
    assert "HTTP 429" in log and "HTTP 500" in log and "malformed JSON" in log
    assert "malformed response" in log and "timed out" in log
    # request ids from the header (429) and, when there is no header, from the body (bad shape)
    assert any("request id req-" in r.getMessage() and "HTTP 429" in r.getMessage() for r in caplog.records)
    assert any("request id req-" in r.getMessage() and "malformed response" in r.getMessage() for r in caplog.records)


def test_retry_after_is_honoured(server):
    url, _ = server
    # a 1.5 s backoff would show; Retry-After: 0 says retry now
    dec = OpenAIDecoder(config(url, backoff_s=1.5, max_backoff_s=1.5))
    t0 = time.monotonic()
    [gens] = dec.sample(["RATE me"], PARAMS)
    assert time.monotonic() - t0 < 1.0
    check_gens("RATE me", gens)
    assert dec.usage.retries == 1


def test_concurrency_is_bounded(server):
    url, state = server
    state.delay_s = 0.15
    dec = OpenAIDecoder(config(url, max_concurrency=2, timeout_s=2))
    prompts = [f"prompt {i}" for i in range(6)]
    out = dec.sample(prompts, PARAMS)
    for p, gens in zip(prompts, out):
        check_gens(p, gens)
    assert state.max_inflight == 2


def test_permanent_failure_keeps_the_rest(server):
    url, state = server
    prompts = ["good a", "DOOMED prompt", "good b", "good c"]
    dec = OpenAIDecoder(config(url, max_retries=2))
    with pytest.raises(TeacherRequestError) as ei:
        dec.sample(prompts, PARAMS)
    e = ei.value
    assert isinstance(e, UserError)
    assert (e.index, e.status, e.attempts, e.abandoned) == (1, 503, 3, False)
    assert e.request_id and e.request_id.startswith("doomed-req-")
    msg = str(e)
    assert "prompt 1" in msg and "HTTP 503" in msg and e.request_id in msg and "after 3 attempt(s)" in msg
    assert "\n" not in msg
    assert sorted(e.completed) == [0, 2, 3] and list(e.failed) == [1]
    for i in (0, 2, 3):
        check_gens(prompts[i], e.completed[i])
    assert state.requests["DOOMED prompt"] == 3  # max_retries + 1, then it gives up
    u = dec.usage.as_dict()
    assert (u["errors"], u["retries"]) == (1, 2)


def test_sample_iter_yields_before_the_failure(server):
    url, _ = server
    prompts = ["DOOMED first", "fine 1", "fine 2"]
    dec = OpenAIDecoder(config(url, max_retries=1, max_concurrency=1))
    got = {}
    with pytest.raises(TeacherRequestError) as ei:
        for i, gens in dec.sample_iter(prompts, PARAMS):
            got[i] = gens  # a caller would persist these here
    assert sorted(got) == [1, 2] and ei.value.completed == got
    check_gens("fine 1", got[1])


def test_hung_requests_time_out_and_give_up(server):
    url, state = server
    dec = OpenAIDecoder(config(url, timeout_s=0.2, max_retries=1))
    t0 = time.monotonic()
    with pytest.raises(TeacherRequestError) as ei:
        dec.sample(["ok", "FOREVER hung"], PARAMS)
    assert time.monotonic() - t0 < 2
    e = ei.value
    assert e.index == 1 and e.status is None and "timed out after 0.2s" in str(e)
    check_gens("ok", e.completed[0])
    assert state.requests["FOREVER hung"] == 2


def test_client_errors_are_not_retried(server):
    url, state = server
    dec = OpenAIDecoder(config(url))
    with pytest.raises(TeacherRequestError, match=r"not retryable.*HTTP 400.*context too long"):
        dec.sample(["BADREQ x"], PARAMS)
    assert state.requests["BADREQ x"] == 1


def test_missing_key_fails_before_any_request(server, monkeypatch):
    url, state = server
    monkeypatch.delenv("DB_TEST_KEY")
    with pytest.raises(UserError, match=r"set DB_TEST_KEY \(named by teacher.api_key_env\)"):
        OpenAIDecoder(config(url))
    monkeypatch.setenv("DB_TEST_KEY", "  ")
    with pytest.raises(UserError, match="DB_TEST_KEY"):
        OpenAIDecoder(config(url))
    assert state.counter == 0


def test_no_auth_for_local_servers(server):
    url, state = server
    state.require_key = None
    OpenAIDecoder(config(url, api_key_env=None)).sample(["hi"], PARAMS)
    assert state.auth == [None]


def test_key_never_leaks(server, monkeypatch, caplog):
    url, state = server
    caplog.set_level(logging.DEBUG)
    state.require_key = "the-right-key"  # the server rejects KEY and echoes it back in its error
    cfg = config(url, max_concurrency=1)
    dec = OpenAIDecoder(cfg)
    with pytest.raises(TeacherRequestError) as ei:
        dec.sample(["a", "b", "c"], PARAMS)
    e = ei.value
    assert e.status == 401 and "Incorrect API key provided" in str(e)
    # 401 is not retried, and the prompts not yet sent are abandoned (they would fail the same way)
    assert state.counter == 1 and e.failed[1].abandoned and e.failed[2].abandoned
    assert state.auth == [f"Bearer {KEY}"]  # the key was sent, in the header only
    texts = [repr(cfg), str(cfg), repr(dec), str(e), repr(e), caplog.text, *(str(x) for x in e.failed.values())]
    texts += [str(a) for a in e.args] + [repr(dec.usage), repr(vars(cfg))]
    for t in texts:
        assert KEY not in t
    assert "***" in str(e)


def test_config_validation():
    with pytest.raises(UserError, match="api must be"):
        OpenAIConfig(base_url="http://x/v1", model="m", api="chatty")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="base_url"):
        OpenAIConfig(base_url="x/v1", model="m")
    with pytest.raises(UserError, match="max_concurrency"):
        OpenAIConfig(base_url="http://x/v1", model="m", max_concurrency=0)
    with pytest.raises(UserError, match="did you mean 'max_retries'"):
        OpenAIConfig.from_options({"base_url": "http://x/v1", "model": "m", "max_retry": 3})
    with pytest.raises(UserError, match="model must be set"):
        OpenAIConfig.from_options({"base_url": "http://x/v1"})
    cfg = OpenAIConfig.from_options({"base_url": "http://x/v1", "model": "m", "api": "completions"})
    assert cfg.api == "completions"


def test_cost():
    u = Usage(prompt_tokens=2000, completion_tokens=500)
    assert u.cost(None, None) is None
    assert u.cost(0.5, 2.0) == pytest.approx(1.0 + 1.0)
    assert u.cost(None, 2.0) == pytest.approx(1.0)


def test_closing_the_iterator_stops_retrying(server):
    url, state = server
    # without the stop, DOOMED would back off 3 x 1.5 s
    dec = OpenAIDecoder(config(url, max_concurrency=2, backoff_s=1.5, max_backoff_s=1.5))
    t0 = time.monotonic()
    it = dec.sample_iter(["fine", "DOOMED slow", "later 1", "later 2"], PARAMS)
    i, gens = next(it)
    it.close()
    assert time.monotonic() - t0 < 1.2
    assert i in (0, 2, 3) and len(gens) == 3
    assert state.requests["DOOMED slow"] == 1


def test_openai_teacher_builds_a_bank_with_usage_and_a_second_build_sends_nothing(server, tmp_path):
    """The backend through the whole teacher stage: build_bank -> labelled chains, token
    usage and cost recorded in the bank; the same build again makes zero requests."""
    from harness.bank import stats
    from harness.config import TeacherSpec
    from harness.store import Store
    from harness.teacher import build_bank
    from tasks import get_task

    url, state = server
    task = get_task("arith", n_train=12, n_valid=3, n_test=3)
    examples = [*task.load("train"), *task.load("valid")]
    t = TeacherSpec(
        name="openai", model="teacher-x", k=2, chunk_size=4, temperature=0.7,
        openai={"base_url": url, "api_key_env": "DB_TEST_KEY", "timeout_s": 2, "backoff_s": 0.01, "price_per_1k_output": 2.0},
    )  # fmt: skip
    bank, report = build_bank(task, examples, t, Store(tmp_path))
    assert report.chunks_generated == 4 and sum(state.requests.values()) == len(examples)
    chains = bank.chains()
    assert len(chains) == 2 * len(examples) and all(c.source == "teacher:openai:teacher-x" for c in chains)
    # the fake answers len(prompt) + i: parsed, and checked against the gold (mostly wrong)
    assert all(c.answer is not None and c.correct == task.equivalent(c.answer, next(e.answer for e in examples if e.id == c.example_id)) for c in chains)
    usage = bank.usage()
    assert usage["requests"] == len(examples) and usage["completion_tokens"] > 0
    assert usage["cost"] == pytest.approx(usage["completion_tokens"] * 2.0 / 1000)
    assert stats(chains).examples == len(examples)
    assert KEY not in (bank.path / "manifest.json").read_text() and KEY not in (bank.path / "usage.jsonl").read_text()

    before = sum(state.requests.values())
    _, again = build_bank(task, examples, t, Store(tmp_path))
    assert again.chunks_generated == 0 and sum(state.requests.values()) == before
