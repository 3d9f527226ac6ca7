"""ANLI round 1 (Nie et al., 2020), from the Distilling-step-by-step export or Hugging Face.

data_dir: a folder holding anli1_{train,valid,test}.json (JSON Lines {"uid", "premise",
"hypothesis", "label": 0|1|2, "reason"}), e.g. shared/data/dss/datasets/anli1 or
shared/data/anli_r1, or a data root holding one of those two (dss/datasets/anli1 is tried first).
hf_dataset: "facebook/anli" (or a local folder in its layout): train_r1 / dev_r1 / test_r1
become train / valid / test; the r2 and r3 splits are not read.

Splits: valid = ANLI R1 dev (1,000), test = ANLI R1 test (1,000). train = anli1_train.json
(16,946) when present; the shared DSS copy lacks it, and then load("train") is a UserError
rather than a silently empty split (the hub has train_r1). Ids are "anli1-<uid>" in every
source. Gold answers are the label words entailment / neutral / contradiction (0 / 1 / 2);
any other label (the hub's -1 too) is a row error. Rationale: the annotator's "reason" when
non-empty (it explains why the model was fooled, so it is not a chain of thought).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.types import Example
from tasks import files, nli


def _example(row: dict[str, Any], loc: str, split: str, index: int) -> Example:
    uid = files.require(row, "uid", loc, str)
    premise = files.require(row, "premise", loc, str)
    hypothesis = files.require(row, "hypothesis", loc, str)
    label = nli.label_word(files.require(row, "label", loc), loc)
    reason = row.get("reason")
    return Example(
        id=f"anli1-{uid}",
        question=nli.question(premise, hypothesis),
        answer=label,
        rationale=(reason.strip() or None) if isinstance(reason, str) else None,
        meta={"premise": premise, "hypothesis": hypothesis},
    )


DATA = nli.NLIData(
    sources=(nli.dss_source("anli1", ("dss/datasets/anli1", "anli_r1")),),
    hub_splits=(("train", "train_r1"), ("valid", "dev_r1"), ("test", "test_r1")),
    convert=_example,
)


@dataclass(frozen=True)
class ANLITask(nli.NLITask):
    """Adversarial NLI, round 1: premise/hypothesis pairs, three labels."""

    data_dir: str | None = None
    skip_bad: bool = False
    hf_dataset: str | None = None

    name: ClassVar[str] = "anli"
    version: ClassVar[str] = "1"
    prompt_version: ClassVar[str] = "1"
    data: ClassVar[nli.NLIData] = DATA
