import hashlib
import json
from pathlib import Path

import pytest
from hub_fixture import write_hub_dataset  # tests/tasks is on sys.path (rootdir conftest)

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


# --- data root, gold self-checks, Hugging Face source ---------------------------------------

def test_data_root_works_like_task_folder(mawps, data_dir):
    NAME, _, _ = mawps
    want = get_task(NAME, data_dir=str(data_dir)).load("test")
    assert get_task(NAME, data_dir=str(DATA)).load("test") == want  # shared/data, holding <name>/


def test_gold_equals_itself_on_every_row(mawps, data_dir):
    NAME, FILE, COUNT = mawps
    task = get_task(NAME, data_dir=str(data_dir))
    by_id = {e.id: e for e in task.load("test")}
    raw = json.loads((data_dir / FILE).read_text())
    assert len(raw) == len(by_id) == COUNT
    for row in raw:
        ex = by_id[f"{NAME}-{row['iIndex']}"]
        written = str(row["lSolutions"][0])  # "39.0" (float) or "43" (AddSub writes strings)
        assert task.equivalent(written, ex.answer), (ex.id, written, ex.answer)
        assert task.equivalent(ex.answer, ex.answer) and task.canonical(ex.answer) == ex.answer
        assert ex.rationale is None  # no gold rationales in these sets
        assert task.equivalent(task.extract(f"{ex.question} The answer is {written}."), ex.answer)


def _hid(question):
    return "multiarith-h" + hashlib.sha256(" ".join(question.split()).lower().encode()).hexdigest()[:10]


def _chilled(rows, as_number=False):
    """MultiArith rows in ChilleD/MultiArith's fields (question, final_ans)."""
    out = []
    for r in rows:
        ans = r["lSolutions"][0]
        out.append({"question": r["sQuestion"], "final_ans": float(ans) if as_number else f"{ans:g}"})
    return out


@pytest.mark.parametrize("as_number", [False, True], ids=["str-answers", "number-answers"])
def test_multiarith_hub(tmp_path, as_number, caplog):
    path = DATA / "multiarith" / "MultiArith.json"
    if not path.is_file():
        pytest.skip(f"MultiArith data not found at {path}")
    raw = json.loads(path.read_text())
    by_index = {e.meta["iIndex"]: e for e in get_task("multiarith", data_dir=str(path.parent)).load("test")}
    # Rows 50-59 of the file repeat the questions of rows 40-49: train repeats itself, and
    # test (rows 50-52 first) repeats three train questions.
    train_rows, test_rows = raw[:60], raw[50:53] + raw[100:110]
    root = write_hub_dataset(
        tmp_path / "ma", {"default": {"train": _chilled(train_rows, as_number), "test": _chilled(test_rows, as_number)}}
    )
    task = get_task("multiarith", hf_dataset=str(root))
    with caplog.at_level("INFO", logger="distillbench.tasks"):
        s = {k: task.load(k) for k in ("train", "valid", "test")}
    assert [e.id for e in s["test"]] == [_hid(r["sQuestion"]) for r in test_rows]
    test_ids = {e.id for e in s["test"]}
    want_train = {_hid(r["sQuestion"]) for r in train_rows} - test_ids
    assert {e.id for e in s["train"] + s["valid"]} == want_train and len(want_train) == 60 - 10 - 3
    assert len(s["train"] + s["valid"]) == 47 and s["valid"] and not {e.id for e in s["train"]} & {e.id for e in s["valid"]}
    gold = {_hid(r["sQuestion"]): by_index[r["iIndex"]] for r in raw[:110]}
    for e in s["train"] + s["valid"] + s["test"]:
        assert (e.question, e.answer) == (gold[e.id].question, gold[e.id].answer)
    assert "13 repeated questions dropped" in caplog.text and "kept once, in test" in caplog.text
    again = get_task("multiarith", hf_dataset=str(root) + "/")  # a new cache key: a real reload
    assert again.load("valid") == s["valid"]


def test_multiarith_hub_bad_rows(tmp_path):
    good = {"question": "Tom has 2 apples and buys 3. How many?", "final_ans": "5"}
    other = {"question": "Ann has 4 pens and loses 1. How many?", "final_ans": "3"}
    rows = [good, {"question": "q?", "final_ans": None}, {"question": good["question"], "final_ans": "6"}, other]
    root = write_hub_dataset(tmp_path / "h", {"default": {"train": rows, "test": [{**other, "question": "x 1"}]}})
    with pytest.raises(UserError, match=r"h\[train\] row 1: missing field 'final_ans'$") as e:
        get_task("multiarith", hf_dataset=str(root)).load("test")
    assert "\n" not in str(e.value)
    task = get_task("multiarith", hf_dataset=str(root), skip_bad=True)
    assert sorted(e.question for e in task.load("train") + task.load("valid")) == sorted([good["question"], other["question"]])
    skipped = task.skipped()
    assert len(skipped) == 2 and "[train] row 1: missing field 'final_ans'" in skipped[0]
    assert "[train] row 2: repeats the question of" in skipped[1] and "with answer 6, not 5" in skipped[1]


@pytest.mark.parametrize("name,file", [("addsub", "AddSub.json"), ("singleeq", "questions.json")])
def test_mawps_fields_hub_folder_loads_like_the_file(tmp_path, name, file):
    """AddSub/SingleEq have no standard hub copy, but a hub-layout folder with the MAWPS
    fields and a "test" split goes through the same converter: the same Examples and ids."""
    path = DATA / name / file
    if not path.is_file():
        pytest.skip(f"{name} data not found at {path}")
    raw = json.loads(path.read_text())[:20]
    root = write_hub_dataset(tmp_path / name, {"default": {"test": raw}})
    task = get_task(name, hf_dataset=str(root))
    want = get_task(name, data_dir=str(path.parent)).load("test")[:20]
    assert task.load("test") == want and task.load("train") == [] == task.load("valid")
    bad = write_hub_dataset(tmp_path / "bad", {"default": {"test": [raw[0], {**raw[1], "lSolutions": None}]}})
    with pytest.raises(UserError, match=r"bad\[test\] row 1: missing field 'lSolutions'$"):
        get_task(name, hf_dataset=str(bad)).load("test")
    skip = get_task(name, hf_dataset=str(bad), skip_bad=True)
    assert skip.load("test") == want[:1] and len(skip.skipped()) == 1
    train_only = write_hub_dataset(tmp_path / "tr", {"default": {"train": raw}})
    with pytest.raises(UserError, match=r"split 'test': cannot load") as e:
        get_task(name, hf_dataset=str(train_only)).load("test")
    assert "\n" not in str(e.value)


def test_hub_options_and_offline(mawps, tmp_path):
    NAME, _, _ = mawps
    with pytest.raises(UserError, match="not both"):
        get_task(NAME, hf_dataset="ChilleD/MultiArith", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="hf_dataset must be"):
        get_task(NAME, hf_dataset="")
    with pytest.raises(UserError, match=r"'ChilleD/MultiArith'.*cannot load.*offline") as e:
        get_task(NAME, hf_dataset="ChilleD/MultiArith").load("test")
    assert "\n" not in str(e.value)
