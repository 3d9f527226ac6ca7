"""Teacher noise on any bank: wrong chains swapped in for a controlled share of each example's
positives (README: Teacher-noise curves; `teacher.noise` in a run spec).

The bank is generated once; the noisy view is derived from its labelled chains, deterministically
for a seed, so a grid over noise rates costs one teacher generation. Per example with P positives,
`rate * P` of them are replaced (when that is not whole, its floor or ceiling, drawn with the
fraction as probability, so the bank-wide share equals the rate in expectation even at K = 1, where
plain rounding would swap nothing below 50% and everything from it). Which positives go and which
negatives come in are drawn per example. A swapped-in chain keeps the replaced positive's place
and sample index (DSS trains on sample 0), so every example keeps its K chains, and it is
labelled wrong (correct=False), exactly like the oracle teacher's `wrong_rate` slips:

- `own`: the example's own negatives, each used once before any is reused. An example without a
  negative keeps its positives: they are counted as `unswappable` (the rate actually reached is
  reported, `wrong_share`).
- `other`: negatives of other examples of the bank, re-attributed to this example (its id), the
  origin kept in meta["noise"]; a chain of another question is wrong for this one even where its
  final answer happens to match. Unswappable only when no other example has a negative.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.types import Chain

SWAPS = ("own", "other")
FORMAT = 1  # part of a noisy view's key: a change to the rule above gives new keys


@dataclass
class NoiseReport:
    """What the noise did to a bank's chains."""

    rate: float
    swap: str
    examples: int = 0
    chains: int = 0
    positives: int = 0  # before the swap
    target: int = 0  # positives drawn for replacement
    swapped: int = 0
    unswappable: int = 0  # drawn for replacement, kept: no negative to swap in
    unswappable_examples: int = 0
    wrong_before: int = 0

    @property
    def wrong_after(self) -> int:
        return self.wrong_before + self.swapped

    @property
    def wrong_share(self) -> float:
        """Share of wrong chains after the swap: the noise actually reached (plus the bank's own)."""
        return self.wrong_after / self.chains if self.chains else math.nan

    def metrics(self) -> dict[str, float]:
        """The per-cell MLflow metrics (`teacher/noise/...`)."""
        return {
            "teacher/noise/rate": self.rate,
            "teacher/noise/target": self.target,
            "teacher/noise/swapped": self.swapped,
            "teacher/noise/unswappable": self.unswappable,
            "teacher/noise/unswappable_examples": self.unswappable_examples,
            "teacher/noise/wrong_share_before": self.wrong_before / self.chains if self.chains else math.nan,
            "teacher/noise/wrong_share": self.wrong_share,
        }


def is_positive(c: Chain) -> bool:
    """A positive as methods see it (harness.teacher.split_bank): right, with an answer."""
    return c.answer is not None and bool(c.correct)


def _rng(seed: int, example_id: str) -> random.Random:
    # sha256, not hash(): the same draws in every process (Python's str hash is salted)
    digest = hashlib.sha256(f"noise\0{seed}\0{example_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def n_swaps(rate: float, positives: int, rng: random.Random) -> int:
    """floor(rate * P), plus one with probability equal to the fraction left (0 when whole)."""
    x = round(rate * positives, 9)  # 0.3 * 10 is 3.0000000000000004: whole, not 3 plus a draw
    n = math.floor(x)
    return n + (rng.random() < x - n) if x > n else n


def apply_noise(chains: Sequence[Chain], rate: float, swap: str, seed: int) -> tuple[list[Chain], NoiseReport]:
    """The chains with `rate` of each example's positives replaced by wrong chains (module doc),
    in the same order, and what was done. rate 0 returns the chains unchanged."""
    if swap not in SWAPS:
        raise ValueError(f"swap must be one of {SWAPS}, got {swap!r}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    by_example: dict[str, list[int]] = {}
    for i, c in enumerate(chains):
        by_example.setdefault(c.example_id, []).append(i)
    report = NoiseReport(rate, swap, examples=len(by_example), chains=len(chains))
    report.positives = sum(is_positive(c) for c in chains)
    report.wrong_before = report.chains - report.positives
    out = list(chains)
    if rate == 0:
        return out, report
    pool = [i for i, c in enumerate(chains) if not is_positive(c)]  # every negative, in bank order
    for example_id, idx in by_example.items():
        rng = _rng(seed, example_id)
        pos = [i for i in idx if is_positive(chains[i])]
        n = n_swaps(rate, len(pos), rng)
        if n == 0:
            continue
        report.target += n
        replaced = sorted(rng.sample(pos, n))
        donors = _donors(chains, pool, idx, example_id, swap, n, rng)
        if not donors:
            report.unswappable += n
            report.unswappable_examples += 1
            continue
        for slot, donor in zip(replaced, donors, strict=True):
            out[slot] = _swapped(chains[donor], chains[slot], example_id, swap)
        report.swapped += n
    return out, report


def _donors(chains: Sequence[Chain], pool: list[int], idx: list[int], example_id: str, swap: str, n: int, rng: random.Random) -> list[int]:
    """n indices of the negatives swapped in ([] when there is none to take)."""
    if swap == "own":
        own = [i for i in idx if not is_positive(chains[i])]
        if not own:
            return []
        rng.shuffle(own)
        return [own[j % len(own)] for j in range(n)]  # each negative once before any is reused
    others = len(pool) - sum(1 for i in idx if not is_positive(chains[i]))
    if others == 0:
        return []
    if 2 * others < len(pool):  # mostly this example's own: list the others rather than reject
        candidates = [i for i in pool if chains[i].example_id != example_id]
        return [rng.choice(candidates) for _ in range(n)]
    picked: list[int] = []
    while len(picked) < n:  # uniform over the other examples' negatives (rejection of own ones)
        i = pool[rng.randrange(len(pool))]
        if chains[i].example_id != example_id:
            picked.append(i)
    return picked


def _swapped(donor: Chain, replaced: Chain, example_id: str, swap: str) -> Chain:
    origin = {"swap": swap, "from_example": donor.example_id, "from_sample": donor.meta.get("sample"), "was_correct": donor.correct}
    meta: dict[str, Any] = {**donor.meta, "noise": origin}
    if "sample" in replaced.meta:  # the replaced positive's slot: sample-0 readers (DSS) see the swap
        meta["sample"] = replaced.meta["sample"]
    return dataclasses.replace(donor, example_id=example_id, correct=False, meta=meta)


def noise_key(bank_key: str, noise: dict[str, Any]) -> str:
    """The key of a bank's noisy view: the generated bank's key and the noise settings (rate 0 is
    the bank itself, so a rate-0 cell reuses the checkpoint of the same cell without noise)."""
    from harness.store import content_key

    if not noise.get("rate"):
        return bank_key
    return content_key({"bank": bank_key, "noise": noise, "format": FORMAT})
