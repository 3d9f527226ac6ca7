"""tasks.generation: FDD's problem-writing prompts (per family and kind) and parsing the
teacher's reply. Task objects are built without loading data: only `name` and
`problem_family` are read."""

from __future__ import annotations

import pytest

from harness.errors import UserError
from harness.types import Example
from tasks import get_task
from tasks.generation import MAX_PROBLEM_CHARS, PROMPT_VERSION, family_of, parse_problem, problem_prompt

WORD_Q = "Tom has 3 apples and buys 4 more. How many apples does he have?"
MATH_Q = "Find $x$ if $2x + 3 = 11$."
REPLY = 'Reply with the problem only, on a line starting with "Problem:".'


@pytest.fixture(scope="module")
def word_task():
    return get_task("gsm8k")  # the constructor reads no files


@pytest.fixture(scope="module")
def math_task():
    return get_task("math")


@pytest.fixture(scope="module")
def arith_task():
    return get_task("arith", n_train=5, n_valid=2, n_test=2)


def word_ex(question: str = WORD_Q) -> Example:
    return Example(id="w1", question=question, answer="7")


def math_ex(**meta) -> Example:
    return Example(id="m1", question=MATH_Q, answer="4", meta=meta)


# --- families ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "family"),
    [
        ("gsm8k", {}, "word"),
        ("svamp", {}, "word"),
        ("arith", {"n_train": 5, "n_valid": 2, "n_test": 2}, "word"),
        ("math", {}, "math"),
        ("math500", {}, "math"),
    ],
)
def test_family_of(name, options, family):
    assert family_of(get_task(name, **options)) == family


@pytest.mark.parametrize("name", ["csqa", "anli", "esnli"])
def test_family_of_unsupported_task_is_one_line_user_error(name):
    task = get_task(name)
    with pytest.raises(UserError) as e:
        family_of(task)
    msg = str(e.value)
    assert "\n" not in msg
    assert repr(name) in msg and "no problem-writing prompts" in msg
    with pytest.raises(UserError):
        problem_prompt(task, word_ex(), "harder")


def test_family_of_object_without_family():
    class Bare:
        name = "bare"

    with pytest.raises(UserError, match="'bare'"):
        family_of(Bare())


def test_prompt_version_is_a_string():
    assert isinstance(PROMPT_VERSION, str) and PROMPT_VERSION


# --- prompts -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["harder", "similar"])
@pytest.mark.parametrize("fixture", ["word_task", "arith_task", "math_task"])
def test_prompt_common_parts(request, fixture, kind):
    task = request.getfixturevalue(fixture)
    question = MATH_Q if fixture == "math_task" else WORD_Q
    p = problem_prompt(task, Example(id="x", question=f"  {question}\n", answer="1"), kind)
    assert f"Problem: {question}\n" in p  # the parent, stripped, on its own "Problem:" line
    assert p.count(question) == 1
    assert REPLY in p and "Do not solve it." in p
    assert p.endswith(REPLY + "\n")
    assert problem_prompt(task, Example(id="x", question=question, answer="1"), kind) == p  # deterministic


def test_word_prompts_harder_vs_similar(word_task):
    harder = problem_prompt(word_task, word_ex(), "harder")
    similar = problem_prompt(word_task, word_ex(), "similar")
    assert harder != similar
    assert harder.startswith("You write grade-school math word problems")
    assert "solved this problem correctly" in harder and "harder variant" in harder
    assert "could not solve this problem" in similar and "similar difficulty" in similar
    assert "harder" not in similar and "similar difficulty" not in harder
    for p in (harder, similar):
        assert "exactly one numeric answer" in p
        assert "\\boxed" not in p and "competition" not in p


def test_math_prompts_harder_vs_similar(math_task):
    harder = problem_prompt(math_task, math_ex(), "harder")
    similar = problem_prompt(math_task, math_ex(), "similar")
    assert harder != similar
    assert "solved this problem correctly" in harder and "harder" in harder
    assert "could not solve this problem" in similar and "similar difficulty" in similar
    for p in (harder, similar):
        assert p.startswith("You write competition mathematics problems")
        assert "\\boxed{}" in p  # the doubled braces of the template render as one pair
        assert "LaTeX" in p
        assert "grade-school" not in p
        assert "this problem correctly:" in p or "this problem:" in p  # no subject/level without meta


@pytest.mark.parametrize("kind", ["harder", "similar"])
def test_math_prompt_subject_and_level(math_task, kind):
    both = problem_prompt(math_task, math_ex(subject="Number Theory", level=4), kind)
    assert "this problem (Number Theory, level 4)" in both
    subject_only = problem_prompt(math_task, math_ex(subject="Geometry"), kind)
    assert "this problem (Geometry)" in subject_only and "level" not in subject_only
    level_only = problem_prompt(math_task, math_ex(level=2), kind)  # level alone is not shown
    assert "level" not in level_only and level_only == problem_prompt(math_task, math_ex(), kind)


def test_word_prompt_ignores_meta(word_task):
    ex = Example(id="w", question=WORD_Q, answer="7", meta={"subject": "Algebra", "level": 3})
    # the word templates have no subject slot
    assert problem_prompt(word_task, ex, "harder") == problem_prompt(word_task, word_ex(), "harder")


@pytest.mark.parametrize("kind", ["easier", "Harder", "", "same"])
def test_unknown_kind_is_value_error(word_task, math_task, kind):
    for task in (word_task, math_task):
        with pytest.raises(ValueError, match="unknown problem kind"):
            problem_prompt(task, word_ex(), kind)


def test_question_with_braces_is_not_formatted(word_task, math_task):
    q = "Let $f(x) = \\frac{1}{x}$ and {y} be {0}. Find $f(2)$."
    for task in (word_task, math_task):
        assert f"Problem: {q}\n" in problem_prompt(task, word_ex(q), "similar")


# --- parsing -------------------------------------------------------------------------------

LONG = "x" * MAX_PROBLEM_CHARS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Problem: Ann has 5 pens. How many?", "Ann has 5 pens. How many?"),
        ("Problem:Ann has 5 pens.", "Ann has 5 pens."),
        ("problem: lower case.", "lower case."),
        ("PROBLEM: upper case.", "upper case."),
        ("  Problem:   padded.  \n", "padded."),
        ("**Problem:** Bold markdown.", "Bold markdown."),
        ("**Problem**: Bold label only.", "Bold label only."),
        ("New problem: A new one.", "A new one."),
        ("**New Problem:** Bold new one.", "Bold new one."),
        ("Sure! Here is a harder variant.\n\nProblem: Only this.", "Only this."),
        (
            "Here is a new problem:\nProblem: After a preamble naming the problem.",
            "After a preamble naming the problem.",
        ),
        ("Problem:\nOn the next line.", "On the next line."),
        ("Problem: First part\nsecond part\n   third part.", "First part second part third part."),
        ("Problem: Ends at a blank line.\n\nThis is commentary.", "Ends at a blank line."),
        ("Problem: Ends at blank with spaces.\n   \nMore.", "Ends at blank with spaces."),
        ("Problem: Ends at solution.\nSolution: 3 + 4 = 7.", "Ends at solution."),
        ("Problem: Ends at bold solution.\n**Solution:** 7", "Ends at bold solution."),
        ("Problem: Ends at answer.\nAnswer: 7", "Ends at answer."),
        ("Problem: The first.\nProblem: The second.", "The first."),
        (
            "Problem: Mid-line words stay: the answer: 7 and problem: x.",
            "Mid-line words stay: the answer: 7 and problem: x.",
        ),
        ("Problem: Windows line ends.\r\n\r\nSolution: 7", "Windows line ends."),
        ("Problem: $\\frac{1}{2} + x = 3$, find $x$.", "$\\frac{1}{2} + x = 3$, find $x$."),
        ("Problem: " + LONG, LONG),  # exactly MAX_PROBLEM_CHARS is kept
    ],
)
def test_parse_problem(text, expected):
    assert parse_problem(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n  ",
        "I cannot write a harder problem.",
        "Tom has 5 apples. How many?",  # no "Problem:" line
        "The problem: is mid-line here.",  # "problem:" not at the start of a line
        "Problem 1: numbered labels are not read",
        "Problem:",
        "Problem:   \n\n",
        "Problem:\nSolution: 7",
        "Problem: Answer: 7",
        "Problem: " + LONG + "x",  # a teacher that ran on
        "Problem: " + " ".join(["word"] * (MAX_PROBLEM_CHARS // 4)),  # long once joined
    ],
)
def test_parse_problem_none(text):
    assert parse_problem(text) is None


def test_parse_problem_length_counts_the_joined_text():
    # whitespace runs collapse before the length check: a long raw reply can still fit
    words = ["ab"] * (MAX_PROBLEM_CHARS // 3)
    text = "Problem: " + "\n     ".join(words)
    assert len(text) > 2 * MAX_PROBLEM_CHARS
    assert parse_problem(text) == " ".join(words)
