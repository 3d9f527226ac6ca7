"""Accuracy as a function of the number of samples: pass@k and scheme@k curves for k = 1..K.

pass@k uses the unbiased estimator of Chen et al. 2021 (arXiv 2107.03374):
``1 - C(n - c, k) / C(n, k)`` for n chains of which c are correct.

scheme@k (maj@k, weighted@k, asc@k, esc@k) is estimated by repeated subsampling: for each example
S random orders of its K chains are drawn, and scheme@k on an order is the scheme applied to its
first k chains, so one order gives every k at once. All of it runs on integer group ids and per-chain
weights (numpy), so answer checking happens once per example, not once per subsample:

* the chains of an example are grouped once, over all K chains (`aggregate.group`), and each group
  is checked against the gold answer once;
* a voting scheme is its per-chain weight (`SchemeDef.weights`); the winner of a prefix is the
  group with the largest total weight, ties going to the group whose first vote comes earliest in
  that order, unparsable chains never voting: exactly `aggregate.vote`;
* esc@k stops at the first unanimous window of w chains inside the first k, else majority@k
  (`VECTOR_CURVES`);
* any other scheme is run as itself (`SchemeDef.decide`) on every prefix of every order: exact,
  and slower (S x K decisions per example), so a new scheme has a curve from its first line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.aggregate import ESC_DEFAULT_WINDOW, Groups, Key, Same, Scheme, group
from harness.errors import UserError
from harness.types import Chain


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # numerically stable product form: prod_{i=n-c+1}^{n} (1 - k / i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass
class Grouped:
    """One example's K chains as group ids, with each group's correctness."""

    ids: np.ndarray  # [K] int, -1 = unparsable
    correct: np.ndarray  # [G] bool
    chains: Sequence[Chain]
    reps: tuple[str, ...] = ()  # [G] each group's first-seen surface form


def prepare(
    chains: Sequence[Chain], gold: str, key: Key | None = None, same: Same | None = None, groups: Groups | None = None
) -> Grouped:
    """Group an example's chains by equivalence (unless `groups` already did) and check each
    group against the gold answer."""
    g = groups if groups is not None else group([c.answer for c in chains], key, same)
    check = same if same is not None else (lambda a, b: a == b)
    correct = np.asarray([bool(check(r, gold)) for r in g.reps], dtype=bool)
    return Grouped(np.asarray(g.ids, dtype=np.int64), correct, chains, tuple(g.reps))


@dataclass
class Curve:
    """acc[k-1]: mean accuracy of scheme@k; used[k-1]: mean chains used (esc stops early)."""

    acc: list[float]
    used: list[float]


@dataclass
class Curves:
    k: int
    subsamples: int
    pass_at: list[float]  # pass@k, k = 1..K
    schemes: dict[str, Curve] = field(default_factory=dict)
    seconds_voting: float = 0.0  # the votes over every prefix of every order


def random_orders(rng: np.random.Generator, subsamples: int, k: int) -> np.ndarray:
    """[subsamples, k] independent uniform random permutations of range(k)."""
    return np.argsort(rng.random((subsamples, k)), axis=1)


def _prefix_winners(ids: np.ndarray, w: np.ndarray, n_groups: int) -> np.ndarray:
    """ids, w: [S, K] group ids and weights in subsample order -> [S, K] winning group of each
    prefix (k = t + 1), -1 where no chain in the prefix parsed.

    One pass per group over [S, K] arrays (small enough to stay in cache), keeping the running
    best (total, first position): faster than one [S, K, G] tensor for the few groups a
    question's answers fall into.
    """
    S, K = ids.shape
    pos = np.arange(K)[None, :]
    best_tot = np.full((S, K), -np.inf)
    best_first = np.full((S, K), K + 1)
    win = np.full((S, K), -1, dtype=np.int64)
    for g in range(n_groups):
        mine = ids == g
        tot = np.cumsum(np.where(mine, w, 0.0), axis=1)
        first = np.where(mine.any(1), mine.argmax(1), K)[:, None]  # [S, 1]: its first vote
        better = (pos >= first) & ((tot > best_tot) | ((tot == best_tot) & (first < best_first)))
        best_tot = np.where(better, tot, best_tot)
        best_first = np.where(better, first, best_first)
        win[better] = g
    return win


def _esc_stops(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """[S] end of the first unanimous window (K + 1 when none) and that window's group."""
    S, K = ids.shape
    n_win = K // window
    stop = np.full(S, K + 1, dtype=np.int64)
    answer = np.full(S, -1, dtype=np.int64)
    for j in range(n_win - 1, -1, -1):  # backwards, so the earliest unanimous window is kept
        win = ids[:, j * window : (j + 1) * window]
        unanimous = (win[:, 0] >= 0) & (win == win[:, :1]).all(1)
        stop = np.where(unanimous, (j + 1) * window, stop)
        answer = np.where(unanimous, win[:, 0], answer)
    return stop, answer


def _esc_curve(perm_ids: np.ndarray, arg: int | None, majority_win: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """esc@k on every prefix: the first unanimous window inside the first k, else majority@k.
    -> ([S, K] winning group, [S, K] chains used)."""
    stop, answer = _esc_stops(perm_ids, arg or ESC_DEFAULT_WINDOW)
    stopped = stop[:, None] <= ks[None, :]  # [S, K]
    return np.where(stopped, answer[:, None], majority_win), np.where(stopped, stop[:, None], ks[None, :])


# Vectorised k-curves of schemes that are not a weighted vote (those get one from their weights).
VECTOR_CURVES = {"esc": _esc_curve}


def _decided_curve(g: Grouped, s: Scheme, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any scheme on every prefix of every order, by its own decide: ([S, K] correct, [S, K] used)."""
    S, K = order.shape
    by_answer = {c.answer: int(i) for c, i in zip(g.chains, g.ids, strict=False) if c.answer is not None and i >= 0}
    by_answer.update({r: i for i, r in enumerate(g.reps)})
    correct = np.zeros((S, K), dtype=bool)
    used = np.zeros((S, K))
    for row in range(S):
        for k in range(1, K + 1):
            pick = order[row, :k]
            chains = [g.chains[j] for j in pick]
            d = s.definition.decide(chains, Groups(tuple(int(i) for i in g.ids[pick]), g.reps), s.arg)
            gid = by_answer.get(d.answer, -1) if d.answer is not None else -1
            correct[row, k - 1] = gid >= 0 and bool(g.correct[gid])
            used[row, k - 1] = d.used
    return correct, used


def _lookup(correct: np.ndarray, win: np.ndarray) -> np.ndarray:
    return np.where(win >= 0, correct[np.clip(win, 0, None)] if correct.size else False, False)


def scheme_curves(
    grouped: Sequence[Grouped],
    schemes: Sequence[Scheme],
    subsamples: int = 200,
    seed: int = 0,
    k_max: int | None = None,
) -> Curves:
    """pass@k and scheme@k for k = 1..K over examples that all have K chains."""
    if not grouped:
        raise UserError("no examples to compute curves over")
    sizes = {len(g.ids) for g in grouped}
    if len(sizes) != 1:
        raise UserError(f"curves need the same number of chains for every example, found {sorted(sizes)}")
    K = sizes.pop() if k_max is None else min(k_max, sizes.pop())
    if K < 1:
        raise UserError("curves need at least one sampled chain per example")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    weighted = [s for s in schemes if s.definition.weights is not None]
    weights: dict[str, list[np.ndarray]] = {s.spec: [] for s in weighted}
    for g in grouped:
        for s in weighted:
            weights[s.spec].append(np.asarray(s.definition.weights(list(g.chains[:K]), s.arg), dtype=np.float64))
    pass_at = np.zeros(K)
    acc = {s.spec: np.zeros(K) for s in schemes}
    used = {s.spec: np.zeros(K) for s in schemes}
    ks = np.arange(1, K + 1)
    pass_table = [np.array([pass_at_k(K, c, k) for k in ks]) for c in range(K + 1)]  # by c
    for i, g in enumerate(grouped):
        ids = g.ids[:K]
        pass_at += pass_table[int(_lookup(g.correct, ids).sum())]
        order = random_orders(rng, subsamples, K)
        perm_ids = ids[order]
        n_groups = len(g.correct)
        shortcut = None
        if n_groups == 1:  # one answer: it wins every prefix holding a vote for it, whatever the weights
            shortcut = np.where(np.arange(K)[None, :] >= (perm_ids >= 0).argmax(1)[:, None], 0, -1)
            shortcut[~(perm_ids >= 0).any(1)] = -1
        elif not g.correct.any():  # no right answer: every prefix is wrong, whoever wins
            shortcut = np.full(perm_ids.shape, -1)
        majority_win = shortcut
        for s in schemes:
            d = s.definition
            unit = d.weights is not None and d.unit_weights(s.arg)  # majority: its winners are shared
            if d.weights is not None:
                if shortcut is not None or (unit and majority_win is not None):
                    win = shortcut if shortcut is not None else majority_win
                else:
                    win = _prefix_winners(perm_ids, weights[s.spec][i][order], n_groups)
                if unit:
                    majority_win = win
                acc[s.spec] += _lookup(g.correct, win).mean(0)
                used[s.spec] += ks
            elif s.name in VECTOR_CURVES:
                if majority_win is None:
                    majority_win = _prefix_winners(perm_ids, np.ones_like(perm_ids, dtype=np.float64), n_groups)
                win, chains_used = VECTOR_CURVES[s.name](perm_ids, s.arg, majority_win, ks)
                acc[s.spec] += _lookup(g.correct, win).mean(0)
                used[s.spec] += chains_used.mean(0)
            elif d.sampled:
                ok, chains_used = _decided_curve(Grouped(ids, g.correct, list(g.chains[:K]), g.reps), s, order)
                acc[s.spec] += ok.mean(0)
                used[s.spec] += chains_used.mean(0)
            else:
                raise UserError(f"scheme {s.spec!r} decides from the greedy chain alone: it has no k-curve")
    n = len(grouped)
    out = Curves(K, subsamples, (pass_at / n).tolist())
    for s in schemes:
        out.schemes[s.spec] = Curve((acc[s.spec] / n).tolist(), (used[s.spec] / n).tolist())
    out.seconds_voting = time.perf_counter() - t0
    return out


def breakdown(
    examples: Sequence[object], correct: Mapping[str, bool], fields: Sequence[str] = ("subject", "level")
) -> dict[str, dict[str, tuple[float, int]]]:
    """Accuracy per value of each meta field (MATH: subject and level): field -> value -> (acc, n).

    Examples without the field are left out of that field's table.
    """
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for f in fields:
        buckets: dict[str, list[bool]] = {}
        for ex in examples:
            v = ex.meta.get(f)  # type: ignore[attr-defined]
            if v is not None:
                buckets.setdefault(str(v), []).append(correct[ex.id])  # type: ignore[attr-defined]
        if buckets:
            out[f] = {v: (sum(b) / len(b), len(b)) for v, b in sorted(buckets.items())}
    return out

