"""Teacher banks: K chains per example, stored append-only so a killed build resumes.

A bank lives in `<store>/banks/<key>/`: `manifest.json` (everything that determines the
chains: task name, versions and options, teacher, sampling parameters, seed, labelling rule)
and `chains.jsonl`, one typed row per chain. The key is the content hash of the manifest, so
the same build twice is the same bank and makes no teacher calls.

Work is done in fixed chunks of examples (the examples in split order, `chunk_size` each). A
chunk's rows are appended in one write followed by a chunk-end row; on reading, rows count only
once their chunk-end row is there, and a chunk written twice (a crash between the rows and the
end row, then a resume) keeps its last copy. The seed of a chunk depends only on the bank seed
and the chunk's position, so a resumed build regenerates an unfinished chunk exactly as an
uninterrupted build would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.store import Store, atomic_write_text, content_key
from harness.types import Chain, Example

LABELS = ("gold", "majority")  # gold: checked against the gold answer; majority: QCRD §3.2.1


def chunk_seed(seed: int, chunk: int) -> int:
    """The sampling seed of one chunk: fixed by the bank seed and the chunk's position."""
    return int(hashlib.sha256(f"{seed}:{chunk}".encode()).hexdigest()[:8], 16)


class Bank:
    """One bank directory: its manifest and its append-only chains file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        manifest = path / "manifest.json"
        if not manifest.is_file():
            raise UserError(f"{path} is not a teacher bank (no manifest.json)")
        self.manifest: dict[str, Any] = json.loads(manifest.read_text())
        self.key = path.name

    @classmethod
    def create(cls, store: Store, manifest: dict[str, Any]) -> Bank:
        """The bank for `manifest`, created empty if it does not exist yet."""
        key = content_key(manifest)
        path = store.dir("banks", key)
        if not (path / "manifest.json").is_file():
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
        return cls(path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across processes while building (the kernel drops a killed holder's lock)."""
        import fcntl

        with open(self.path / ".build.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    @property
    def chains_file(self) -> Path:
        return self.path / "chains.jsonl"

    def chunks(self) -> dict[int, tuple[list[str], list[Chain]]]:
        """Finished chunks: chunk index -> (example ids, chains). Unfinished tails are ignored.

        A chunk counts only when all its rows read back as written: its end row holds their
        count and sha256, so a line damaged in the middle of the file (a bit flip, an edit, bytes
        that are not UTF-8) drops that chunk with a one-line warning, and the next build
        regenerates it, instead of training on the chunk's other chains."""
        done: dict[int, tuple[list[str], list[Chain]]] = {}
        if not self.chains_file.exists():
            return done
        pending: list[Chain] = []
        raw: list[bytes] = []
        damaged: dict[int, str] = {}
        with self.chains_file.open("rb") as f:
            for line in f:
                try:
                    row = json.loads(line.decode("utf-8"))
                    if not isinstance(row, dict):
                        raise ValueError("not an object")
                    if row.get("kind") == "chunk":
                        why = None
                        if "n" in row and row["n"] != len(pending):
                            why = f"{len(pending)} of its {row['n']} chains"
                        digest = hashlib.sha256(b"\n".join(raw)).hexdigest()
                        if why is None and row.get("sha256") not in (None, digest):
                            why = "its chains do not match their checksum"
                        if why is None:
                            done[row["chunk"]] = (row["examples"], pending)
                        else:
                            damaged[row["chunk"]] = why
                        pending, raw = [], []
                    else:
                        pending.append(Chain.from_dict(row["chain"]))
                        raw.append(line.rstrip(b"\n"))
                except (ValueError, KeyError, TypeError):
                    # a write cut by a kill (the last line; a resume starts a fresh chunk after it)
                    # or damage: the rows before it cannot complete a chunk; the end row's count
                    # then shows a damaged chunk
                    pending, raw = [], []
        for chunk, why in damaged.items():
            if chunk not in done:  # not regenerated yet
                print(f"warning: bank {self.key}: chunk {chunk} is damaged ({why}); the next build regenerates it",
                      file=sys.stderr)
        return done

    def chains(self) -> list[Chain]:
        """Every chain of the finished chunks, in chunk then example then sample order."""
        return [c for _, (_, chains) in sorted(self.chunks().items()) for c in chains]

    def append_chunk(self, chunk: int, example_ids: Sequence[str], chains: Sequence[Chain]) -> None:
        """Append one chunk's chains and its end row in a single write, flushed to disk."""
        rows = [json.dumps({"kind": "chain", "chain": c.to_dict()}) for c in chains]
        digest = hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()
        rows.append(json.dumps({"kind": "chunk", "chunk": chunk, "examples": list(example_ids), "n": len(chains), "sha256": digest}))
        with self.chains_file.open("a+b") as f:
            f.seek(0, os.SEEK_END)
            torn = f.tell() > 0 and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n"
            # a kill mid-write leaves a cut last line: end it, or the first new row joins it
            f.write((("\n" if torn else "") + "\n".join(rows) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def record_usage(self, usage: dict[str, Any]) -> None:
        """Append one build's API usage (tokens, requests, retries, cost) to usage.jsonl."""
        with (self.path / "usage.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(usage) + "\n")

    def usage(self) -> dict[str, float]:
        """API usage summed over every build of this bank (empty for local teachers)."""
        total: dict[str, float] = {}
        path = self.path / "usage.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            for k, v in json.loads(line).items():
                if isinstance(v, (int, float)):
                    total[k] = total.get(k, 0) + v
        return total


# A chunk generator: (examples, seed) -> one list of chains per example (K each).
Generate = Callable[[Sequence[Example], int], list[list[Chain]]]


@dataclass
class BuildReport:
    chunks_total: int
    chunks_done_before: int
    chunks_generated: int
    examples_generated: int


def build(
    bank: Bank,
    examples: Sequence[Example],
    generate: Generate,
    label: Callable[[Example, list[Chain]], list[Chain]],
    chunk_size: int = 64,
    seed: int = 0,
    on_chunk: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Generate the chunks not yet in the bank, label them and append each as it finishes."""
    if chunk_size < 1:
        raise UserError(f"chunk_size must be >= 1, got {chunk_size}")
    done = bank.chunks()
    parts = [list(examples[i : i + chunk_size]) for i in range(0, len(examples), chunk_size)]
    report = BuildReport(len(parts), 0, 0, 0)
    for j, part in enumerate(parts):
        ids = [e.id for e in part]
        if j in done:
            if done[j][0] != ids:
                raise UserError(
                    f"bank {bank.key}: chunk {j} holds other examples than this build's; "
                    "the task data changed under the same task version"
                )
            report.chunks_done_before += 1
            continue
        per_example = generate(part, chunk_seed(seed, j))
        chains = [c for ex, cs in zip(part, per_example, strict=True) for c in label(ex, cs)]
        bank.append_chunk(j, ids, chains)
        report.chunks_generated += 1
        report.examples_generated += len(part)
        if on_chunk:
            on_chunk(j + 1, len(parts))
    return report


# --------------------------------------------------------------------------- labelling


def label_by_gold(task: Any) -> Callable[[Example, list[Chain]], list[Chain]]:
    """correct = the extracted answer checks equal to the gold answer (None is never correct)."""

    def label(ex: Example, chains: list[Chain]) -> list[Chain]:
        return [_with(c, correct=c.answer is not None and task.equivalent(c.answer, ex.answer)) for c in chains]

    return label


def label_by_majority(task: Any) -> Callable[[Example, list[Chain]], list[Chain]]:
    """QCRD §3.2.1, label-free: the most common answer among the K samples (by the task's
    canonical form; unparsable answers never win, ties go to the first seen) marks positives.
    Each chain records the majority answer and its agreement rate (votes / K) in meta."""

    def label(ex: Example, chains: list[Chain]) -> list[Chain]:
        keys = [task.canonical(c.answer) if c.answer is not None else None for c in chains]
        votes = Counter(k for k in keys if k is not None)
        if not votes:
            return [_with(c, correct=False, majority=None, agreement=0.0) for c in chains]
        best = max(votes, key=lambda k: (votes[k], -keys.index(k)))
        rate = votes[best] / len(chains)
        return [_with(c, correct=k == best, majority=best, agreement=rate) for c, k in zip(chains, keys, strict=True)]

    return label


def _with(c: Chain, correct: bool, **meta: Any) -> Chain:
    return dataclasses.replace(c, correct=correct, meta={**c.meta, **meta})


# --------------------------------------------------------------------------- stats


@dataclass
class BankStats:
    examples: int = 0
    chains: int = 0
    positives: int = 0
    no_answer: int = 0  # answer-extraction failures (stored, counted, never positive)
    only_positive: int = 0  # examples whose K chains are all positive (QCRD App. Table 2)
    only_negative: int = 0
    mixed: int = 0
    per_example: dict[int, int] = field(default_factory=dict)  # positives out of K -> examples
    tokens: int = 0
    agreement: float | None = None  # majority labelling: mean votes / K

    def rows(self) -> Iterator[tuple[str, str]]:
        e = max(self.examples, 1)
        yield "examples", f"{self.examples:,}"
        yield "chains", f"{self.chains:,}"
        yield "positives", f"{self.positives:,} ({self.positives / max(self.chains, 1):.1%})"
        yield "no answer extracted", f"{self.no_answer:,} ({self.no_answer / max(self.chains, 1):.1%})"
        yield "examples with only positives", f"{self.only_positive:,} ({self.only_positive / e:.1%})"
        yield "examples with only negatives", f"{self.only_negative:,} ({self.only_negative / e:.1%})"
        yield "examples with both", f"{self.mixed:,} ({self.mixed / e:.1%})"
        yield "positives per example", ", ".join(f"{k}: {v}" for k, v in sorted(self.per_example.items()))
        yield "generated tokens", f"{self.tokens:,}"
        if self.agreement is not None:
            yield "majority agreement (votes / K)", f"{self.agreement:.1%}"


def stats(chains: Sequence[Chain]) -> BankStats:
    """Counts over a bank's chains, grouped by example."""
    s = BankStats()
    by_example: dict[str, list[Chain]] = {}
    for c in chains:
        by_example.setdefault(c.example_id, []).append(c)
    rates = []
    for cs in by_example.values():
        pos = sum(bool(c.correct) for c in cs)
        s.per_example[pos] = s.per_example.get(pos, 0) + 1
        s.only_positive += pos == len(cs)
        s.only_negative += pos == 0
        s.mixed += 0 < pos < len(cs)
        if "agreement" in cs[0].meta:
            rates.append(cs[0].meta["agreement"])
    s.examples = len(by_example)
    s.chains = len(chains)
    s.positives = sum(bool(c.correct) for c in chains)
    s.no_answer = sum(c.answer is None for c in chains)
    s.tokens = sum(c.n_tokens for c in chains)
    s.agreement = sum(rates) / len(rates) if rates else None
    return s
