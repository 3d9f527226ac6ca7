r"""The final answer of a chain as models write it: boxed, stated, in display math, or a bare number.

Four sources, each a pure function over the text after the last `</think>` (the visible answer
of a reasoning model; the whole text when nothing follows it):

  boxed    the last \boxed{} / \fbox{} (or bare "\boxed 5"); boxes joined only by "and", "or",
           "," or space ("\boxed{4} and \boxed{-1}") are one answer: "4, -1"
  stated   the last "final answer (is)(:)", "the answer is(:)", a line "Answer: ...", "####":
           its math if it has some ("is $\frac12$." -> \frac12), the words after the last
           " is " in prose ("Final answer: the smallest k is 12." -> 12), else the text
  display  the last math span: $$...$$, \[...\], \(...\), $...$ (Pandoc's rule: no space just
           inside the dollars, no digit right after the closing one, so "$5 and $6" is not math)
  number   the last number ("1,234.5", "-3", "2/3")

`find_answer(text, order)` returns the first source in `order` that finds something. Tasks
choose the order: MATH keeps \boxed{} first (boxed > stated > display, number only on request),
word-problem tasks keep their statement first ("The answer is", "####").

Everything here is regular expressions and one linear scan of the delimiters: no eval, no sympy,
no shell; text past MAX_TEXT characters is cut from the front (the answer is at the end).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import NamedTuple

SOURCES = ("boxed", "stated", "display", "number")
MATH_ORDER = ("boxed", "stated", "display")  # MATH; "number" only with last_number_fallback
WORD_ORDER = ("stated", "boxed", "number")  # numeric word problems (GSM8K, SVAMP, ...)
MAX_TEXT = 20_000  # characters read from the end of a chain
_MAX_BODY = 600  # characters of a statement read after its anchor


class Found(NamedTuple):
    """An extracted answer and the source that found it."""

    answer: str
    source: str


def check_order(order: Sequence[str], where: str = "answer_order") -> tuple[str, ...]:
    """The order as a tuple, or ValueError naming the unknown source."""
    bad = [s for s in order if s not in SOURCES]
    hint = ""
    if bad and (close := difflib.get_close_matches(str(bad[0]), SOURCES, n=1)):
        hint = f" (did you mean {close[0]!r}?)"
    if bad or not order or len(set(order)) != len(order):
        raise ValueError(f"{where}: a non-empty list of distinct sources from {list(SOURCES)}, got {list(order)}{hint}")
    return tuple(order)


def answer_region(text: str) -> str:
    """The text after the last </think> (if anything follows it), at most MAX_TEXT characters."""
    cut = text.rfind("</think>")
    if cut >= 0 and text[cut + 8 :].strip():
        text = text[cut + 8 :]
    return text[-MAX_TEXT:]


# --- boxes ------------------------------------------------------------------------------------

_BOX_TOKENS = re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]")
_BOX_BARE = re.compile(r"\\boxed[ \t]+([^\s${}\\]+)")
# What may stand between two boxes of one answer once math delimiters are dropped.
# ("x = \boxed{4} and x = \boxed{-1}": the next box may repeat the variable.)
_JOINER = re.compile(
    r"\s*(?:,|;|,?\s*(?:and|or)|\\text\{\s*,?\s*(?:and|or)\s*\}|\\quad|\\qquad)?\s*(?:[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*)?",
    re.IGNORECASE,
)
_DELIMS = re.compile(r"\$|\\[()\[\]]")


def boxes(text: str) -> list[tuple[int, int, str]]:
    r"""(start, end, content) of every outermost \boxed{...} with balanced braces, and of bare
    "\boxed X", in text order. One pass over the braces."""
    found: list[tuple[int, int, str]] = []
    stack: list[tuple[int, int, bool]] = []  # (command start, content start, opened by \boxed)
    for m in _BOX_TOKENS.finditer(text):
        tok = m.group(0)
        if tok == "}":
            if stack:
                start, content, boxed = stack.pop()
                if boxed and not any(b for _, _, b in stack):  # outermost box only
                    found.append((start, m.end(), text[content : m.start()]))
        else:
            stack.append((m.start(), m.end(), tok != "{"))
    inside = [(s, e) for s, e, _ in found]
    for m in _BOX_BARE.finditer(text):
        if not any(s <= m.start() < e for s, e in inside):
            found.append((m.start(), m.end(), m.group(1).rstrip(".,;:")))
    found.sort()
    return found


def boxed_answer(text: str) -> str | None:
    """The last box, with the boxes just before it that are joined to it by and/or/commas."""
    found = [b for b in boxes(text) if b[2].strip()]
    if not found:
        return None
    group = [found[-1]]
    for prev in reversed(found[:-1]):
        gap = _DELIMS.sub(" ", text[prev[1] : group[0][0]])
        if not _JOINER.fullmatch(gap):
            break
        group.insert(0, prev)
    return ", ".join(c.strip() for _, _, c in group)


# --- math spans -------------------------------------------------------------------------------

_MATH_TOKENS = re.compile(r"\\\\|\\\$|\$\$|\$|\\\[|\\\]|\\\(|\\\)")
_CLOSER = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}


def math_spans(text: str) -> list[tuple[int, int, str]]:
    r"""(start, end, content) of each $$..$$, \[..\], \(..\) and $..$ span, in order. Linear.

    Inline $...$ follows Pandoc: the opening $ has a non-space right after it, the closing $ a
    non-space right before it and no digit right after it; it does not cross a blank line.
    """
    spans: list[tuple[int, int, str]] = []
    open_tok: str | None = None
    open_at = open_end = 0
    for m in _MATH_TOKENS.finditer(text):
        tok = m.group(0)
        if tok in ("\\\\", "\\$"):
            continue
        if open_tok is None:
            if tok in _CLOSER:
                if tok == "$" and (m.end() >= len(text) or text[m.end()].isspace()):
                    continue
                open_tok, open_at, open_end = tok, m.start(), m.end()
            continue
        if tok != _CLOSER[open_tok]:
            if open_tok == "$" and tok in ("$$", "\\[", "\\("):  # an inline span never closed
                open_tok, open_at, open_end = tok, m.start(), m.end()
            continue
        content = text[open_end : m.start()]
        if open_tok == "$" and (
            not content or content[-1].isspace() or "\n\n" in content
            or (m.end() < len(text) and text[m.end()].isdigit())
        ):
            if "\n\n" in content or (m.end() < len(text) and text[m.end()].isdigit()):
                open_tok = None
            continue
        spans.append((open_at, m.end(), content.strip()))
        open_tok = None
    return spans


def display_answer(text: str) -> str | None:
    """The content of the last non-empty math span."""
    for _, _, content in reversed(math_spans(text)):
        content = content.rstrip(_TRAILING + " ")  # "$x = 19.$": the sentence's period
        if content:
            return content
    return None


# --- stated answers ---------------------------------------------------------------------------

_ANCHOR = re.compile(
    r"final\s+answer(?:\s+is)?\s*[:：]?"
    r"|(?<![a-z])(?:the|my)\s+(?:final\s+)?answer\s+is\s*[:：]?"
    r"|^[ \t>*#_]*answer[*_]*\s*[:：][*_]*"
    r"|####",
    re.IGNORECASE | re.MULTILINE,
)
_HOPE = re.compile(r"\.?\s*I hope it is correct.*", re.IGNORECASE | re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")
_PROSE_IS = re.compile(r"\s(?:is|are|equals|=)\s+", re.IGNORECASE)
_EMPHASIS = "*_` \t\n"
_TRAILING = ".,;:!?"


def _statement_body(text: str, start: int) -> str:
    """From start to the end of the statement: the end of its first math span if it opens with
    one, else the first sentence end or newline outside math."""
    body = text[start : start + _MAX_BODY]
    body = _HOPE.sub("", body)
    spans = math_spans(body)
    lead = len(body) - len(body.lstrip(_EMPHASIS))
    if spans and spans[0][0] == lead:  # "Final answer: $$ ... $$" may span lines
        end = spans[0][1]
        for s, e, _ in spans[1:]:  # "$4$ and $-1$": more spans joined to the first
            if not _JOINER.fullmatch(body[end:s]):
                break
            end = e
        return body[:end]
    for m in _SENTENCE_END.finditer(body):
        if not any(s < m.start() < e for s, e, _ in spans):
            return body[: m.start()]
    return body


def _clean_statement(body: str) -> str | None:
    body = body.strip(_EMPHASIS).rstrip(_TRAILING).strip(_EMPHASIS)
    if not body:
        return None
    if (box := boxed_answer(body)) is not None:
        return box
    spans = math_spans(body)
    # prose: "the smallest k is 12" -> "12" (outside math only: "$x = 2$" keeps its "=")
    cut = 0
    for m in _PROSE_IS.finditer(body):
        if not any(s <= m.start() < e for s, e, _ in spans):
            cut = m.end()
    if cut:
        body = body[cut:].strip(_EMPHASIS).rstrip(_TRAILING)
        spans = math_spans(body)
    if spans:  # its math: "$4$ and $-1$" is one answer; unrelated spans, the last one
        parts = [spans[0][2]]
        for (_, end, _), (start, _, content) in zip(spans, spans[1:]):
            parts = [*parts, content] if _JOINER.fullmatch(body[end:start]) else [content]
        joined = ", ".join(p for p in parts if p)
        if joined:
            return joined
    body = _DELIMS.sub("", body).strip(_EMPHASIS).rstrip(_TRAILING).strip()
    return body or None


def stated_answer(text: str) -> str | None:
    """The answer of the last answer statement that has one (see the module docstring)."""
    for m in reversed(list(_ANCHOR.finditer(text))):
        answer = _clean_statement(_statement_body(text, m.end()))
        if answer is not None:
            return answer
    return None


# --- numbers ----------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def last_number(text: str) -> str | None:
    """The last number-looking token ("1,234.5", "-3", "2/3")."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


# --- the chain's answer -----------------------------------------------------------------------

_FINDERS = {"boxed": boxed_answer, "stated": stated_answer, "display": display_answer, "number": last_number}


def find_answer(text: str | None, order: Sequence[str] = MATH_ORDER) -> Found | None:
    """The first answer the sources in `order` find in the chain's answer region, with its source."""
    if not text or not text.strip():
        return None
    region = answer_region(text)
    for source in order:
        answer = _FINDERS[source](region)
        if answer is not None and answer.strip():
            return Found(answer.strip(), source)
    return None


def final_answer(text: str | None, order: Sequence[str] = MATH_ORDER) -> str | None:
    """find_answer's answer alone."""
    found = find_answer(text, order)
    return None if found is None else found.answer
