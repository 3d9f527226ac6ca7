"""Importers for public teacher releases: their chains as lists of `Chain` records.

- `dss.import_dss`: Distilling-step-by-step's PaLM-540B chains (svamp, csqa, anli, esnli).
- `tdg.import_tdg`: TDG's GPT-3.5-turbo chains on the MATH train problems (8 per problem).
"""

from __future__ import annotations

from harness.importers.dss import DSS_SOURCE, DSS_TASKS, ImportResult, import_dss
from harness.importers.tdg import TDG_SOURCE, Difference, TDGResult, import_tdg

__all__ = [
    "DSS_SOURCE",
    "DSS_TASKS",
    "TDG_SOURCE",
    "Difference",
    "ImportResult",
    "TDGResult",
    "import_dss",
    "import_tdg",
]
