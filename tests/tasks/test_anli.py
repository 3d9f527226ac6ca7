import json
from pathlib import Path

import pytest
from hub_fixture import write_hub_dataset  # tests/tasks is on sys.path (rootdir-relative import)

from harness.errors import UserError
from tasks import get_task, nli

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_dir():
    d = DATA / "dss" / "datasets" / "anli1"
    if not (d / "anli1_test.json").is_file() or not (d / "anli1_valid.json").is_file():
        pytest.skip(f"ANLI R1 data not found under {d} (shared/data is missing)")
    return str(d)


def test_counts_ids_gold(data_dir):
    task = get_task("anli", data_dir=data_dir)
    s = {k: task.load(k) for k in ("valid", "test")}
    assert (len(s["valid"]), len(s["test"])) == (1000, 1000)
    ids = [e.id for k in s for e in s[k]]
    assert len(set(ids)) == 2000
    for split in s:
        raw = [json.loads(x) for x in (Path(data_dir) / f"anli1_{split}.json").read_text().splitlines() if x.strip()]
        for ex, row in zip(s[split], raw, strict=True):
            assert ex.id == f"anli1-{row['uid']}"
            assert ex.question == f"Premise: {row['premise'].strip()}\nHypothesis: {row['hypothesis'].strip()}"
            assert task.equivalent(ex.answer, ex.answer)
            assert task.equivalent(nli.LABELS[row["label"]], ex.answer)
    labels = [e.answer for e in s["test"]]
    assert (labels.count("entailment"), labels.count("neutral"), labels.count("contradiction")) == (334, 333, 333)
    assert task.student_input(s["test"][0]) == s["test"][0].question
    assert task.prompt(s["test"][0]).endswith(s["test"][0].question + "\nA:")
    nli.load_all.cache_clear()
    assert get_task("anli", data_dir=data_dir).load("test") == s["test"]
    # a data root finds dss/datasets/anli1; the anli_r1 folder holds the same files
    assert get_task("anli", data_dir=str(DATA)).load("test") == s["test"]
    if (DATA / "anli_r1" / "anli1_valid.json").is_file():
        assert get_task("anli", data_dir=str(DATA / "anli_r1")).load("valid") == s["valid"]


def _rows(data_dir, split, n):
    return [json.loads(x) for x in (Path(data_dir) / f"anli1_{split}.json").read_text().splitlines()[:n]]


def test_hub_path_matches_files(tmp_path, data_dir):
    """facebook/anli layout (train_r1 / dev_r1 / test_r1, r2 ignored) from real rows."""
    files_task = get_task("anli", data_dir=data_dir)
    valid, test, more = _rows(data_dir, "valid", 4), _rows(data_dir, "test", 4), _rows(data_dir, "test", 7)[4:]
    train = [*more[:2], {**more[2], "label": -1}]  # real rows (from test; the hub's train is not shared)
    r2 = [{**test[0], "uid": "r2-only"}]
    root = write_hub_dataset(
        tmp_path / "anli",
        {"plain_text": {"train_r1": train, "dev_r1": valid, "test_r1": test, "train_r2": r2, "dev_r2": r2}},
    )
    with pytest.raises(UserError, match=r"anli\[train_r1\] row 2: unlabeled row \(label -1\)"):
        get_task("anli", hf_dataset=str(root)).load("test")
    task = get_task("anli", hf_dataset=str(root), skip_bad=True)
    assert task.load("valid") == files_task.load("valid")[:4]
    assert task.load("test") == files_task.load("test")[:4]
    assert task.load("train") == files_task.load("test")[4:6]  # same converter, same Examples
    assert len(task.skipped()) == 1 and "anli[train_r1] row 2: unlabeled row" in task.skipped()[0]
    train.append({**more[0], "label": 1})  # a repeated uid is a bad row, named where it is
    root = write_hub_dataset(tmp_path / "dup" / "anli", {"plain_text": {"train_r1": train, "dev_r1": valid, "test_r1": test}})
    task = get_task("anli", hf_dataset=str(root), skip_bad=True)
    assert len(task.load("train")) == 2
    assert "anli[train_r1] row 3: duplicate id 'anli1-" in task.skipped()[1]
    with pytest.raises(UserError, match="not both"):
        get_task("anli", data_dir=data_dir, hf_dataset="facebook/anli")


def test_train_missing_is_user_error(data_dir):
    with pytest.raises(UserError, match=r"no train split: anli1_train\.json is not in"):
        get_task("anli", data_dir=data_dir).load("train")


@pytest.mark.parametrize(
    "text, label",
    [
        ("It is not entailment. So the answer is neutral.", "neutral"),
        ("The answer is Contradiction", "contradiction"),
        ("Answer: entailment", "entailment"),
        ("neutral or maybe entailment", "entailment"),
        ("The answer is yes", None),
        ("", None),
    ],
)
def test_extract(text, label):
    assert get_task("anli").extract(text) == label


def test_equivalent():
    task = get_task("anli")
    assert task.equivalent("Neutral.", "neutral") and not task.equivalent(None, "neutral")
    assert not task.equivalent("entailment", "neutral") and not task.equivalent("yes", "yes")


def test_bad_rows(tmp_path):
    good = {"uid": "u1", "premise": "P.", "hypothesis": "H.", "label": 0, "reason": ""}
    (tmp_path / "anli1_valid.json").write_text(json.dumps(good) + "\n")
    (tmp_path / "anli1_test.json").write_text(
        json.dumps({**good, "uid": "u2"}) + "\n" + json.dumps({**good, "uid": "u3", "label": 7}) + "\n"
    )
    with pytest.raises(UserError, match=r"anli1_test\.json:2: unknown label 7"):
        get_task("anli", data_dir=str(tmp_path)).load("test")
    task = get_task("anli", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["anli1-u2"] and len(task.skipped()) == 1
    (tmp_path / "anli1_test.json").write_text(json.dumps({**good, "uid": "u4"}) + "\n{x\n" + json.dumps({"uid": "u5"}) + "\n")
    with pytest.raises(UserError, match=r"anli1_test\.json:2: invalid JSON"):
        get_task("anli", data_dir=str(tmp_path)).load("test")
    nli.load_all.cache_clear()  # loads are cached per task options: the file changed under them
    task = get_task("anli", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["anli1-u4"]
    assert len(task.skipped()) == 2 and "anli1_test.json:3: missing field 'premise'" in task.skipped()[1]


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="needs data_dir"):
        get_task("anli").load("test")
    with pytest.raises(UserError, match="is not a folder"):
        get_task("anli", data_dir=str(tmp_path / "nope")).load("test")
    with pytest.raises(UserError, match=r"anli1_valid\.json not found"):
        get_task("anli", data_dir=str(tmp_path)).load("test")
