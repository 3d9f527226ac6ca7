"""MultiArith (Roy & Roth, 2015): 600 multi-step arithmetic word problems.

From MultiArith.json in `data_dir` (all 600 test, ids "multiarith-<iIndex>"), or from
hf_dataset="ChilleD/MultiArith" (hub train 420 -> train/valid, hub test 180 -> test,
content-hash ids "multiarith-h<sha256[:10]>"). See tasks/mawps.py for both sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.mawps import MawpsTask


@dataclass(frozen=True)
class MultiArithTask(MawpsTask):
    """Multi-step arithmetic word problems; evaluation only from the file, train/test from the hub."""

    name: ClassVar[str] = "multiarith"
    file: ClassVar[str] = "MultiArith.json"
    hub_format: ClassVar[str] = "chilled"
