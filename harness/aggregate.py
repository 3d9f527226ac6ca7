"""Answer aggregation over the chains of one example: the schemes and their registry.

A scheme spec is ``name``, ``name:arg`` or either followed by ``@k`` (use only the first k chains
of each example). The schemes (``AGGREGATORS``):

* ``greedy``      the answer of the single greedy (T=0) chain.
* ``majority``    self-consistency (Wang et al. 2022, arXiv 2203.11171): one vote per chain.
* ``weighted``    each chain votes with ``exp(logprob / n_tokens)``: its length-normalised
                  probability under the student at T=1 (the geometric mean of its token
                  probabilities; Wang et al. 2022, Table 1 "weighted avg (normalized)").
* ``asc[:flag]``  ranker-weighted vote (Li et al. 2024, "Turning Dust into Gold", ASC): each chain
                  carries a ranker score ``s`` in [0, 1] (``chain.meta["ranker_score"]``, written by
                  the ASC method); vote weight by flag 0: ``1`` (= majority), 1: ``1 + 2s``,
                  2: ``1 + s``, 3: ``s``. Plain ``asc`` is flag 3, the score itself.
* ``esc[:w]``     early-stopping self-consistency (Li et al. 2024, arXiv 2401.10480): chains are
                  taken in windows of ``w`` (default 5); at the first window whose answers are all
                  parsed and equivalent, stop with that answer; if none is, majority over all.
                  Reports the chains it used, so its saving is measured.

Grouping and tie-break, shared by every voting scheme (`group` + `vote`):

* answers are grouped by the task's equivalence, not by raw strings: first by ``key(answer)``
  (the task's cheap canonical form), then key groups whose representatives (their first-seen
  surface forms) satisfy ``same(a, b)`` are merged. ``same`` is only called pairwise over
  representatives, and merging is transitive (union-find) even if ``same`` is not;
* ``None`` answers never vote, so an unparsable answer never wins; no votes at all -> None;
* the group with the largest total weight wins; among groups with equal total weight the one
  whose first vote comes earliest in chain order wins;
* the returned answer is the winning group's first-seen surface form (as the chain wrote it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.errors import UserError
from harness.registry import lookup
from harness.types import Chain

Key = Callable[[str], str]
Same = Callable[[str, str], bool]
RANKER_SCORE = "ranker_score"  # Chain.meta field read by `asc`


@dataclass(frozen=True)
class Groups:
    """The chains of one example as equivalence groups.

    ids[i]: the group of chain i (-1: unparsable); reps[g]: group g's first-seen surface form.
    Groups are numbered in order of their first chain.
    """

    ids: tuple[int, ...]
    reps: tuple[str, ...]

    def answer(self, g: int) -> str | None:
        return self.reps[g] if g >= 0 else None


@dataclass(frozen=True)
class Decision:
    answer: str | None
    used: int  # chains consumed to decide (esc stops early; the others use all they are given)


def group(answers: Sequence[str | None], key: Key | None = None, same: Same | None = None) -> Groups:
    """Group answers by equivalence (see the module doc)."""
    by_key: dict[str, int] = {}
    reps: list[str] = []
    key_ids: list[int] = []
    for answer in answers:
        if answer is None:
            key_ids.append(-1)
            continue
        k = key(answer) if key is not None else answer
        g = by_key.get(k)
        if g is None:
            g = by_key[k] = len(reps)
            reps.append(answer)
        key_ids.append(g)

    # Union-find over key groups; the root is always the earliest group, so a merged group keeps
    # the first-seen surface form.
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
    roots = sorted({find(g) for g in range(len(reps))})
    dense = {r: i for i, r in enumerate(roots)}
    ids = tuple(dense[find(g)] if g >= 0 else -1 for g in key_ids)
    return Groups(ids, tuple(reps[r] for r in roots))


def vote(ids: Sequence[int], weights: Sequence[float]) -> int:
    """The winning group id (largest total weight, earliest first vote on ties), -1 if none."""
    if len(ids) != len(weights):
        raise ValueError(f"{len(ids)} answers but {len(weights)} weights")
    total: dict[int, float] = {}  # insertion order = order of first vote
    for g, w in zip(ids, weights):
        if g >= 0:
            total[g] = total.get(g, 0.0) + w
    if not total:
        return -1
    return max(total, key=total.__getitem__)  # max keeps the first of equal totals


# ----------------------------------------------------------------------- vote weights
# A voting scheme is its weight per chain; `harness.curves` uses the same functions to compute
# scheme@k curves without calling the aggregators once per subsample.

WeightFn = Callable[[Sequence[Chain], "int | None"], list[float]]


def majority_weights(chains: Sequence[Chain], arg: int | None = None) -> list[float]:
    return [1.0] * len(chains)


def normalised_probability(chain: Chain) -> float:
    """exp(logprob / n_tokens): the chain's geometric-mean token probability (T=1)."""
    if chain.logprob is None or not math.isfinite(chain.logprob):
        raise UserError(
            f"scheme 'weighted' needs each chain's log-probability; a chain of example {chain.example_id!r} has none "
            "(decode with the hf or vllm backend, which record it)"
        )
    return math.exp(chain.logprob / max(1, chain.n_tokens))


def logprob_weights(chains: Sequence[Chain], arg: int | None = None) -> list[float]:
    return [normalised_probability(c) for c in chains]


ASC_FLAGS: dict[int, Callable[[float], float]] = {
    0: lambda s: 1.0,
    1: lambda s: 1.0 + 2.0 * s,
    2: lambda s: 1.0 + s,
    3: lambda s: s,
}
ASC_DEFAULT_FLAG = 3


def ranker_score(chain: Chain) -> float:
    s = chain.meta.get(RANKER_SCORE)
    if not isinstance(s, (int, float)) or not 0.0 <= s <= 1.0:
        raise UserError(
            f"scheme 'asc' needs a ranker score in [0, 1] on every chain (meta[{RANKER_SCORE!r}]); a chain of example "
            f"{chain.example_id!r} has {s!r}: train the asc ranker or pass --scores to 'distillbench aggregate'"
        )
    return float(s)


def asc_weights(chains: Sequence[Chain], arg: int | None = None) -> list[float]:
    flag = ASC_DEFAULT_FLAG if arg is None else arg
    if flag == 0:  # no scores needed: plain majority
        return majority_weights(chains)
    f = ASC_FLAGS[flag]
    return [f(ranker_score(c)) for c in chains]


VOTE_WEIGHTS: dict[str, WeightFn] = {
    "majority": majority_weights,
    "weighted": logprob_weights,
    "asc": asc_weights,
}


# ----------------------------------------------------------------------- aggregators


class Aggregator(Protocol):
    """Decides one answer from the chains of one example, already grouped."""

    def __call__(self, chains: Sequence[Chain], groups: Groups, arg: int | None) -> Decision: ...


def greedy(chains: Sequence[Chain], groups: Groups, arg: int | None = None) -> Decision:
    """The answer of the first chain (the caller passes the single greedy chain)."""
    return Decision(chains[0].answer if chains else None, min(1, len(chains)))


def majority(chains: Sequence[Chain], groups: Groups, arg: int | None = None) -> Decision:
    """Self-consistency: the most frequent answer group, one vote per chain."""
    return Decision(groups.answer(vote(groups.ids, majority_weights(chains))), len(chains))


def weighted(chains: Sequence[Chain], groups: Groups, arg: int | None = None) -> Decision:
    """Vote weighted by each chain's length-normalised probability exp(logprob / n_tokens)."""
    return Decision(groups.answer(vote(groups.ids, logprob_weights(chains))), len(chains))


def asc(chains: Sequence[Chain], groups: Groups, arg: int | None = None) -> Decision:
    """Ranker-weighted vote with TDG's flags (0: 1, 1: 1+2s, 2: 1+s, 3: s)."""
    return Decision(groups.answer(vote(groups.ids, asc_weights(chains, arg))), len(chains))


ESC_DEFAULT_WINDOW = 5


def esc_stop(ids: Sequence[int], window: int) -> int | None:
    """The end (exclusive) of the first window whose answers are all parsed and in one group."""
    for start in range(0, len(ids) - window + 1, window):
        w = ids[start : start + window]
        if w[0] >= 0 and all(g == w[0] for g in w):
            return start + window
    return None


def esc(chains: Sequence[Chain], groups: Groups, arg: int | None = None) -> Decision:
    """Early-stopping self-consistency: stop at the first unanimous window of `arg` chains."""
    window = ESC_DEFAULT_WINDOW if arg is None else arg
    stop = esc_stop(groups.ids, window)
    if stop is not None:
        return Decision(groups.answer(groups.ids[stop - 1]), stop)
    return majority(chains, groups)


AGGREGATORS: dict[str, Aggregator] = {
    "greedy": greedy,
    "majority": majority,
    "weighted": weighted,
    "asc": asc,
    "esc": esc,
}


# ----------------------------------------------------------------------- scheme specs


@dataclass(frozen=True)
class Scheme:
    """A parsed scheme spec: name, its argument (asc flag, esc window) and k (None: all chains)."""

    spec: str
    name: str
    arg: int | None = None
    k: int | None = None

    @property
    def sampled(self) -> bool:
        return self.name != "greedy"

    @property
    def metric(self) -> str:
        return metric_name(self.spec)


def metric_name(spec: str) -> str:
    """A scheme's MLflow metric name (no ':' or '@' there): 'asc:1@8' -> 'asc_1_k8'."""
    return spec.strip().replace(":", "_").replace("@", "_k")


def _int_arg(text: str, spec: str, what: str, least: int = 1) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < least:
        raise UserError(f"bad aggregation scheme {spec!r}: {what} must be an integer >= {least}")
    return int(text)


def parse_scheme(spec: str) -> Scheme:
    """Parse "name[:arg][@k]"; UserError on an unknown name or a bad argument."""
    text = spec.strip()
    head, at, k_text = text.partition("@")
    name, colon, arg_text = head.partition(":")
    lookup(AGGREGATORS, name, "aggregation scheme")
    arg = None
    if colon:
        if name == "asc":
            arg = _int_arg(arg_text, spec, "flag", least=0)
            if arg not in ASC_FLAGS:
                raise UserError(f"bad aggregation scheme {spec!r}: asc flags are 0 (1), 1 (1+2s), 2 (1+s), 3 (s)")
        elif name == "esc":
            arg = _int_arg(arg_text, spec, "window")
        else:
            raise UserError(f"bad aggregation scheme {spec!r}: {name!r} takes no ':' argument (only asc:FLAG and esc:WINDOW do)")
    k = _int_arg(k_text, spec, "k after '@'") if at else None
    if name == "greedy" and k not in (None, 1):
        raise UserError(f"scheme {spec!r}: greedy decoding gives one chain per example; write 'greedy'")
    return Scheme(text, name, arg, k)


def first_k(scheme: Scheme, chains: Sequence[Chain], example_id: str) -> Sequence[Chain]:
    """The chains `scheme` votes over: the first k when it has k (too few is a UserError rather
    than a silently smaller vote), else all."""
    if scheme.k is None:
        return chains
    if len(chains) < scheme.k:
        raise UserError(
            f"aggregation scheme {scheme.spec!r} needs {scheme.k} chains per example, but example {example_id!r} has {len(chains)}"
        )
    return chains[: scheme.k]


def decide(scheme: Scheme, chains: Sequence[Chain], key: Key | None = None, same: Same | None = None) -> Decision:
    """One example's decision under `scheme`."""
    chains = first_k(scheme, chains, chains[0].example_id if chains else "?")
    groups = group([c.answer for c in chains], key, same)
    return AGGREGATORS[scheme.name](chains, groups, scheme.arg)


def aggregate(
    scheme: str | Scheme,
    chains_by_example: Mapping[str, Sequence[Chain]],
    key: Key | None = None,
    same: Same | None = None,
) -> dict[str, str | None]:
    """Each example's aggregated answer under `scheme` ("name[:arg][@k]")."""
    s = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    return {example_id: decide(s, first_k(s, chains, example_id), key, same).answer for example_id, chains in chains_by_example.items()}
