"""GSM8K-style word problems from reasoning-gym's gsm_symbolic (templated, with gold chains).

Generation is fast (about 35 us per item, so the default 1200-item pool takes ~0.1 s), but
importing reasoning_gym costs ~1.4 s, so it is imported on first use (a load or
`write_problem`), not with this module.
Splits are disjoint by question text; questions from one template with different numbers
can land in different splits, as in any templated benchmark.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, ClassVar

from harness.errors import UserError, unknown
from harness.types import Example
from tasks import checking
from tasks.arith import fill_splits, sha256_hex, slip_value
from tasks.base import SPLITS, check_problem_kind

# reasoning-gym's GSMSymbolicDataset appends this to every generated question.
_SUFFIX = " Give the result as your final answer. Do not include units."
_HARDER = 1.5  # a "harder" problem's difficulty over its parent's (the number ranges scale with it)
_PROBLEM_DRAWS = 20  # generator calls per difficulty before giving up on it

_EXEMPLARS = (
    (
        "Tom has 3 boxes with 12 pencils in each box. He gives away 9 pencils. "
        "How many pencils does he have left?",
        "Tom has 3 * 12 = 36 pencils.\nAfter giving some away he has 36 - 9 = 27 pencils.\n"
        "The answer is 27.",
    ),
    (
        "A bakery sells muffins for $2 each. On Monday it sold 45 muffins and on Tuesday "
        "twice as many. How much money did it make on the two days?",
        "On Tuesday it sold 45 * 2 = 90 muffins.\nIn total it sold 45 + 90 = 135 muffins.\n"
        "That makes 135 * $2 = $270.\nThe answer is 270.",
    ),
    (
        "Maria reads 15 pages a day for 6 days and then 20 pages on the seventh day. "
        "How many pages does she read that week?",
        "In six days she reads 15 * 6 = 90 pages.\nWith the seventh day she reads "
        "90 + 20 = 110 pages.\nThe answer is 110.",
    ),
)


@dataclass(frozen=True)
class GSMSymbolicTask(checking.NumericAnswers):
    """Grade-school word problems with reasoning-gym's templated gold chains as rationales."""

    n_train: int = 1000
    n_valid: int = 100
    n_test: int = 100
    seed: int = 0

    name: ClassVar[str] = "gsm_symbolic"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise UserError(
                    f"task 'gsm_symbolic': option {f.name} must be an integer, got {v!r}"
                )
        if min(self.n_train, self.n_valid, self.n_test) < 0:
            raise UserError("task 'gsm_symbolic': split sizes must be >= 0")

    def load(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        return list(_load_gsm(self)[split])

    def prompt(self, example: Example) -> str:
        shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in _EXEMPLARS)
        return shots + f"Q: {example.question}\nA:"

    def write_chain(
        self, example: Example, slip_rng: random.Random | None = None
    ) -> tuple[str, str]:
        """(chain, final answer) from the gold rationale; with slip_rng, one carried slip."""
        if not example.rationale:
            raise ValueError(f"example {example.id} has no rationale to write a chain from")
        body = _strip_final(example.rationale)
        if slip_rng is None:
            return f"{body}\nThe answer is {example.answer}.", example.answer
        body, answer = slip_chain(body, example.answer, slip_rng, example.question)
        assert not checking.equivalent(answer, example.answer), (example.id, answer)
        return f"{body}\nThe answer is {answer}.", answer

    def write_problem(self, example: Example, kind: str, rng: random.Random) -> Example:
        """The parent's template with new numbers from a fresh generator seed: "similar" at
        the parent's difficulty, "harder" at 1.5 times it (wider number ranges). Where the
        generator keeps failing at the higher difficulty, the parent's is used (meta records
        the difficulty of the problem written)."""
        check_problem_kind(kind)
        template = self._template_of(example)
        generate = _generators()[template]
        base = float(example.meta.get("difficulty", 1.0))
        for difficulty in (base * _HARDER, base) if kind == "harder" else (base,):
            for _ in range(_PROBLEM_DRAWS):
                try:
                    item = generate(random.Random(rng.getrandbits(64)), difficulty)
                except Exception:  # some templates cannot fit their numbers in every draw
                    continue
                if item["question"] + _SUFFIX == example.question:
                    continue
                meta = {
                    "template": template,
                    "difficulty": difficulty,
                    "kind": kind,
                    "parent": example.id,
                    "variables": item["metadata"]["variables"],
                    "index": None,
                }
                return _from_row({**item, "question": item["question"] + _SUFFIX}, meta)
        raise ValueError(f"template {template} wrote no new problem for {example.id}")

    def _template_of(self, example: Example) -> int:
        """The reasoning-gym template (generator number) an example was made from."""
        if example.meta.get("template") is not None:
            return int(example.meta["template"])
        index = example.meta.get("index")
        if index is None:
            raise ValueError(f"example {example.id} has neither a template nor a source index")
        # Examples loaded before meta had "template": the dataset's template list is a prefix-
        # stable random.choices draw, so a dataset of index + 1 items has the same one at index.
        return _dataset(self.seed, index + 1).task_indices[index]


# --- slipped chains -------------------------------------------------------------------------

_FINAL = re.compile(r"\n?\s*####[^\n]*\s*$")


def _strip_final(cot: str) -> str:
    return _FINAL.sub("", cot).rstrip()


# A number as written in these chains: optional currency, thousands commas, decimals, percent.
_NUM = r"[$\u00a3\u20ac]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?|[$\u00a3\u20ac]?\d+(?:\.\d+)?%?"
_NUM_RE = re.compile(rf"(?<![\w.])(?:{_NUM})(?![\w])")
# "= N" where N is the whole right-hand side: not the start of "= 10+2(10)" or "= 1,234+5",
# but "= $2340/month" is a result with a unit.
_RESULT = re.compile(rf"=\s*({_NUM})(?![\d,.]?\d)(?!\s*(?:[-+*\u00d7\u00f7(]|/\s*[\d(]|x\s*\d))")
# Order matters: "x 3" is a product, "/month" a unit (not a division), other words units.
_EXPR_TOKEN = re.compile(
    rf"(?P<num>{_NUM})|(?P<x>x)(?=\s*[$\d(])|(?P<unit>/?[A-Za-z]+(?:/[A-Za-z]+)*)"
    r"|(?P<op>[-+*/\u00d7\u00f7])|(?P<lp>\()|(?P<rp>\))"
)
_Token = tuple[str, Any]  # (kind, text); kind in num, op, lp, rp


def _value(num: str) -> Fraction:
    v = Fraction(num.lstrip("$\u00a3\u20ac").rstrip("%").replace(",", ""))
    return v / 100 if num.endswith("%") else v


def _format_like(value: Fraction, like: str) -> str:
    """value written the way `like` was: same currency sign, decimals and comma style."""
    prefix = like[0] if like[0] in "$\u00a3\u20ac" else ""
    pct = like.endswith("%")
    v = value * 100 if pct else value
    core = like.lstrip("$\u00a3\u20ac").rstrip("%")
    places = len(core.partition(".")[2])
    if v.denominator == 1 and not places:
        text = str(v.numerator)
    else:  # keep the printed decimals; a new non-integer gets up to two more, like "3.33"
        text = f"{float(v):.{max(places, 2)}f}"
        while len(text.partition(".")[2]) > places and text.endswith("0"):
            text = text[:-1]
        text = text.rstrip(".")
    if "," in core:
        whole, dot, frac = text.partition(".")
        text = f"{int(whole):,}" + dot + frac
    return f"{prefix}{text}{'%' if pct else ''}"


class _Expr:
    """Recursive-descent evaluator over the number tokens of a left-hand side."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.t, self.i = tokens, 0

    def parse(self) -> Fraction:
        v = self.sum()
        if self.i != len(self.t):
            raise ValueError("trailing tokens")
        return v

    def peek(self) -> _Token | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def sum(self) -> Fraction:
        v = self.product()
        while (p := self.peek()) and p[0] == "op" and p[1] in "+-":
            self.i += 1
            v = v + self.product() if p[1] == "+" else v - self.product()
        return v

    def product(self) -> Fraction:
        v = self.atom()
        while (p := self.peek()) and (p[0] == "op" and p[1] in "*/" or p[0] in ("num", "lp")):
            if p[0] == "op":
                self.i += 1
            b = self.atom()  # no operator: implicit multiplication, as in "2(10)"
            if p[0] == "op" and p[1] == "/":
                if b == 0:
                    raise ValueError("division by zero")
                v = v / b
            else:
                v = v * b
        return v

    def atom(self) -> Fraction:
        p = self.peek()
        if p is None:
            raise ValueError("unexpected end")
        self.i += 1
        if p[0] == "num":
            return p[1]
        if p[0] == "op" and p[1] == "-":
            return -self.atom()
        if p[0] == "lp":
            v = self.sum()
            if self.peek() != ("rp", ")"):
                raise ValueError("unbalanced")
            self.i += 1
            return v
        raise ValueError(f"unexpected {p}")


def _lhs(segment: str) -> list[_Token] | None:
    """The arithmetic at the end of segment (the text before an "="), or None if there is none.

    A unit word right after a number is dropped ("3 kg/horse * 43 horse"); any other word
    ends the expression, so the prose before it is ignored.
    """
    toks: list[_Token] = []
    pos = 0
    while pos < len(segment):
        if segment[pos].isspace():
            pos += 1
            continue
        m = _EXPR_TOKEN.match(segment, pos)
        if m is None:
            toks.append(("junk", segment[pos]))
            pos += 1
            continue
        kind = m.lastgroup or ""
        text = {"x": "*", "\u00d7": "*", "\u00f7": "/"}.get(m[kind], m[kind])
        toks.append(("op", "*") if kind == "x" else (kind, text))
        pos = m.end()
    expr: list[_Token] = []
    for j in range(len(toks) - 1, -1, -1):
        kind = toks[j][0]
        if kind == "unit" and j > 0 and toks[j - 1][0] in ("num", "rp"):
            continue
        if kind in ("unit", "junk"):
            break
        expr.append(toks[j])
    expr.reverse()
    while expr and (expr[0][0] == "rp" or expr[0][0] == "op" and expr[0][1] != "-"):
        expr.pop(0)
    kinds = {k for k, _ in expr}
    if "num" not in kinds or not kinds & {"op", "lp"}:
        return None
    try:
        _evaluate(expr, {})
    except (ValueError, ZeroDivisionError):
        return None
    return expr


def _evaluate(expr: list[_Token], changed: dict[Fraction, Fraction]) -> Fraction:
    """Value of an expression, with numbers whose value was changed replaced."""
    tokens = []
    for k, v in expr:
        if k == "num":
            value = _value(v)
            tokens.append(("num", changed.get(value, value)))
        else:
            tokens.append((k, v))
    return _Expr(tokens).parse()


def _propagate(
    body: str, target: int, wrong: Fraction
) -> tuple[str, dict[Fraction, Fraction], list[str]]:
    """Set the target-th "= N" result to wrong and carry the change through later lines.

    Later numbers equal to a changed value are rewritten; a later "= N" whose left-hand side
    is arithmetic that reproduces N (to its printed precision) is recomputed. Returns the new
    body, the changed values and the new text of every "= N" result.
    """
    results = list(_RESULT.finditer(body))
    changed: dict[Fraction, Fraction] = {}
    pos = results[target].start(1)
    out = [body[:pos]]
    texts = [m[1] for m in results]
    for k, m in enumerate(results[target:], start=target):
        old = _value(m[1])
        new = wrong
        if m is not results[target]:
            segment = body[pos : m.start()]
            new = old
            expr = _lhs(segment)
            places = len(m[1].rstrip("%").partition(".")[2])
            if expr is not None and abs(_evaluate(expr, {}) - old) <= Fraction(1, 2 * 10**places):
                new = _evaluate(expr, changed)
            elif old in changed:  # "for a total of 54 minutes = ..." style restatements
                new = changed[old]
            out.append(_rewrite(segment, changed) + body[m.start() : m.start(1)])
        if new != old:
            changed[old] = new
        texts[k] = _format_like(new, m[1])
        out.append(texts[k])
        pos = m.end(1)
    out.append(_rewrite(body[pos:], changed))
    return "".join(out), changed, texts


def _shown(num: str) -> Fraction:
    """The number as printed, ignoring "%": "34%" shows 34, the final answer's convention."""
    return _value(num.rstrip("%"))


def _rewrite(text: str, changed: dict[Fraction, Fraction]) -> str:
    if not changed:
        return text

    def sub(m: re.Match[str]) -> str:
        v = _value(m[0])
        return _format_like(changed[v], m[0]) if v in changed else m[0]

    return _NUM_RE.sub(sub, text)


def _final_text(value: Fraction) -> str:
    # Chains print rounded decimals; an answer of 12.333333333333333 would look machine-made.
    if value.denominator != 1:
        return checking.canonical(f"{float(value):.2f}")
    return checking.format_number(value)


def slip_chain(body: str, gold: str, rng: random.Random, question: str = "") -> tuple[str, str]:
    """(slipped chain body, wrong final answer) for a gold chain body without its final line.

    Tries "= N" results in random order until the slip carries through to a different final
    answer, trying first those whose value is not a number given in the question (rewriting a
    given constant reads oddly); otherwise slips the last result equal to the gold; failing
    that, only the final answer changes.
    """
    gold_value = checking.parse_number(gold)
    if gold_value is None:
        raise ValueError(f"gold answer {gold!r} is not a number")
    results = list(_RESULT.finditer(body))
    # The result the final answer restates: the last one that shows the gold value.
    final_at = max((k for k, m in enumerate(results) if _shown(m[1]) == gold_value), default=None)
    given = {_value(m[0]) for m in _NUM_RE.finditer(question)}
    order = [t for t in range(len(results)) if final_at is not None and t <= final_at]
    rng.shuffle(order)
    order.sort(key=lambda t: _value(results[t][1]) in given)  # stable: random within groups
    for target in order:
        old = _value(results[target][1])
        new_body, changed, texts = _propagate(
            body, target, slip_value(old, rng, nonnegative=old >= 0)
        )
        if any(new < 0 <= was for was, new in changed.items()):
            continue  # a negative count or age reads as nonsense, not as a slip
        final = _final_text(_shown(texts[final_at]))  # type: ignore[index]
        if not checking.equivalent(final, gold):
            return new_body, final
    wrong = slip_value(gold_value, rng, nonnegative=gold_value >= 0)
    if final_at is None:
        return body, checking.format_number(wrong)
    m = results[final_at]
    like = m[1]
    text = _format_like(wrong / 100 if like.endswith("%") else wrong, like)
    return body[: m.start(1)] + text + body[m.end(1) :], _final_text(_shown(text))


# --- loading --------------------------------------------------------------------------------


def _dataset(seed: int, size: int) -> Any:
    """reasoning-gym's gsm_symbolic dataset (imported here, on first use: see the module doc)."""
    import reasoning_gym

    return reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed)


@functools.lru_cache(maxsize=1)
def _generators() -> dict[int, Any]:
    """Template number -> reasoning-gym generator function(rng, difficulty)."""
    # The dataset's config allows only difficulty 1.0; the generators themselves take any.
    return dict(_dataset(0, 1).generators)


@functools.lru_cache(maxsize=8)
def _load_gsm(task: GSMSymbolicTask) -> dict[str, tuple[Example, ...]]:
    sizes = {"train": task.n_train, "valid": task.n_valid, "test": task.n_test}
    max_draws = 50 * sum(sizes.values()) + 10_000
    # Template choice is a prefix-stable random.choices list and items use seed + index, so a
    # bigger pool only appends items.
    ds = _dataset(task.seed, max_draws)
    chosen = fill_splits(
        (ds[i] for i in range(max_draws)),
        key=lambda it: it["question"],
        sizes=sizes,
        what=f"task 'gsm_symbolic' with {task}",
        max_draws=max_draws,
    )
    return {
        split: tuple(_example(r, ds.task_indices[r["metadata"]["source_index"]]) for r in rows)
        for split, rows in chosen.items()
    }


def _example(row: dict[str, Any], template: int) -> Example:
    meta = {
        "index": row["metadata"]["source_index"],
        "variables": row["metadata"]["variables"],
        "template": template,
        "difficulty": float(row["metadata"]["difficulty"]),
    }
    return _from_row(row, meta)


def _from_row(row: dict[str, Any], meta: dict[str, Any]) -> Example:
    # The id hashes the question alone, so a written problem equal to a loaded one shares its id.
    return Example(
        id=f"gsm-{sha256_hex(row['question'])[:12]}",
        question=row["question"],
        answer=checking.canonical(row["answer"]),
        rationale=row["metadata"]["answer_cot"],
        meta=meta,
    )
