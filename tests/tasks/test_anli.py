import json
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import get_task, nli
from tasks.anli import _load

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
    _load.cache_clear()
    assert get_task("anli", data_dir=data_dir).load("test") == s["test"]


def test_train_missing_is_user_error(data_dir):
    with pytest.raises(UserError, match=r"no train split: anli1_train\.json"):
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


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="needs data_dir"):
        get_task("anli").load("test")
    with pytest.raises(UserError, match="is not a folder"):
        get_task("anli", data_dir=str(tmp_path / "nope")).load("test")
    with pytest.raises(UserError, match=r"anli1_valid\.json not found"):
        get_task("anli", data_dir=str(tmp_path)).load("test")
