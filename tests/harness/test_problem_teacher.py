"""harness.teacher.ProblemTeacher: FDD's teacher that writes new problems and solves them.

- `oracle` on a procedural task (arith): offline, deterministic, every answer known.
- `openai` against a small real HTTP server on 127.0.0.1 (no network): one request per parent
  with tasks.generation's prompt, the reply parsed into a problem; then K chains per problem
  with the task's own few-shot prompt.
- constructor errors for teachers and tasks that cannot write problems.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.backends.openai import request_seed
from harness.config import TeacherSpec
from harness.errors import UserError
from harness.store import content_key
from harness.teacher import ORACLE_SOURCE, ProblemTeacher
from harness.types import Example
from tasks import get_task
from tasks.arith import evaluate
from tasks.checking import format_number
from tasks.generation import PROMPT_VERSION, problem_prompt

KEY = "sk-fdd-test-key"
KEY_ENV = "FDD_PROBLEM_TEACHER_TEST_KEY"


@pytest.fixture(scope="module")
def arith():
    return get_task("arith", n_train=30, n_valid=5, n_test=5, max_terms=3, max_digits=2)


@pytest.fixture(scope="module")
def parents(arith):
    return arith.load("train")[:12]


def kinds_for(parents) -> list[str]:
    return ["harder" if i % 2 == 0 else "similar" for i in range(len(parents))]


# --- oracle ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle(arith):
    return ProblemTeacher(arith, TeacherSpec(name="oracle", k=3, wrong_rate=0.5))


def test_oracle_write(oracle, arith, parents):
    kinds = kinds_for(parents)
    out = oracle.write(parents, kinds, seed=1)
    assert len(out) == len(parents)
    for (problem, raw, tokens), parent, kind in zip(out, parents, kinds):
        assert isinstance(problem, Example)
        assert raw == problem.question and tokens == len(problem.question.split())
        assert problem.meta["kind"] == kind and problem.meta["parent"] == parent.id
        assert problem.question != parent.question
        # the answer is known: the expression's value
        assert problem.answer
        assert arith.equivalent(problem.answer, format_number(evaluate(problem.meta["expression"])))
    # deterministic for a seed, different across seeds
    assert oracle.write(parents, kinds, seed=1) == out
    other = oracle.write(parents, kinds, seed=2)
    assert [p.question for p, _, _ in other] != [p.question for p, _, _ in out]
    # the kind matters too
    flipped = oracle.write(parents, ["similar" if k == "harder" else "harder" for k in kinds], seed=1)
    assert [p.question for p, _, _ in flipped] != [p.question for p, _, _ in out]


def test_oracle_write_rejects_unknown_kind(oracle, parents):
    with pytest.raises(ValueError, match="unknown problem kind"):
        oracle.write(parents[:1], ["easier"], seed=0)
    with pytest.raises(ValueError):  # one kind per parent
        oracle.write(parents[:2], ["harder"], seed=0)


def test_oracle_solve(oracle, arith, parents):
    problems = [p for p, _, _ in oracle.write(parents, kinds_for(parents), seed=3)]
    chains = oracle.solve(problems, 3, seed=5)
    assert len(chains) == len(problems)
    flags = []
    for problem, cs in zip(problems, chains):
        assert len(cs) == 3
        assert [c.meta["sample"] for c in cs] == [0, 1, 2]
        for c in cs:
            assert c.example_id == problem.id and c.source == ORACLE_SOURCE
            assert c.answer is not None and c.answer == arith.extract(c.text)
            assert c.correct == arith.equivalent(c.answer, problem.answer)
            assert c.correct is (not c.meta["slipped"])  # a slip always changes the answer
            assert c.statement is not None and "answer is" in c.statement
            flags.append(c.correct)
    # wrong_rate 0.5 over 36 chains: both right and wrong ones
    assert 0 < flags.count(False) < len(flags)
    assert oracle.solve(problems, 3, seed=5) == chains  # deterministic
    assert oracle.solve([], 3, seed=5) == []
    assert oracle.usage() == {}


def test_oracle_solve_without_slips(arith, parents):
    teacher = ProblemTeacher(arith, TeacherSpec(name="oracle", k=2, wrong_rate=0.0))
    problems = [p for p, _, _ in teacher.write(parents[:4], ["similar"] * 4, seed=0)]
    assert all(c.correct for cs in teacher.solve(problems, 2, seed=0) for c in cs)


def test_key(oracle, arith):
    key = oracle.key()
    assert key["prompts"] == PROMPT_VERSION
    assert key["family"] == "word"
    assert key["teacher"]["name"] == "oracle" and key["teacher"]["wrong_rate"] == 0.5
    json.dumps(key)  # part of a bank's content key
    other = ProblemTeacher(arith, TeacherSpec(name="oracle", k=3, wrong_rate=0.25))
    assert other.key() != key
    assert ProblemTeacher(get_task("math"), TeacherSpec(name="openai", model="m")).key()["family"] == "math"


# --- openai against a local server -------------------------------------------------------------

PROBLEM_LINE = re.compile(r"^Problem: (.*)$", re.M)


def write_reply(prompt: str) -> str:
    """A teacher's answer to a problem-writing prompt, derived from the parent in it."""
    parent = PROBLEM_LINE.search(prompt)[1]
    if "NOPROBLEM" in parent:
        return "I am sorry, I cannot write such a problem."
    return f"Sure, here is one.\n\n**Problem:** {parent} Then add 5.\n\nSolution: left out."


def solve_reply(i: int) -> str:
    return f"Step {i}: 3 + 4 = 7. The answer is {7 + i}."


class Server:
    """An OpenAI-compatible chat/completions endpoint on 127.0.0.1, recording every request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with state.lock:
                    state.bodies.append(body)
                    state.auth.append(self.headers.get("Authorization"))
                if self.path != "/v1/chat/completions":
                    return self.reply(404, {"error": {"message": "no such route"}})
                prompt = body["messages"][-1]["content"]
                writing = "Do not solve it." in prompt
                texts = [write_reply(prompt) if writing else solve_reply(i) for i in range(body.get("n", 1))]
                choices = [
                    {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                    for i, t in enumerate(texts)
                ]
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": sum(len(t.split()) for t in texts)}
                self.reply(
                    200,
                    {
                        "id": "r",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": choices,
                        "usage": usage,
                    },
                )

            def reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def prompts(self) -> Counter[str]:
        return Counter(b["messages"][-1]["content"] for b in self.bodies)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(KEY_ENV, KEY)
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join(timeout=5)


def openai_spec(url: str, k: int = 3) -> TeacherSpec:
    options = {
        "base_url": url, "api_key_env": KEY_ENV, "max_concurrency": 2, "timeout_s": 5.0,
        "max_retries": 0, "logprobs": False, "price_per_1k_output": 2.0,
    }  # fmt: skip
    return TeacherSpec(
        name="openai", model="fake-model", k=k, temperature=0.8, top_p=0.95, max_new_tokens=64, openai=options
    )


@pytest.fixture
def openai_teacher(server, arith):
    teacher = ProblemTeacher(arith, openai_spec(server.url))
    yield teacher
    if teacher._decoder is not None:
        teacher._decoder.close()


ARITH_PARENTS = [
    Example(id="p1", question="Calculate 12 + 30.", answer="42"),
    Example(id="p2", question="Calculate 5 * 6.", answer="30"),
    Example(id="p3", question="Calculate NOPROBLEM.", answer="0"),
]
ARITH_KINDS = ["harder", "similar", "similar"]


def test_openai_write(server, openai_teacher, arith):
    teacher = openai_teacher
    assert teacher.source == "teacher:openai:fake-model"
    assert teacher.usage() == {}  # no decoder yet
    out = teacher.write(ARITH_PARENTS, ARITH_KINDS, seed=9)

    expected = [problem_prompt(arith, p, k) for p, k in zip(ARITH_PARENTS, ARITH_KINDS)]
    assert server.prompts() == Counter(expected)  # exactly one request per parent, its own kind
    assert "harder variant" in expected[0] and "similar difficulty" in expected[1]
    assert set(server.auth) == {f"Bearer {KEY}"}
    for body in server.bodies:
        prompt = body["messages"][-1]["content"]
        assert body["model"] == "fake-model" and body["n"] == 1
        assert body["temperature"] == 0.8 and body["top_p"] == 0.95 and body["max_tokens"] == 64
        assert body["seed"] == request_seed(9, prompt, 0)

    assert len(out) == 3
    for (problem, raw, tokens), parent, kind in zip(out[:2], ARITH_PARENTS, ARITH_KINDS):
        question = f"{parent.question} Then add 5."
        assert raw == write_reply(problem_prompt(arith, parent, kind))  # the full raw text
        assert tokens == len(raw.split())
        assert problem == Example(
            id=f"gen-{content_key(question)[:12]}",
            question=question,
            answer="",
            meta={"kind": kind, "parent": parent.id},
        )
        assert re.fullmatch(r"gen-[0-9a-f]{12}", problem.id)
    # a reply without "Problem:": no problem, the raw text kept
    problem, raw, tokens = out[2]
    assert problem is None
    assert raw == "I am sorry, I cannot write such a problem." and tokens == len(raw.split())

    usage = teacher.usage()
    assert usage["requests"] == 3 and usage["errors"] == 0 and usage["retries"] == 0
    assert usage["completion_tokens"] == sum(t for _, _, t in out)
    assert usage["prompt_tokens"] == sum(len(p.split()) for p in expected)
    assert usage["cost"] == pytest.approx(usage["completion_tokens"] * 2.0 / 1000)


def test_openai_solve(server, openai_teacher, arith):
    teacher = openai_teacher
    problems = [p for p, _, _ in teacher.write(ARITH_PARENTS[:2], ARITH_KINDS[:2], seed=0)]
    n_write = len(server.bodies)
    before = teacher.usage()

    chains = teacher.solve(problems, 3, seed=4)
    bodies = server.bodies[n_write:]
    prompts = [arith.prompt(p) for p in problems]
    assert Counter(b["messages"][-1]["content"] for b in bodies) == Counter(prompts)  # the task's own prompt
    for b in bodies:
        assert b["n"] == 3 and b["seed"] == request_seed(4, b["messages"][-1]["content"], 0)

    assert len(chains) == len(problems)
    for problem, cs in zip(problems, chains):
        assert len(cs) == 3
        assert [c.text for c in cs] == [solve_reply(i) for i in range(3)]  # ordered by choice index
        assert [c.answer for c in cs] == ["7", "8", "9"]
        for i, c in enumerate(cs):
            assert c.example_id == problem.id and c.source == "teacher:openai:fake-model"
            assert c.correct is None  # a model's problem has no known answer
            assert c.meta["sample"] == i
            assert c.statement == f"The answer is {7 + i}." and c.rationale == f"Step {i}: 3 + 4 = 7."
            assert c.n_tokens > 0

    usage = teacher.usage()
    assert usage["requests"] == before["requests"] + len(problems)
    assert usage["completion_tokens"] == before["completion_tokens"] + len(problems) * sum(
        len(solve_reply(i).split()) for i in range(3)
    )
    assert usage["prompt_tokens"] == before["prompt_tokens"] + sum(len(p.split()) for p in prompts)
    assert teacher.solve([], 3, seed=4) == [] and len(server.bodies) == n_write + len(problems)


def test_openai_write_math_family_keeps_subject_and_level(server):
    math_task = get_task("math")  # the constructor reads no data; write never calls load
    teacher = ProblemTeacher(math_task, openai_spec(server.url, k=1))
    parent = Example(
        id="m1", question="Find $x$ if $2x = 8$.", answer="4", meta={"subject": "Algebra", "level": 2, "x": 1}
    )
    try:
        [(problem, _, _)] = teacher.write([parent], ["harder"], seed=0)
        [prompt] = server.prompts()
        [chains] = teacher.solve([problem], 2, seed=0)  # MATH's own few-shot prompt
    finally:
        teacher.decoder.close()
    assert server.bodies[-1]["messages"][-1]["content"] == math_task.prompt(problem)
    assert [(c.answer, c.correct) for c in chains] == [("7", None), ("8", None)]
    assert prompt == problem_prompt(math_task, parent, "harder")
    assert "(Algebra, level 2)" in prompt and "\\boxed{}" in prompt
    assert problem is not None and problem.question == "Find $x$ if $2x = 8$. Then add 5."
    assert problem.meta == {"kind": "harder", "parent": "m1", "subject": "Algebra", "level": 2}


def test_openai_missing_key_is_user_error(server, arith, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    teacher = ProblemTeacher(arith, openai_spec(server.url))
    with pytest.raises(UserError, match=KEY_ENV):
        teacher.write(ARITH_PARENTS[:1], ["harder"], seed=0)
    assert server.bodies == []


# --- constructor errors --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gold", "dss", "tdg", "nonsense"])
def test_teacher_that_cannot_write(arith, name):
    with pytest.raises(UserError, match="cannot write new problems") as e:
        ProblemTeacher(arith, TeacherSpec(name=name, model="m"))
    assert repr(name) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("task_name", ["csqa", "anli", "esnli"])
@pytest.mark.parametrize("spec", [TeacherSpec(name="oracle"), TeacherSpec(name="openai", model="m")])
def test_task_without_problem_family(task_name, spec):
    with pytest.raises(UserError, match="no problem-writing prompts") as e:
        ProblemTeacher(get_task(task_name), spec)
    assert repr(task_name) in str(e.value)


@pytest.mark.parametrize("task_name", ["gsm8k", "svamp", "math"])
def test_oracle_on_non_procedural_task(task_name):
    with pytest.raises(UserError, match="only procedural tasks"):
        ProblemTeacher(get_task(task_name), TeacherSpec(name="oracle"))


@pytest.mark.parametrize("name", ["openai", "hf", "vllm"])
def test_model_teacher_without_model(arith, name):
    with pytest.raises(UserError, match="needs teacher.model"):
        ProblemTeacher(arith, TeacherSpec(name=name))


def test_gsm_symbolic_oracle_writes():
    task = get_task("gsm_symbolic", n_train=60, n_valid=15, n_test=15)
    teacher = ProblemTeacher(task, TeacherSpec(name="oracle", k=2, wrong_rate=0.5))
    parents = task.load("train")[:3]
    out = teacher.write(parents, ["harder", "similar", "harder"], seed=0)
    problems = [p for p, _, _ in out]
    assert all(p is not None and p.answer for p in problems)
    chains = teacher.solve(problems, 2, seed=0)
    assert [len(cs) for cs in chains] == [2, 2, 2]
    assert all(c.correct == task.equivalent(c.answer, p.answer) for p, cs in zip(problems, chains) for c in cs)

