"""Answer aggregation over the K chains of one example (greedy, self-consistency, ...).

A scheme spec is "name" or "name@k": the named aggregator applied to the first k chains of
each example (all chains when k is omitted).

Grouping and tie-break, shared by every voting scheme through `weighted_vote`:

* answers are grouped by the task's equivalence, not by raw strings: first by `key(answer)`
  (the task's cheap canonical form), then key groups whose representatives (their first-seen
  surface forms) satisfy `same(a, b)` are merged. `same` is only called pairwise over
  representatives, and merging is transitive (union-find) even if `same` is not;
* `None` answers never vote, so an unparsable answer never wins; no votes at all -> None;
* the group with the largest total weight wins; among groups with equal total weight the one
  whose first vote comes earliest in chain order wins;
* the returned answer is the winning group's first-seen surface form (as the chain wrote it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from harness.errors import UserError
from harness.registry import lookup
from harness.types import Chain

Key = Callable[[str], str]
Same = Callable[[str, str], bool]


class Aggregator(Protocol):
    """Picks one answer (or None) from the chains of one example."""

    def __call__(
        self, chains: Sequence[Chain], same: Same | None = None, key: Key | None = None
    ) -> str | None: ...


def weighted_vote(
    answers: Sequence[str | None],
    weights: Sequence[float],
    key: Key | None = None,
    same: Same | None = None,
) -> str | None:
    """The answer whose equivalence group has the largest total weight (see module doc)."""
    if len(answers) != len(weights):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")

    # Key groups in order of first vote: representative surface form, first index, weight.
    by_key: dict[str, int] = {}
    reps: list[str] = []
    first: list[int] = []
    total: list[float] = []
    for i, (answer, weight) in enumerate(zip(answers, weights)):
        if answer is None:
            continue
        k = key(answer) if key is not None else answer
        g = by_key.get(k)
        if g is None:
            by_key[k] = len(reps)
            reps.append(answer)
            first.append(i)
            total.append(weight)
        else:
            total[g] += weight
    if not reps:
        return None

    # Union-find over key groups; the root is always the earliest group, so a merged group
    # keeps the first-seen surface form and first index without extra bookkeeping.
    parent = list(range(len(reps)))

    def find(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    if same is not None:
        for a in range(len(reps)):
            for b in range(a + 1, len(reps)):
                ra, rb = find(a), find(b)
                if ra != rb and same(reps[a], reps[b]):
                    parent[max(ra, rb)] = min(ra, rb)

    merged: dict[int, float] = {}
    for g in range(len(reps)):
        r = find(g)
        merged[r] = merged.get(r, 0) + total[g]
    # Roots are key-group indices, which are ordered by first vote, so the smallest root
    # wins ties.
    best = min(merged, key=lambda r: (-merged[r], r))
    return reps[best]


def greedy(
    chains: Sequence[Chain], same: Same | None = None, key: Key | None = None
) -> str | None:
    """The answer of the first chain (the caller passes the single greedy chain)."""
    return chains[0].answer if chains else None


def majority(
    chains: Sequence[Chain], same: Same | None = None, key: Key | None = None
) -> str | None:
    """Self-consistency: the most frequent answer group, one vote per chain."""
    # Integer weights keep totals exact, so ties are real ties whatever the chain order.
    return weighted_vote([c.answer for c in chains], [1] * len(chains), key=key, same=same)


AGGREGATORS: dict[str, Aggregator] = {
    "greedy": greedy,
    "majority": majority,
}


def parse_scheme(spec: str) -> tuple[str, int | None]:
    """("name", k) from "name" or "name@k"; UserError on an unknown name or a bad k."""
    name, sep, k_text = spec.strip().partition("@")
    lookup(AGGREGATORS, name, "aggregation scheme")
    if not sep:
        return name, None
    if not (k_text.isascii() and k_text.isdigit()) or int(k_text) < 1:
        raise UserError(
            f"bad aggregation scheme {spec!r}: k after '@' must be a positive integer"
        )
    return name, int(k_text)


def aggregate(
    scheme: str,
    chains_by_example: Mapping[str, Sequence[Chain]],
    key: Key | None = None,
    same: Same | None = None,
) -> dict[str, str | None]:
    """Each example's aggregated answer under `scheme` ("name" or "name@k").

    With k, only the first k chains of each example are used; an example with fewer than k
    chains is a UserError rather than a silently smaller vote.
    """
    name, k = parse_scheme(scheme)
    fn = AGGREGATORS[name]
    out: dict[str, str | None] = {}
    for example_id, chains in chains_by_example.items():
        if k is not None:
            if len(chains) < k:
                raise UserError(
                    f"aggregation scheme {scheme!r} needs {k} chains per example, "
                    f"but example {example_id!r} has {len(chains)}"
                )
            chains = chains[:k]
        out[example_id] = fn(chains, same=same, key=key)
    return out
