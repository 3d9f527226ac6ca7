"""The papers' published numbers (leaderboard/reported.yaml) as rows to show beside measured ones.

Pure data: the file is validated on load (a typo in it is a clear error, not a silent gap), and
each table's rows are flattened to one `ReportedRow` per (method, task) with its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

FILE = Path(__file__).with_name("reported.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Row(_Strict):
    method: str | None
    paper_method: str
    teacher: str | None = None
    acc: float | None = None  # the table's one task
    acc_by_task: dict[str, float] | None = None
    subjects: dict[str, float] = {}
    note: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> _Row:
        if (self.acc is None) == (self.acc_by_task is None):
            raise ValueError(f"row {self.paper_method!r}: give exactly one of acc (the table's task) and acc_by_task")
        return self


class _Table(_Strict):
    id: str
    paper: str
    source: str
    student: str
    teacher: str | None = None
    task: str | None = None
    split: str
    ablation: bool = False  # rows shown only beside a measured row of the same setting
    rows: list[_Row]

    @model_validator(mode="after")
    def _task_known(self) -> _Table:
        for r in self.rows:
            if r.acc is not None and self.task is None:
                raise ValueError(f"table {self.id}: row {r.paper_method!r} gives acc but the table names no task")
            if (r.teacher or self.teacher) is None:
                raise ValueError(f"table {self.id}: row {r.paper_method!r} has no teacher")
        return self


class _File(_Strict):
    tables: list[_Table]


@dataclass(frozen=True)
class ReportedRow:
    """One published accuracy (%) of one method on one task, with where it comes from."""

    table: str
    paper: str
    source: str
    student: str
    teacher: str
    task: str
    split: str
    method: str | None  # ours, or a QCRD ablation label; None: no counterpart here
    paper_method: str
    acc: float
    subjects: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    ablation: bool = False

    @property
    def label(self) -> str:
        """How the leaderboard names the row: reported, the paper's method, the teacher."""
        return f"reported: {self.paper_method} ({self.teacher})" if self.teacher != "-" else f"reported: {self.paper_method}"


def load(path: Path = FILE) -> list[ReportedRow]:
    """Every reported number in `path`, one row per (table row, task)."""
    from pydantic import ValidationError

    from harness.errors import UserError

    try:
        data = _File.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"{path.name}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    out: list[ReportedRow] = []
    for t in data.tables:
        for r in t.rows:
            values = r.acc_by_task if r.acc_by_task is not None else {t.task: r.acc}
            for task, acc in values.items():
                out.append(
                    ReportedRow(
                        t.id, t.paper, t.source, t.student, r.teacher or t.teacher or "", task or "", t.split, r.method, r.paper_method, acc, dict(r.subjects), r.note, t.ablation
                    )
                )
    return out


@lru_cache(maxsize=1)
def reported() -> tuple[ReportedRow, ...]:
    """The project's reported rows, loaded once."""
    return tuple(load())
