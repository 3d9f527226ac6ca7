"""Early-stopping self-consistency at decoding time: only the windows ESC needs are decoded."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from harness.aggregate import decide, parse_scheme
from harness.decoding import Generation, SamplingParams, sample_early_stopping
from harness.types import Example
from tasks import get_task

GSM8K = get_task("gsm8k")


class Scripted:
    """A decoder whose answers are fixed per prompt: 'steady' always says 7, 'torn' never agrees,
    'late' agrees from its second window on. Records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int, int]] = []

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        self.calls.append((list(prompts), params.n, params.seed))
        out = []
        for p in prompts:
            if p == "steady":
                answers = ["7"] * params.n
            elif p == "torn":
                answers = [str(100 * params.seed + j) for j in range(params.n)]
            else:
                answers = [str(j) for j in range(params.n)] if params.seed == 0 else ["3"] * params.n
            out.append([Generation(f"The answer is {a}.", -1.0, 4) for a in answers])
        return out


def test_stops_each_example_at_its_first_unanimous_window() -> None:
    examples = [Example("a", "steady", "7"), Example("b", "torn", "1"), Example("c", "late", "3")]
    dec = Scripted()
    params = SamplingParams(n=7, temperature=0.7, seed=0)
    chains = sample_early_stopping(dec, examples, [e.question for e in examples], GSM8K, "student:t", params, window=3)
    # window 1 for all; window 2 for torn and late; the last (short) window for torn only
    assert dec.calls == [(["steady", "torn", "late"], 3, 0), (["torn", "late"], 3, 1), (["torn"], 1, 2)]
    per = {e.id: [c for c in chains if c.example_id == e.id] for e in examples}
    assert [len(per[x]) for x in "abc"] == [3, 7, 6]
    assert all([c.meta["sample"] for c in cs] == list(range(len(cs))) for cs in per.values())
    # esc over what was decoded decides as sampling-time ESC does, using exactly those chains
    esc = parse_scheme("esc:3")
    assert [(d.answer, d.used) for d in (decide(esc, per[x], GSM8K.canonical, GSM8K.equivalent) for x in "abc")] == [
        ("7", 3),
        ("0", 7),  # no unanimous window: majority over all 7, seven one-vote answers: the first seen wins
        ("3", 6),
    ]


def test_window_must_fit() -> None:
    with pytest.raises(ValueError, match="window"):
        sample_early_stopping(Scripted(), [], [], GSM8K, "s", SamplingParams(n=2, temperature=0.7), window=3)
