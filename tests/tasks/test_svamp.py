import json
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import get_task
from tasks.svamp import _load

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def dirs():
    d, dss = DATA / "svamp", DATA / "dss" / "datasets" / "svamp"
    if not (d / "SVAMP.json").is_file() or not (dss / "svamp_train.json").is_file():
        pytest.skip(f"SVAMP data not found under {DATA} (shared/data is missing)")
    return str(d), str(dss)


def test_full(dirs):
    task = get_task("svamp", data_dir=dirs[0])
    test = task.load("test")
    assert len(test) == 1000 and task.load("train") == [] == task.load("valid")
    assert len({e.id for e in test}) == 1000
    raw = json.loads((Path(dirs[0]) / "SVAMP.json").read_text())
    for ex, row in zip(test, raw, strict=True):
        assert ex.id == f"svamp-{row['ID']}"
        assert ex.question == f"{row['Body'].strip()} {row['Question'].strip()}"
        assert task.equivalent(ex.answer, ex.answer) and task.equivalent(str(row["Answer"]), ex.answer)
    _load.cache_clear()
    assert [e.to_dict() for e in get_task("svamp", data_dir=dirs[0]).load("test")] == [
        e.to_dict() for e in test
    ]


def test_dss_split(dirs):
    task = get_task("svamp", data_dir=dirs[0], split_source="dss", dss_dir=dirs[1])
    s = {k: task.load(k) for k in ("train", "valid", "test")}
    assert (len(s["train"]), len(s["valid"]), len(s["test"])) == (702, 98, 200)
    ids = [{e.id for e in s[k]} for k in s]
    assert sum(map(len, ids)) == 1000 == len(ids[0] | ids[1] | ids[2])  # disjoint, cover all
    full = {e.id: e for e in get_task("svamp", data_dir=dirs[0]).load("test")}
    assert all(full[e.id] == e for k in s for e in s[k])
    rows = [json.loads(x) for x in (Path(dirs[1]) / "svamp_test.json").read_text().splitlines()]
    assert [r["input"] for r in rows] == [e.meta["dss_input"] for e in s["test"]]


def test_bad_rows(tmp_path):
    good = {"ID": "a-1", "Body": "B.", "Question": "Q?", "Equation": "( 1.0 + 1.0 )", "Answer": 2.0}
    (tmp_path / "SVAMP.json").write_text(json.dumps([good, {**good, "ID": "a-2", "Answer": None}]))
    with pytest.raises(UserError, match=r"SVAMP\.json:record 1: missing field 'Answer'$"):
        get_task("svamp", data_dir=str(tmp_path)).load("test")
    task = get_task("svamp", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["svamp-a-1"]
    assert len(task.skipped()) == 1
    (tmp_path / "SVAMP.json").write_text(json.dumps([good]))
    # DSS rows that are not JSON, or not in SVAMP.json, are named by line.
    (tmp_path / "svamp_train.json").write_text(json.dumps({"input": "B.\nQ?"}) + "\nnope\n")
    (tmp_path / "svamp_test.json").write_text(json.dumps({"input": "unknown"}) + "\n")
    opts = dict(data_dir=str(tmp_path), split_source="dss", dss_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"svamp_train\.json:2: invalid JSON"):
        get_task("svamp", **opts).load("test")
    task = get_task("svamp", skip_bad=True, **opts)
    assert task.load("test") == [] and len(task.load("train") + task.load("valid")) == 1
    assert any("svamp_test.json:1: input not found" in m for m in task.skipped())


def test_options_and_missing_dirs(tmp_path):
    with pytest.raises(UserError, match="needs data_dir"):
        get_task("svamp").load("test")
    with pytest.raises(UserError, match="split_source"):
        get_task("svamp", split_source="cv")
    (tmp_path / "SVAMP.json").write_text("[]")
    with pytest.raises(UserError, match="task 'svamp' needs data_dir: .*dss_dir") as e:
        get_task("svamp", data_dir=str(tmp_path), split_source="dss").load("test")
    assert "\n" not in str(e.value)
