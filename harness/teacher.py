"""Teachers: where the chains a student learns from come from.

- `oracle`: a procedural task writes its own worked solution; a seeded share of the chains
  carries one plausible slip, which gives labelled negatives (offline, synthetic).
- `gold`: a dataset's own reference rationales, one per example.
- `hf` / `vllm` / `openai`: K sampled chains per example from a model through a Decoder
  (harness.decoding.HFDecoder, harness.backends.vllm.VLLMDecoder (vLLM; causal models),
  harness.backends.openai.OpenAIDecoder).
Every teacher's chains go into a bank (harness.bank): built in resumable chunks, labelled by the
gold answer or, label-free, by the majority answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Sequence
from typing import Any

from harness.errors import UserError
from harness.types import Chain, Example
from tasks.base import Task, task_key
from tasks.checking import split_statement

ORACLE_SOURCE = "teacher:oracle"
GOLD_SOURCE = "teacher:gold"


def gold_chains(task: Any, examples: list[Example]) -> list[Chain]:
    """One chain per example: the dataset's own reference rationale (e.g. GSM8K's solutions).

    Human-written, not sampled: a positive by construction when its stated answer checks
    against the gold answer; examples without a rationale get no chain.
    """
    if not any(ex.rationale for ex in examples):
        raise UserError(f"teacher 'gold': task {task.name!r} has no reference rationales")
    chains = []
    for ex in examples:
        if not ex.rationale:
            continue
        # state the answer explicitly, as teacher chains do, so students learn where it goes
        text = ex.rationale if "answer is" in ex.rationale.lower() else f"{ex.rationale}\nThe answer is {ex.answer}."
        chains.append(written_chain(task, ex, text, GOLD_SOURCE, {"synthetic": False, "sample": 0}))
    return chains


def written_chain(task: Task, ex: Example, text: str, source: str, meta: dict[str, Any]) -> Chain:
    """A chain of a written (not sampled) text: its answer extracted and checked, then split."""
    answer = task.extract(text)
    chain = Chain(ex.id, source, text, answer, task.equivalent(answer, ex.answer), n_tokens=len(text.split()), meta=meta)
    return split(chain)


def split(chain: Chain) -> Chain:
    """The chain with `rationale` / `statement` filled by the closing answer statement
    (tasks.checking.split_statement); a chain without one is left unsplit (all rationale)."""
    parts = split_statement(chain.text)
    if parts is None:
        return chain
    return dataclasses.replace(chain, rationale=parts[0], statement=parts[1])


def example_rng(seed: int, example_id: str) -> random.Random:
    """A Random for one example that is the same in every process (Python's hash() is salted)."""
    digest = hashlib.sha256(f"{seed}\0{example_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def oracle_chains(
    task: Task, examples: list[Example], k: int, wrong_rate: float, seed: int
) -> list[Chain]:
    """k chains per example, each one slipped (wrong) with probability wrong_rate."""
    if not task.writes_chains:
        raise UserError(f"teacher 'oracle' only works for procedural tasks: task {task.name!r} cannot write its own chains")
    write_chain = task.write_chain
    if not 0.0 <= wrong_rate <= 1.0:
        raise UserError(f"teacher 'oracle': wrong_rate must be in [0, 1], got {wrong_rate}")
    if k < 1:
        raise UserError(f"teacher 'oracle': k must be >= 1, got {k}")
    chains = []
    for ex in examples:
        rng = example_rng(seed, ex.id)
        for i in range(k):
            slipped = rng.random() < wrong_rate
            text, _ = write_chain(ex, rng) if slipped else write_chain(ex)
            meta = {"synthetic": True, "sample": i, "seed": seed, "wrong_rate": wrong_rate, "slipped": slipped}
            chains.append(written_chain(task, ex, text, ORACLE_SOURCE, meta))
    return chains


def split_bank(chains: list[Chain]) -> tuple[list[Chain], list[Chain]]:
    """(positives, negatives) by the chain's correct flag; no answer counts as negative."""
    pos = [c for c in chains if c.answer is not None and c.correct]
    neg = [c for c in chains if not (c.answer is not None and c.correct)]
    return pos, neg


def sampled(task: Any, decoder: Any, params: Any, source: str) -> Any:
    """A bank chunk generator for a sampling teacher (any harness.decoding.Decoder): the task's
    few-shot prompt per example, params.n chains each, answers extracted; labelling is the
    bank's (gold or majority), so `correct` is left to it."""
    from dataclasses import replace

    from harness.decoding import to_chains

    def generate(examples: Sequence[Example], seed: int) -> list[list[Chain]]:
        p = replace(params, seed=seed)
        gens = decoder.sample([task.prompt(ex) for ex in examples], p)
        chains = [split(c) for c in to_chains(examples, gens, task, source, p)]
        return [chains[i * p.n : (i + 1) * p.n] for i in range(len(examples))]

    generate.decoder = decoder  # type: ignore[attr-defined]  # build_bank reads its token usage
    return generate


BACKENDS = ("oracle", "gold", "hf", "vllm", "openai", "dss", "tdg")


def generator(task: Any, t: Any) -> Any:
    """The bank chunk generator for a teacher spec (harness.config.TeacherSpec)."""
    from harness.decoding import SamplingParams

    if t.name == "oracle":
        # per-example seeds (not the chunk's), so chains never depend on chunking
        return lambda exs, seed: _per_example(exs, oracle_chains(task, list(exs), t.k, t.wrong_rate, t.seed))
    if t.name == "gold":
        if not any(ex.rationale for ex in task.load("train")[:100]):
            gold_chains(task, [])  # the one-line "has no reference rationales" error, up front
        return lambda exs, seed: _per_example(exs, gold_chains(task, list(exs)) if any(e.rationale for e in exs) else [])
    if t.name in ("dss", "tdg"):
        chains = released_chains(task, t)
        return lambda exs, seed: _per_example(exs, chains)
    if t.name not in BACKENDS:
        from harness.errors import unknown

        raise unknown("teacher", t.name, BACKENDS)
    if t.model is None:
        raise UserError(f"teacher {t.name!r} needs teacher.model (a model folder, hub id or served model name)")
    params = SamplingParams(n=t.k, temperature=t.temperature, top_p=t.top_p, max_new_tokens=t.max_new_tokens, seed=t.seed)
    return sampled(task, sampling_decoder(t), params, f"teacher:{t.name}:{t.model}")


def sampling_decoder(t: Any) -> Any:
    """The Decoder of a sampling teacher (hf, vllm, openai), loaded here."""
    backend = t.name
    if backend == "vllm":
        from harness.backends.vllm import is_encoder_decoder, warn_fallback

        if is_encoder_decoder(t.model):  # vLLM serves causal models only
            warn_fallback(t.model)
            backend = "hf"
    if backend == "hf":
        import torch

        from harness.decoding import HFDecoder
        from harness.student import Student

        device = "cuda" if torch.cuda.is_available() else "cpu"
        student = Student.load(t.model, device, max_input_len=2048, max_target_len=t.max_new_tokens)
        return HFDecoder(student, batch_size=t.batch_size)
    if backend == "vllm":
        from harness.backends.vllm import VLLMConfig, VLLMDecoder

        return VLLMDecoder(VLLMConfig(model=t.model, lora=t.lora))
    from harness.backends.openai import OpenAIConfig, OpenAIDecoder

    return OpenAIDecoder(OpenAIConfig.from_options({**t.openai, "model": t.model}))


def _per_example(examples: Sequence[Example], chains: list[Chain]) -> list[list[Chain]]:
    by_id: dict[str, list[Chain]] = {}
    for c in chains:
        by_id.setdefault(c.example_id, []).append(c)
    return [by_id.get(e.id, []) for e in examples]


def build_bank(task: Any, examples: Sequence[Example], t: Any, store: Any, generate: Any = None, on_chunk: Any = None) -> Any:
    """(bank, build report): the bank of teacher `t` for `examples`, generating only what is missing."""
    from harness import bank as banks
    from harness.store import content_key

    manifest = bank_manifest(task, examples, t)
    # one builder per bank: a concurrent worker waits, then finds every chunk done (no teacher call)
    with store.lock("banks", content_key(manifest)):
        bank = banks.Bank.create(store, manifest)
        label = banks.label_by_majority(task) if t.label == "majority" else banks.label_by_gold(task)
        generate = generate or generator(task, t)
        report = banks.build(bank, examples, generate, label, chunk_size=t.chunk_size, seed=t.seed, on_chunk=on_chunk)
    decoder = getattr(generate, "decoder", None)
    if report.chunks_generated and hasattr(decoder, "usage"):  # API teachers: tokens billed, cost
        bank.record_usage({**decoder.usage.as_dict(), "cost": decoder.cost()})
    return bank, report


def bank_manifest(task: Any, examples: Sequence[Example], t: Any) -> dict[str, Any]:
    """What determines a teacher bank (its key is this manifest's content hash)."""
    from harness.store import content_key

    return {
        # 2: teacher chains carry rationale / statement; a bank of the older format is rebuilt
        "chain_format": 2,
        "task": task_key(task),
        # teacher.noise is not generation: a noisy view is derived from this bank (harness/noise.py)
        "teacher": t.model_dump(mode="json", exclude={"noise"}),
        "examples": content_key([e.id for e in examples]),
    }


def released_chains(task: Any, t: Any) -> list[Chain]:
    """The chains of a public teacher release for the task's train and valid examples: `dss`
    (PaLM-540B, one per example: svamp, csqa, anli, esnli) or `tdg` (GPT-3.5, 8 per MATH train
    problem). The release is found under teacher.data_dir, else beside the task's data_dir."""
    from pathlib import Path

    folder = "dss" if t.name == "dss" else "tdg"
    roots = [Path(p) for p in (t.data_dir, task.data_root()) if p]
    candidates = [r / folder for r in roots] + [r.parent / folder for r in roots] + [r for r in roots if r.name == folder]
    found = next((c for c in candidates if c.is_dir()), None)
    if found is None:
        raise UserError(f"teacher {t.name!r}: no {folder}/ release folder found; set teacher.data_dir to the data root holding it")
    if t.name == "dss":
        from harness.importers.dss import import_dss

        splits = ["train", "valid"] if task.name in ("anli", "esnli") else ["train"]
        return [c for split in splits for c in import_dss(task.name, found, split, task).chains]
    from harness.importers.tdg import import_tdg

    return import_tdg(found / "GPT3.5-turbo-MATH", task).chains


# ----------------------------------------------------------------------- writing new problems

WRITERS = ("oracle", "hf", "vllm", "openai")  # teachers that can write new problems (FDD)


class ProblemTeacher:
    """A teacher that writes new problems from given ones and solves each K times (FDD, Zhu et
    al. 2024): `oracle` through the task's own `write_problem` (procedural tasks; its chains slip
    at `wrong_rate`, and the true answer of every problem is known, for auditing the filter);
    hf / vllm / openai through tasks.generation's prompts, then the task's few-shot prompt."""

    def __init__(self, task: Any, t: Any) -> None:
        from tasks.generation import family_of

        if t.name not in WRITERS:
            raise UserError(
                f"teacher {t.name!r} cannot write new problems: FDD needs one of {', '.join(WRITERS)} "
                "(set the method's `teacher:` option to use another teacher than the bank's)"
            )
        family_of(task)  # a one-line error for a task with no problem prompts (NLI, CSQA)
        if t.name == "oracle" and not task.writes_problems:
            task.write_problem(None, "similar", None)  # TaskDefaults' one-line error
        if t.name != "oracle" and t.model is None:
            raise UserError(f"teacher {t.name!r} needs teacher.model (a model folder, hub id or served model name)")
        self.task, self.spec = task, t
        self.source = ORACLE_SOURCE if t.name == "oracle" else f"teacher:{t.name}:{t.model}"
        self._decoder: Any = None

    def key(self) -> dict[str, Any]:
        """What determines the problems and chains it writes (part of a generated bank's key)."""
        from tasks.generation import PROMPT_VERSION, family_of

        return {"teacher": self.spec.model_dump(mode="json", exclude={"noise"}), "prompts": PROMPT_VERSION, "family": family_of(self.task)}

    @property
    def decoder(self) -> Any:
        if self._decoder is None:
            self._decoder = sampling_decoder(self.spec)
        return self._decoder

    def write(self, parents: Sequence[Example], kinds: Sequence[str], seed: int) -> list[tuple[Example | None, str, int]]:
        """(problem or None when unparsable, the teacher's raw text, its tokens) per parent."""
        from harness.decoding import SamplingParams
        from harness.store import content_key
        from tasks.generation import parse_problem, problem_prompt

        if self.spec.name == "oracle":
            out: list[tuple[Example | None, str, int]] = []
            for ex, kind in zip(parents, kinds, strict=True):
                problem = self.task.write_problem(ex, kind, example_rng(seed, f"{ex.id}\0{kind}"))
                out.append((problem, problem.question, len(problem.question.split())))
            return out
        t = self.spec
        params = SamplingParams(n=1, temperature=t.temperature, top_p=t.top_p, max_new_tokens=t.max_new_tokens, seed=seed)
        gens = self.decoder.sample([problem_prompt(self.task, ex, kind) for ex, kind in zip(parents, kinds, strict=True)], params)
        out = []
        for ex, kind, g in zip(parents, kinds, gens, strict=True):
            question = parse_problem(g[0].text)
            problem = None
            if question is not None:
                meta = {"kind": kind, "parent": ex.id, **{k: ex.meta[k] for k in ("subject", "level") if k in ex.meta}}
                problem = Example(id=f"gen-{content_key(question)[:12]}", question=question, answer="", meta=meta)
            out.append((problem, g[0].text, g[0].n_tokens))
        return out

    def solve(self, problems: Sequence[Example], k: int, seed: int) -> list[list[Chain]]:
        """k chains per problem with the task's own few-shot prompt. `correct` is checked against
        the problem's known answer (oracle) and None when there is none (a model's problem)."""
        from harness.decoding import SamplingParams, to_chains

        if not problems:
            return []
        if self.spec.name == "oracle":
            return _per_example(problems, oracle_chains(self.task, list(problems), k, self.spec.wrong_rate, seed))
        t = self.spec
        params = SamplingParams(n=k, temperature=t.temperature, top_p=t.top_p, max_new_tokens=t.max_new_tokens, seed=seed)
        gens = self.decoder.sample([self.task.prompt(ex) for ex in problems], params)
        chains = [dataclasses.replace(split(c), correct=None) for c in to_chains(problems, gens, self.task, self.source, params)]
        return [chains[i * k : (i + 1) * k] for i in range(len(problems))]

    def close(self) -> None:
        """Release the decoder's connections or engine (API sessions, a vLLM engine)."""
        if self._decoder is not None and hasattr(self._decoder, "close"):
            self._decoder.close()
        self._decoder = None

    def usage(self) -> dict[str, float]:
        """API usage so far (tokens billed, requests, cost) for API teachers; empty otherwise."""
        d = self._decoder
        return {**d.usage.as_dict(), "cost": d.cost()} if d is not None and hasattr(d, "usage") else {}
