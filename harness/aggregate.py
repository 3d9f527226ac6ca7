"""Answer aggregation over the chains of one example: the schemes and their registry.

A scheme spec is ``name``, ``name:arg`` or either followed by ``@k`` (use only the first k chains
of each example). The schemes, each one `SchemeDef` in the registry ``AGGREGATORS``:

* ``greedy``      the answer of the single greedy (T=0) chain.
* ``majority``    self-consistency (Wang et al. 2022, arXiv 2203.11171): one vote per chain.
* ``weighted``    each chain votes with ``exp(logprob / n_tokens)``: its length-normalised
                  probability under the student at T=1 (the geometric mean of its token
                  probabilities), and an answer's score is the SUM of its chains' weights:
                  Wang et al. 2022's "weighted sum (normalized)" (Table 1; their "weighted
                  avg" divides that sum by the answer's vote count, and is not offered).
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
    """Each answer scores the sum of its chains' exp(logprob / n_tokens) (Wang et al.'s "weighted
    sum (normalized)")."""
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


# ----------------------------------------------------------------------- the registry

ArgParser = Callable[[str, str], int]  # (argument text, whole spec) -> argument; UserError when bad


@dataclass(frozen=True)
class SchemeDef:
    """One aggregation scheme: all the harness needs to parse, decide, curve and check it.

    Adding a scheme is one SchemeDef in `AGGREGATORS` (and its test): parsing, scoring, the
    k-curves (harness.curves: vectorised through `weights` when given, else the scheme's own
    `decide` on every subsample, slower but exact), MLflow metrics and the CLI all read it here.
    """

    name: str
    decide: Aggregator
    doc: str
    sampled: bool = True  # votes over sampled chains; False: the one greedy (T=0) chain
    parse_arg: ArgParser | None = None  # None: takes no ':' argument
    arg_help: str = ""  # what the argument is, for messages ("flag", "window")
    weights: WeightFn | None = None  # per-chain vote weights; the winner is the largest total
    unit_weights: Callable[[int | None], bool] = lambda arg: False  # weights are all 1 (= majority)
    reports_used: bool = False  # may decide before using every chain (chains used is its saving)
    reads_scores: Callable[[int | None], bool] = lambda arg: False  # needs chain.meta ranker scores
    # decode.early_stop: the window size in which decoding samples for it (stopping an example at
    # its first unanimous window); None: the scheme needs every chain drawn
    early_stop_window: Callable[[int | None], int] | None = None

    def __call__(self, chains: Sequence[Chain], groups: Groups, arg: int | None = None) -> Decision:
        return self.decide(chains, groups, arg)


def _int_arg(text: str, spec: str, what: str, least: int = 1) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < least:
        raise UserError(f"bad aggregation scheme {spec!r}: {what} must be an integer >= {least}")
    return int(text)


def _asc_flag(text: str, spec: str) -> int:
    flag = _int_arg(text, spec, "flag", least=0)
    if flag not in ASC_FLAGS:
        raise UserError(f"bad aggregation scheme {spec!r}: asc flags are 0 (1), 1 (1+2s), 2 (1+s), 3 (s)")
    return flag


AGGREGATORS: dict[str, SchemeDef] = {
    "greedy": SchemeDef("greedy", greedy, "the answer of the one greedy (T=0) chain", sampled=False),
    "majority": SchemeDef(
        "majority", majority, "self-consistency: one vote per chain", weights=majority_weights, unit_weights=lambda arg: True
    ),
    "weighted": SchemeDef(
        "weighted", weighted, "votes of exp(logprob / n_tokens), summed per answer", weights=logprob_weights
    ),
    "asc": SchemeDef(
        "asc",
        asc,
        "ranker-weighted vote; flag 0: 1, 1: 1+2s, 2: 1+s, 3: s (default)",
        parse_arg=_asc_flag,
        arg_help="flag",
        weights=asc_weights,
        unit_weights=lambda arg: arg == 0,
        reads_scores=lambda arg: arg != 0,
    ),
    "esc": SchemeDef(
        "esc",
        esc,
        f"early-stopping self-consistency in windows of w chains (default {ESC_DEFAULT_WINDOW})",
        parse_arg=lambda text, spec: _int_arg(text, spec, "window"),
        arg_help="window",
        reports_used=True,
        early_stop_window=lambda arg: arg or ESC_DEFAULT_WINDOW,
    ),
}


def scheme_def(name: str) -> SchemeDef:
    """The registered scheme `name`; UserError with "did you mean" otherwise."""
    return lookup(AGGREGATORS, name, "aggregation scheme")


# ----------------------------------------------------------------------- scheme specs


@dataclass(frozen=True)
class Scheme:
    """A parsed scheme spec: name, its argument (asc flag, esc window) and k (None: all chains)."""

    spec: str
    name: str
    arg: int | None = None
    k: int | None = None

    @property
    def definition(self) -> SchemeDef:
        return AGGREGATORS[self.name]

    @property
    def sampled(self) -> bool:
        return self.definition.sampled

    @property
    def early_stop_window(self) -> int | None:
        """The window decoding-time early stopping samples in for this scheme (None: cannot)."""
        w = self.definition.early_stop_window
        return None if w is None or self.k is not None else w(self.arg)

    @property
    def metric(self) -> str:
        return metric_name(self.spec)


def metric_name(spec: str) -> str:
    """A scheme's MLflow metric name (no ':' or '@' there): 'asc:1@8' -> 'asc_1_k8'."""
    return spec.strip().replace(":", "_").replace("@", "_k")


def parse_scheme(spec: str) -> Scheme:
    """Parse "name[:arg][@k]"; UserError on an unknown name or a bad argument."""
    text = spec.strip()
    head, at, k_text = text.partition("@")
    name, colon, arg_text = head.partition(":")
    d = scheme_def(name)
    arg = None
    if colon:
        if d.parse_arg is None:
            takes = ", ".join(f"{n}:{x.arg_help.upper()}" for n, x in AGGREGATORS.items() if x.parse_arg is not None)
            raise UserError(f"bad aggregation scheme {spec!r}: {name!r} takes no ':' argument (only {takes} do)")
        arg = d.parse_arg(arg_text, spec)
    k = _int_arg(k_text, spec, "k after '@'") if at else None
    if not d.sampled:
        if k not in (None, 1):
            raise UserError(f"scheme {spec!r}: {name} decoding gives one chain per example; write {name!r}")
        k = None  # greedy@1 is greedy: one chain, whatever decode.k says
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


def decide(
    scheme: Scheme, chains: Sequence[Chain], key: Key | None = None, same: Same | None = None, example_id: str = "?"
) -> Decision:
    """One example's decision under `scheme`, over its first k chains."""
    chains = first_k(scheme, chains, chains[0].example_id if chains else example_id)
    groups = group([c.answer for c in chains], key, same)
    return scheme.definition.decide(chains, groups, scheme.arg)


def aggregate(
    scheme: str | Scheme,
    chains_by_example: Mapping[str, Sequence[Chain]],
    key: Key | None = None,
    same: Same | None = None,
) -> dict[str, str | None]:
    """Each example's aggregated answer under `scheme` ("name[:arg][@k]")."""
    s = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    return {example_id: decide(s, chains, key, same, example_id).answer for example_id, chains in chains_by_example.items()}
