"""Scoring saved chains: every aggregation scheme, its k-curve and the per-subject breakdown.

Used by a run after decoding and by `distillbench aggregate`, which re-scores a predictions folder
without decoding again. A predictions folder (a run's `predictions` artifact) holds:

    chains.jsonl    every chain; greedy chains have meta.temperature == 0, sampled ones > 0
    examples.jsonl  the scored test examples (id, gold answer, meta such as MATH subject/level)
    task.json       the task's name, options and versions, to rebuild its answer equivalence
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.aggregate import Groups, Scheme, first_k, group, metric_name, parse_scheme
from harness.curves import Curves, breakdown, prepare, scheme_curves
from harness.errors import UserError
from harness.scoring import Score, score
from harness.store import atomic_write_text, read_jsonl, write_jsonl
from harness.types import Chain, Example


@dataclass
class Evaluation:
    scores: dict[str, Score]  # scheme spec -> accuracy with its bootstrap interval
    used: dict[str, float]  # scheme spec -> mean chains used per example
    correct: dict[str, dict[str, bool]]  # scheme spec -> example id -> correct
    curves: Curves | None = None
    breakdowns: dict[str, dict[str, dict[str, tuple[float, int]]]] = field(default_factory=dict)
    seconds_checking: float = 0.0  # in the task's canonical/equivalent (answer checking)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": {s: dataclasses.asdict(v) for s, v in self.scores.items()},
            "used": self.used,
            "curves": dataclasses.asdict(self.curves) if self.curves else None,
            "breakdowns": self.breakdowns,
        }


def split_chains(chains: Sequence[Chain]) -> tuple[dict[str, list[Chain]], dict[str, list[Chain]]]:
    """(greedy, sampled) chains per example id, each in decoding order."""
    greedy: dict[str, list[Chain]] = defaultdict(list)
    sampled: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        (greedy if c.meta.get("temperature") == 0 else sampled)[c.example_id].append(c)
    return greedy, sampled


def evaluate(
    task: Any,
    examples: Sequence[Example],
    chains: Sequence[Chain],
    schemes: Sequence[Scheme],
    bootstrap: int = 2000,
    seed: int = 0,
    curves: bool = True,
    subsamples: int = 200,
) -> Evaluation:
    """Score every scheme over the same examples; curves over the sampled chains when asked."""
    greedy, sampled = split_chains(chains)
    ev = Evaluation({}, {}, {})
    groups: dict[tuple[bool, str, int], Groups] = {}
    spent = [0.0]
    canonical, equivalent = _timed(task.canonical, spent), _timed(task.equivalent, spent)
    for s in schemes:
        pool = sampled if s.sampled else greedy
        missing = [ex.id for ex in examples if not pool.get(ex.id)]
        if missing:
            kind = "sampled" if s.sampled else "greedy"
            raise UserError(f"scheme {s.spec!r}: {len(missing)} example(s) have no {kind} chains (first: {missing[0]!r})")
        ok: dict[str, bool] = {}
        used = 0
        for ex in examples:
            chains_k = first_k(s, pool[ex.id], ex.id)
            # schemes over the same chains share one grouping (the costly part: answer checking)
            gkey = (s.sampled, ex.id, len(chains_k))
            if gkey not in groups:
                groups[gkey] = group([c.answer for c in chains_k], canonical, equivalent)
            d = s.definition.decide(chains_k, groups[gkey], s.arg)
            ok[ex.id] = bool(equivalent(d.answer, ex.answer))
            used += d.used
        ev.correct[s.spec] = ok
        ev.scores[s.spec] = score([ok[ex.id] for ex in examples], n_resamples=bootstrap, seed=seed)
        ev.used[s.spec] = used / max(1, len(examples))
        ev.breakdowns[s.spec] = breakdown(examples, ok)
    curve_schemes = _curve_schemes(schemes)
    # k-curves subsample K chains per example: not for early-stopped decoding, whose counts differ
    counts = {len(sampled.get(ex.id, ())) for ex in examples}
    if curves and curve_schemes and len(counts) == 1 and 0 not in counts:
        grouped = [
            prepare(sampled[ex.id], ex.answer, canonical, equivalent, groups.get((True, ex.id, len(sampled[ex.id]))))
            for ex in examples
        ]
        ev.curves = scheme_curves(grouped, curve_schemes, subsamples=subsamples, seed=seed)
    ev.seconds_checking = spent[0]
    return ev


def _timed(f: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """`f`, adding the seconds it runs to spent[0] (how much of a scoring pass is answer checking)."""

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return f(*args)
        finally:
            spent[0] += time.perf_counter() - start

    return timed


def _curve_schemes(schemes: Sequence[Scheme]) -> list[Scheme]:
    """One curve per sampled scheme name and argument (its k is the curve's x axis)."""
    seen: dict[tuple[str, int | None], Scheme] = {}
    for s in schemes:
        if s.sampled and (s.name, s.arg) not in seen:
            spec = s.name if s.arg is None else f"{s.name}:{s.arg}"
            seen[(s.name, s.arg)] = Scheme(spec, s.name, s.arg)
    return list(seen.values())


# ----------------------------------------------------------------------- MLflow


def _safe(text: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space."""
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in text)


def scheme_metrics(prefix: str, ev: Evaluation) -> dict[str, float]:
    out: dict[str, float] = {}
    for spec, s in ev.scores.items():
        m = metric_name(spec)
        out.update({f"{prefix}/acc/{m}": s.acc, f"{prefix}/lo/{m}": s.lo, f"{prefix}/hi/{m}": s.hi})
        out[f"{prefix}/used/{m}"] = ev.used[spec]
        for fld, table in ev.breakdowns.get(spec, {}).items():
            for value, (acc, _) in table.items():
                out[_safe(f"{prefix}/by_{fld}/{value}/{m}")] = acc
    return out


def log_evaluation(log: Any, prefix: str, ev: Evaluation, out_dir: Path) -> None:
    """Metrics per scheme, curves as metrics over steps k = 1..K, the whole evaluation as JSON,
    and on test each scheme's per-example correctness as a tag (see correct_tags)."""
    log.metrics(scheme_metrics(prefix, ev))
    if prefix == "test":
        log.tags(correct_tags(prefix, ev))
    if ev.curves is not None:
        for k in range(1, ev.curves.k + 1):
            row = {f"{prefix}/curve/pass": ev.curves.pass_at[k - 1]}
            for spec, c in ev.curves.schemes.items():
                m = metric_name(spec)
                row[f"{prefix}/curve/{m}"] = c.acc[k - 1]
                if parse_scheme(spec).definition.reports_used:
                    row[f"{prefix}/curve_used/{m}"] = c.used[k - 1]
            log.metrics(row, k)
    path = out_dir / f"{prefix.replace('/', '-')}.json"
    atomic_write_text(path, json.dumps(_json_safe(ev.to_dict()), indent=1, allow_nan=False))
    log.artifact(path, "evaluation")


MAX_TAG = 8000  # MLflow's limit on a tag value


def correct_tags(prefix: str, ev: Evaluation) -> dict[str, str]:
    """Per-example correctness in the run's tags, so that the leaderboard's paired tests (ties)
    need one MLflow search and no artifact download: `<prefix>/ids`, a hash of the sorted example
    ids (the test set's identity), and `<prefix>/correct/<scheme>`, "n:hex", a bitset over those
    sorted ids (bit i = example i right). Test sets too large for a tag (over 32,000) get none."""
    out: dict[str, str] = {}
    for spec, ok in ev.correct.items():
        ids = sorted(ok)
        value = encode_bits([ok[i] for i in ids])
        if len(value) > MAX_TAG:
            continue
        out[f"{prefix}/ids"] = ids_hash(ids)
        out[f"{prefix}/correct/{metric_name(spec)}"] = value
    return out


def ids_hash(ids: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def encode_bits(bits: Sequence[bool]) -> str:
    """[True, False, True, ...] -> "n:hex" (bit i of the number = bits[i])."""
    value = int("".join("1" if b else "0" for b in reversed(bits)) or "0", 2)  # linear, unlike a sum of shifts
    return f"{len(bits)}:{value:x}"


def decode_bits(text: str) -> list[bool]:
    """The inverse of encode_bits; a malformed value is a ValueError."""
    n, _, digits = text.partition(":")
    count, value = int(n), int(digits or "0", 16)
    if value >> count:
        raise ValueError(f"bitset {text[:20]!r}... has bits beyond its length {count}")
    return [c == "1" for c in reversed(format(value, f"0{count}b"))] if count else []


def _json_safe(x: Any) -> Any:
    """NaN (the accuracy of nothing) as null: strict JSON readers refuse NaN."""
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# ----------------------------------------------------------------------- predictions folders


def write_predictions(out: Path, task_info: dict[str, Any], examples: Sequence[Example], chains: Sequence[Chain]) -> None:
    """Write a predictions folder (see module doc); `out` is a temp dir renamed by the caller."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "chains.jsonl", (c.to_dict() for c in chains))
    write_jsonl(out / "examples.jsonl", ({"id": e.id, "question": e.question, "answer": e.answer, "meta": e.meta} for e in examples))
    atomic_write_text(out / "task.json", json.dumps(task_info, indent=1, default=str))


@dataclass
class Predictions:
    task_info: dict[str, Any]
    examples: list[Example]
    chains: list[Chain]

    def task(self) -> Any:
        from tasks import get_task

        return get_task(self.task_info["name"], **self.task_info.get("options", {}))


def read_predictions(folder: Path) -> Predictions:
    """Read a predictions folder; a missing or malformed file is a one-line UserError."""
    folder = Path(folder)
    names = ("chains.jsonl", "examples.jsonl", "task.json")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise UserError(f"{folder} is not a predictions folder: missing {', '.join(missing)}")
    try:
        info = json.loads((folder / "task.json").read_text(encoding="utf-8"))
        # the question is saved since the leaderboard's drill-down; older folders have none
        examples = [Example(id=r["id"], question=r.get("question", ""), answer=r["answer"], meta=r.get("meta") or {}) for r in read_jsonl(folder / "examples.jsonl")]
        rows = read_jsonl(folder / "chains.jsonl")
        for n, r in enumerate(rows, 1):
            lp = r.get("logprob") if isinstance(r, dict) else None
            if lp is not None and (isinstance(lp, bool) or not isinstance(lp, (int, float)) or lp in (math.inf, -math.inf)):
                raise UserError(f"{folder / 'chains.jsonl'}:{n}: logprob must be a finite number or null, got {str(lp)[:40]!r}")
        chains = [Chain.from_dict(r) for r in rows]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{folder}: malformed predictions ({type(e).__name__}: {str(e)[:200]})") from None
    return Predictions(info, examples, chains)


def locate_predictions(ref: str, tracking_uri: str, scratch: Path) -> tuple[Path, str | None]:
    """(predictions folder, MLflow run id or None) for a folder path or an MLflow run id.

    A run id's `predictions` artifact is downloaded into `scratch`.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return path, None
    from harness.tracking import _quiet_mlflow

    _quiet_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_run(ref)
    except MlflowException:
        raise UserError(f"{ref!r} is neither a predictions folder nor an MLflow run id in {tracking_uri}") from None
    try:
        local = client.download_artifacts(ref, "predictions", str(scratch))
    except (MlflowException, OSError) as e:
        raise UserError(f"run {ref} has no predictions artifact ({type(e).__name__})") from None
    return Path(local), ref


def attach_scores(chains: Sequence[Chain], path: Path) -> list[Chain]:
    """Chains with ranker scores (for `asc`) from a JSONL of {example_id, sample, score}."""
    from harness.aggregate import RANKER_SCORE

    scores: dict[tuple[str, int], float] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                s = float(r["score"])
                scores[(str(r["example_id"]), int(r["sample"]))] = s
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise UserError(f"{path}:{n}: a score row needs example_id, sample and a numeric score ({type(e).__name__})") from None
            if not 0.0 <= s <= 1.0:
                raise UserError(f"{path}:{n}: score {s} is outside [0, 1]")
    out = []
    for c in chains:
        k = (c.example_id, c.meta.get("sample", -1))
        out.append(dataclasses.replace(c, meta={**c.meta, RANKER_SCORE: scores[k]}) if k in scores and c.meta.get("temperature") != 0 else c)
    return out
