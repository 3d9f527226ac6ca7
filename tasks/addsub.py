"""AddSub (Hosseini et al., 2014): 395 problems, from AddSub.json in `data_dir`; all test.

There is no standard hub copy: hf_dataset takes a hub-layout folder (or id) with the MAWPS
fields and a "test" split, loaded like the file (see tasks/mawps.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.mawps import MawpsTask


@dataclass(frozen=True)
class AddSubTask(MawpsTask):
    """Addition and subtraction word problems; evaluation only."""

    name: ClassVar[str] = "addsub"
    file: ClassVar[str] = "AddSub.json"
