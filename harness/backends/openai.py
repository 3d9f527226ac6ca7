"""The `openai` teacher backend: any OpenAI-compatible HTTP endpoint behind the `Decoder` interface.

One POST per prompt (`n=params.n` choices in one request) to `{base_url}/chat/completions`
(api="chat") or `{base_url}/completions` (api="completions"), at most `max_concurrency` in flight.

- The API key is read from the environment variable the config names, once, at construction: a
  missing/empty variable is a `UserError` before any request. The key lives only in the
  Authorization header; the config holds the variable's *name*, never the key, and every log line
  and error message is scrubbed of it.
- Retries with exponential backoff (jittered, capped, `Retry-After` honoured) on 408/409/429/5xx,
  connection errors, timeouts, malformed JSON and malformed response shapes. Other 4xx are not
  retried; 401/403/404 also stop the prompts not yet sent (every one would fail the same way).
- After the last attempt: `TeacherRequestError` naming the prompt index, HTTP status and request id
  (header `x-request-id`, else the body's `id`). `sample_iter` yields each prompt's generations
  as it finishes so a caller can persist them; `sample` collects all and, when a prompt failed,
  raises once every other prompt has finished, with what completed on `err.completed`.
- Token accounting: `decoder.usage` (cumulative) and `decoder.last_usage` (the last call), both
  thread-safe `Usage` records; `decoder.cost()` when prices are configured.

Generation fields: `text` is the choice's text, stripped (as the HF backend does). `logprob` is
the sum of the per-token logprobs the server reports (chat: `logprobs.content[*].logprob`,
completions: `logprobs.token_logprobs`), NaN when the server returns none; whether those are
tempered depends on the server (OpenAI and vLLM's default report the sampling distribution's).
`n_tokens` is the length of that logprob list (servers usually leave EOS out, unlike the HF
backend); without logprobs it is `usage.completion_tokens` split evenly over the n choices
(remainder to the first ones), an approximation; with no usage either, the whitespace word count.
`token_ids` is empty (the server's tokenizer is not ours).
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Self

import requests

from harness.decoding import Generation, SamplingParams
from harness.errors import UserError, check_options, redact, register_secret

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx
FATAL_STATUSES = frozenset({401, 403, 404})  # the same for every prompt: stop sending the rest
_DETAIL_CHARS = 200


@dataclass(frozen=True)
class OpenAIConfig:
    """Where and how to ask. Holds the *name* of the key's environment variable, never the key."""

    base_url: str  # e.g. "http://127.0.0.1:8000/v1" or "https://api.openai.com/v1"
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"  # None: no Authorization header (local servers)
    api: Literal["chat", "completions"] = "chat"
    max_concurrency: int = 8  # requests in flight at once
    timeout_s: float = 60.0  # connect and read timeout of each request
    max_retries: int = 5  # attempts per prompt = max_retries + 1
    backoff_s: float = 1.0  # first retry waits ~backoff_s, doubling each time (jittered)
    max_backoff_s: float = 30.0  # cap on one wait, Retry-After included
    logprobs: bool = True
    system_prompt: str | None = None  # chat only: prepended as a system message
    send_seed: bool = True  # some endpoints reject `seed`
    price_per_1k_input: float | None = None  # currency units per 1000 prompt tokens
    price_per_1k_output: float | None = None  # ... per 1000 completion tokens

    def __post_init__(self) -> None:
        where = "teacher 'openai'"
        if not self.base_url.startswith(("http://", "https://")):
            raise UserError(f"{where}: base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise UserError(f"{where}: model must be set")
        if self.api not in ("chat", "completions"):
            raise UserError(f"{where}: api must be 'chat' or 'completions', got {self.api!r}")
        if self.api_key_env is not None and not self.api_key_env:
            raise UserError(f"{where}: api_key_env must name an environment variable (or be null for no key)")
        if self.max_concurrency < 1:
            raise UserError(f"{where}: max_concurrency must be >= 1, got {self.max_concurrency}")
        if not self.timeout_s > 0:
            raise UserError(f"{where}: timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise UserError(f"{where}: max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise UserError(f"{where}: backoff_s and max_backoff_s must be >= 0")
        for p in (self.price_per_1k_input, self.price_per_1k_output):
            if p is not None and p < 0:
                raise UserError(f"{where}: prices must be >= 0, got {p}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> OpenAIConfig:
        """From a spec section's keys (e.g. the teacher section minus its own fields);
        an unknown key is a one-line UserError with did-you-mean."""
        known = [f.name for f in fields(cls)]
        check_options("teacher 'openai'", options, known)
        for required in ("base_url", "model"):
            if required not in options:
                raise UserError(f"teacher 'openai': {required} must be set")
        return cls(**dict(options))


@dataclass
class Usage:
    """Token and request accounting; safe to update from several threads.

    requests: HTTP attempts sent (retries included); retries: attempts that were retried;
    errors: prompts given up on; prompt/completion tokens: from successful responses' `usage`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def cost(self, price_per_1k_input: float | None, price_per_1k_output: float | None) -> float | None:
        """None when neither price is known; a missing one counts as 0."""
        if price_per_1k_input is None and price_per_1k_output is None:
            return None
        with self._lock:
            return (
                self.prompt_tokens * (price_per_1k_input or 0.0) + self.completion_tokens * (price_per_1k_output or 0.0)
            ) / 1000


class TeacherRequestError(UserError):
    """A prompt the endpoint never answered properly, after every retry (or a non-retryable error).

    A UserError, so the CLI shows it as one line: almost always the endpoint, key, model or quota
    named in the spec. Carries `index` (the prompt), `status` (HTTP status, None for timeouts and
    connection errors), `request_id`, `attempts`, `abandoned`; from `sample`/`sample_iter` also `completed`
    (index -> generations of every prompt that succeeded) and `failed` (index -> error)."""

    def __init__(
        self,
        message: str,
        *,
        index: int,
        status: int | None = None,
        request_id: str | None = None,
        attempts: int = 0,
        abandoned: bool = False,
    ) -> None:
        super().__init__(message)
        self.abandoned = abandoned  # not failed itself: stopped because of another prompt or a closed iterator
        self.index = index
        self.status = status
        self.request_id = request_id
        self.attempts = attempts
        self.completed: dict[int, list[Generation]] = {}
        self.failed: dict[int, TeacherRequestError] = {}


class _Malformed(Exception):
    """A 200 response whose body is not what the protocol promises."""


@dataclass
class _Attempt:
    """Why one attempt failed."""

    status: int | None
    request_id: str | None
    detail: str
    retryable: bool
    retry_after: float | None = None


def request_seed(seed: int, prompt: str, occurrence: int) -> int:
    """The `seed` sent for a prompt: a function of params.seed, the prompt's text and which copy
    of that text it is within the call, so a rerun (or a resume that sends only the prompts still
    missing) asks each prompt the same question. 31 bits: endpoints take a signed int."""
    digest = hashlib.sha256(f"{seed}\0{occurrence}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` / `Retry-After` (seconds or an HTTP date), None if absent."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIDecoder:
    """`Decoder` over an OpenAI-compatible endpoint. Use as a context manager or call `close()`."""

    def __init__(self, config: OpenAIConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        env = os.environ if environ is None else environ
        self._secret: str | None = None
        headers = {"Content-Type": "application/json"}
        if config.api_key_env is not None:
            key = env.get(config.api_key_env, "").strip()
            if not key:
                raise UserError(
                    f"teacher 'openai': set {config.api_key_env} (named by teacher.api_key_env) to the "
                    "endpoint's API key, or set teacher.api_key_env to null for a server without auth"
                )
            self._secret = key
            register_secret(key)  # a server may echo it anywhere: messages, ids, bodies
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers
        path = "chat/completions" if config.api == "chat" else "completions"
        self._url = config.base_url.rstrip("/") + "/" + path
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=config.max_concurrency)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self.usage = Usage()
        self.last_usage = Usage()

    def __repr__(self) -> str:
        c = self.config
        return f"OpenAIDecoder(model={c.model!r}, url={self._url!r}, api_key_env={c.api_key_env!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cost(self) -> float | None:
        """Cumulative cost from `usage` and the configured prices; None without prices."""
        return self.usage.cost(self.config.price_per_1k_input, self.config.price_per_1k_output)

    # -- the Decoder interface ------------------------------------------------------------------

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        """params.n generations per prompt, in prompt order. If any prompt fails, raises the
        lowest-index failure (abandoned prompts aside) once all have finished, with `.completed`/`.failed`."""
        done: dict[int, list[Generation]] = {}
        for i, gens in self.sample_iter(prompts, params):
            done[i] = gens
        return [done[i] for i in range(len(prompts))]

    def sample_iter(self, prompts: Sequence[str], params: SamplingParams) -> Iterator[tuple[int, list[Generation]]]:
        """(prompt index, generations) for each prompt as it finishes, in completion order.

        A failed prompt does not stop the others: after the last one finishes, the lowest-index
        `TeacherRequestError` is raised with `.completed` (everything yielded) and `.failed`.
        Closing the generator early stops sending and abandons retries."""
        self.last_usage = call_usage = Usage()
        seen: dict[str, int] = {}
        seeds = []
        for p in prompts:
            seeds.append(request_seed(params.seed, p, seen.get(p, 0)))
            seen[p] = seen.get(p, 0) + 1
        stop = threading.Event()
        completed: dict[int, list[Generation]] = {}
        failed: dict[int, TeacherRequestError] = {}
        t0 = time.monotonic()
        if not prompts:
            return
        pool = ThreadPoolExecutor(
            max_workers=min(self.config.max_concurrency, len(prompts)), thread_name_prefix="openai"
        )
        try:
            pending: dict[Future[list[Generation]], int] = {
                pool.submit(self._one, i, p, params, seeds[i], stop, call_usage): i for i, p in enumerate(prompts)
            }
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = pending.pop(fut)
                    try:
                        gens = fut.result()
                    except TeacherRequestError as e:
                        failed[i] = e
                        continue
                    completed[i] = gens
                    yield i, gens
        finally:
            stop.set()  # a closed generator: abandon waits and unsent prompts
            pool.shutdown(wait=True, cancel_futures=True)
            u = call_usage.as_dict()
            log.info(
                "openai %s: %d/%d prompts in %.1fs, %d requests (%d retries), %d+%d tokens%s",
                self.config.model, len(completed), len(prompts), time.monotonic() - t0,
                u["requests"], u["retries"], u["prompt_tokens"], u["completion_tokens"],
                f", {len(failed)} failed" if failed else "",
            )  # fmt: skip
        if failed:
            # report a prompt that was actually tried (not one abandoned because of it)
            tried = [i for i, e in failed.items() if not e.abandoned]
            first = failed[min(tried or failed)]
            if len(failed) > 1:
                first.args = (f"{first.args[0]} (and {len(failed) - 1} more prompt(s) failed)",)
            first.completed = completed
            first.failed = failed
            raise first

    # -- one prompt -----------------------------------------------------------------------------

    def _body(self, prompt: str, params: SamplingParams, seed: int) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {
            "model": c.model,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if c.send_seed:
            body["seed"] = seed
        if c.api == "chat":
            messages = [{"role": "system", "content": c.system_prompt}] if c.system_prompt else []
            body["messages"] = [*messages, {"role": "user", "content": prompt}]
            if c.logprobs:
                body["logprobs"] = True
        else:
            body["prompt"] = prompt
            if c.logprobs:
                body["logprobs"] = 1
        return body

    def _scrub(self, text: str) -> str:
        return redact(text.replace(self._secret, "***") if self._secret else text)

    def _sleep_before(self, attempt: int, retry_after: float | None, stop: threading.Event) -> None:
        c = self.config
        if retry_after is not None:
            delay = min(c.max_backoff_s, retry_after)
        else:
            with self._rng_lock:
                jitter = 0.5 + 0.5 * self._rng.random()
            delay = min(c.max_backoff_s, c.backoff_s * 2 ** (attempt - 1)) * jitter
        if delay > 0:
            stop.wait(delay)

    def _one(
        self, index: int, prompt: str, params: SamplingParams, seed: int, stop: threading.Event, call_usage: Usage
    ) -> list[Generation]:
        c = self.config
        body = self._body(prompt, params, seed)
        attempts = c.max_retries + 1
        fail: _Attempt | None = None
        tried = 0
        while tried < attempts:
            if tried:
                self._sleep_before(tried, fail.retry_after if fail else None, stop)
            if stop.is_set():
                for u in (self.usage, call_usage):
                    u.add(errors=1)
                why = f" (last attempt: {fail.detail})" if fail else ""
                raise TeacherRequestError(
                    f"teacher 'openai': prompt {index} abandoned after {tried} attempt(s): the call was stopped{why}",
                    index=index, status=fail.status if fail else None,
                    request_id=fail.request_id if fail else None, attempts=tried, abandoned=True,
                )  # fmt: skip
            for u in (self.usage, call_usage):
                u.add(requests=1, retries=1 if tried else 0)
            tried += 1
            result = self._attempt(body, params.n, call_usage)
            if isinstance(result, list):
                return result
            fail = result
            fail.detail = self._scrub(fail.detail)
            if not fail.retryable or tried == attempts:
                break
            log.warning("openai: prompt %d attempt %d/%d failed: %s; retrying", index, tried, attempts, _describe(fail))
        assert fail is not None
        for u in (self.usage, call_usage):
            u.add(errors=1)
        if fail.status in FATAL_STATUSES:
            stop.set()  # wrong key / model / URL: every other prompt would fail the same way
        how = f"after {tried} attempt(s)" if fail.retryable else "(not retryable)"
        msg = f"teacher 'openai': prompt {index} failed {how}: {_describe(fail)}"
        log.error("%s", msg)
        raise TeacherRequestError(msg, index=index, status=fail.status, request_id=fail.request_id, attempts=tried)

    def _attempt(self, body: dict[str, Any], n: int, call_usage: Usage) -> list[Generation] | _Attempt:
        """One POST: the generations, or why it failed."""
        c = self.config
        try:
            r = self._session.post(
                self._url, json=body, headers=self._headers, timeout=(min(10.0, c.timeout_s), c.timeout_s)
            )
        except requests.Timeout:
            return _Attempt(None, None, f"timed out after {c.timeout_s:g}s", retryable=True)
        except requests.ConnectionError as e:
            return _Attempt(None, None, f"connection error ({type(e).__name__}) to {self._url}", retryable=True)
        except requests.RequestException as e:
            return _Attempt(None, None, f"{type(e).__name__}: {str(e)[:_DETAIL_CHARS]}", retryable=False)
        rid = r.headers.get("x-request-id") or r.headers.get("request-id")
        rid = self._scrub(rid) if rid else rid  # servers have echoed the Authorization header here
        if not 200 <= r.status_code < 300:
            s = r.status_code
            return _Attempt(
                s, rid, _error_detail(r), retryable=s in RETRY_STATUSES or s >= 500, retry_after=_retry_after(r.headers)
            )
        try:
            data = r.json()
        except ValueError:
            return _Attempt(r.status_code, rid, f"malformed JSON: {r.text[:80]!r}", retryable=True)
        if rid is None and isinstance(data, dict) and isinstance(data.get("id"), str):
            rid = self._scrub(data["id"])
        try:
            gens, prompt_tokens, completion_tokens = self._parse(data, n)
        except _Malformed as e:
            return _Attempt(r.status_code, rid, f"malformed response: {e}", retryable=True)
        for u in (self.usage, call_usage):
            u.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return gens

    def _parse(self, data: Any, n: int) -> tuple[list[Generation], int, int]:
        if not isinstance(data, dict):
            raise _Malformed(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list):
            raise _Malformed("no 'choices' list")
        if len(choices) != n:
            raise _Malformed(f"asked for n={n} choices, got {len(choices)} (does the endpoint support n?)")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = _int(usage.get("prompt_tokens"))
        completion_tokens = _int(usage.get("completion_tokens"))
        try:
            ordered = sorted(choices, key=lambda ch: ch.get("index", 0))
        except (AttributeError, TypeError) as e:
            raise _Malformed("choices are not objects with an integer 'index'") from e
        share, extra = divmod(completion_tokens, n)
        gens = []
        for j, ch in enumerate(ordered):
            if self.config.api == "chat":
                msg = ch.get("message")
                text = msg.get("content") if isinstance(msg, dict) else None
                text = "" if text is None and isinstance(msg, dict) else text  # e.g. a refusal or tool call
            else:
                text = ch.get("text")
            if not isinstance(text, str):
                raise _Malformed(f"choice {j} has no text")
            lps = _token_logprobs(ch.get("logprobs"), self.config.api)
            if lps is not None:
                lp, n_tok = math.fsum(lps), len(lps)
            else:
                lp = float("nan")
                n_tok = share + (1 if j < extra else 0) if completion_tokens else len(text.split())
            gens.append(Generation(self._scrub(text).strip(), float(lp), int(n_tok)))  # an echoed key never reaches a bank
        return gens, prompt_tokens, completion_tokens


def _describe(fail: _Attempt) -> str:
    status = f"HTTP {fail.status}" if fail.status is not None else "no response"
    rid = f" (request id {fail.request_id})" if fail.request_id else ""
    return f"{status}{rid}: {fail.detail}"


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _token_logprobs(lp: Any, api: str) -> list[float] | None:
    """The per-token logprobs of one choice, None when the server gave none."""
    if not isinstance(lp, dict):
        return None
    if api == "chat":
        content = lp.get("content")
        if not isinstance(content, list):
            return None
        raw = [t.get("logprob") if isinstance(t, dict) else None for t in content]
    else:
        raw = lp.get("token_logprobs")
        if not isinstance(raw, list):
            return None
    # None appears for echoed prompt tokens; anything else non-numeric is malformed
    if any(x is not None and (isinstance(x, bool) or not isinstance(x, int | float)) for x in raw):
        raise _Malformed("non-numeric logprob")
    return [float(x) for x in raw if x is not None]


def _error_detail(r: requests.Response) -> str:
    """The server's error message (OpenAI shape: {"error": {"message": ...}}), else the body's start."""
    try:
        data = r.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:_DETAIL_CHARS]
        if isinstance(err, str):
            return err[:_DETAIL_CHARS]
        if isinstance(data.get("message"), str):
            return data["message"][:_DETAIL_CHARS]
    text = " ".join(r.text.split())
    return (text[:_DETAIL_CHARS] or r.reason or "").strip()
