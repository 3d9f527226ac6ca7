import json
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import get_task

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SETS = [("multiarith", "MultiArith.json", 600), ("addsub", "AddSub.json", 395), ("singleeq", "questions.json", 508)]


@pytest.fixture(params=SETS, ids=[s[0] for s in SETS])
def mawps(request):
    return request.param


@pytest.fixture
def data_dir(mawps):
    NAME, FILE, _ = mawps
    d = DATA / NAME
    if not (d / FILE).is_file():
        pytest.skip(f"{NAME} data not found at {d} (shared/data is missing)")
    return d


def test_counts_ids_and_answers(mawps, data_dir):
    NAME, FILE, COUNT = mawps
    task = get_task(NAME, data_dir=str(data_dir))
    test = task.load("test")
    assert len(test) == COUNT and task.load("train") == [] and task.load("valid") == []
    assert len({e.id for e in test}) == COUNT
    fresh = get_task(NAME, data_dir=str(data_dir) + "/")  # a new cache key: a real reload
    assert [e.to_dict() for e in fresh.load("test")] == [e.to_dict() for e in test]
    raw = json.loads((data_dir / FILE).read_text())
    for ex, row in zip(test, raw, strict=True):
        assert ex.id == f"{NAME}-{row['iIndex']}"
        assert task.equivalent(ex.answer, ex.answer)
        assert task.equivalent(str(row["lSolutions"][0]), ex.answer)
    assert task.prompt(test[0]).endswith(f"Q: {test[0].question}\nA:")


def test_bad_rows(mawps, tmp_path):
    NAME, FILE, _ = mawps
    good = {"iIndex": 1, "lEquations": ["X=1+1"], "lSolutions": [2.0], "sQuestion": "q?"}
    rows = [good, {**good, "iIndex": 2, "lSolutions": None}, 7, {**good, "iIndex": 1}]
    (tmp_path / FILE).write_text(json.dumps(rows))
    with pytest.raises(UserError, match=rf"{FILE}:record 2: expected a JSON object"):
        get_task(NAME, data_dir=str(tmp_path)).load("test")
    (tmp_path / "strict").mkdir()
    (tmp_path / "strict" / FILE).write_text(json.dumps(rows[:2]))
    with pytest.raises(UserError, match=rf"{FILE}:record 1: missing field 'lSolutions'$"):
        get_task(NAME, data_dir=str(tmp_path / "strict")).load("test")
    task = get_task(NAME, data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == [f"{NAME}-1"]
    skipped = task.skipped()
    assert [s.split(": ", 1)[0].rsplit(":", 1)[1] for s in skipped] == [
        "record 2", "record 1", "record 3"
    ]
    assert "duplicate id" in skipped[2]
    (tmp_path / FILE).write_text('[{"iIndex": 1},\n oops]')
    with pytest.raises(UserError, match=rf"{FILE}:2: invalid JSON"):
        get_task(NAME, data_dir=str(tmp_path)).load("test")


def test_missing_data_dir(mawps, tmp_path):
    NAME, FILE, _ = mawps
    with pytest.raises(UserError, match=f"task '{NAME}' needs data_dir") as e:
        get_task(NAME).load("test")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=f"{FILE} not found"):
        get_task(NAME, data_dir=str(tmp_path)).load("test")
