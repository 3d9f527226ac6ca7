"""MultiArith (Roy & Roth, 2015): 600 problems, from MultiArith.json in `data_dir`; all test (see tasks/mawps.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.mawps import MawpsTask


@dataclass(frozen=True)
class MultiArithTask(MawpsTask):
    """Multi-step arithmetic word problems; evaluation only."""

    name: ClassVar[str] = "multiarith"
    file: ClassVar[str] = "MultiArith.json"
