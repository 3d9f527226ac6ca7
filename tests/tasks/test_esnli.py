import json
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import get_task, nli

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_dir():
    d = DATA / "dss" / "datasets" / "esnli"
    if not (d / "esnli_test.json").is_file() or not (d / "esnli_valid.json").is_file():
        pytest.skip(f"e-SNLI data not found under {d} (shared/data is missing)")
    return str(d)


@pytest.fixture(scope="module")
def splits(data_dir):
    task = get_task("esnli", data_dir=data_dir)
    return task, {k: task.load(k) for k in ("valid", "test")}


def test_counts_ids_gold(splits, data_dir):
    task, s = splits
    assert (len(s["valid"]), len(s["test"])) == (9842, 9824)
    ids = [e.id for k in s for e in s[k]]
    assert len(set(ids)) == 9842 + 9824
    assert s["test"][0].id == "esnli-test-0" and s["valid"][-1].id == "esnli-valid-9841"
    for split in s:
        raw = [json.loads(x) for x in (Path(data_dir) / f"esnli_{split}.json").read_text().splitlines() if x.strip()]
        for ex, row in zip(s[split], raw, strict=True):
            assert task.equivalent(ex.answer, ex.answer)
            assert task.equivalent(nli.LABELS[row["label"]], ex.answer)
            assert ex.rationale == (row["explanation_1"].strip() or None)
    # Labels agree with the original e-SNLI labels.test file, line by line, when it is there.
    orig = DATA / "esnli" / "eSNLI" / "labels.test"
    if orig.is_file():
        assert [e.answer for e in s["test"]] == orig.read_text().split()


def test_train_missing_is_user_error(splits):
    with pytest.raises(UserError, match=r"no train split: esnli_train\.json"):
        splits[0].load("train")


def test_extract_teacher_format():
    task = get_task("esnli")
    assert task.extract("The choir does not imply cracks.\nAnswer: neutral\n\n") == "neutral"


def test_bad_rows(tmp_path):
    good = {"premise": "P.", "hypothesis": "H.", "label": 2, "explanation_1": "E."}
    (tmp_path / "esnli_valid.json").write_text(json.dumps(good) + "\n")
    (tmp_path / "esnli_test.json").write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": "maybe"}) + "\n")
    with pytest.raises(UserError, match=r"esnli_test\.json:2: unknown label 'maybe'"):
        get_task("esnli", data_dir=str(tmp_path)).load("test")
    task = get_task("esnli", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["esnli-test-0"] and len(task.skipped()) == 1
    assert task.load("valid")[0].answer == "contradiction" and task.load("valid")[0].rationale == "E."


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="needs data_dir"):
        get_task("esnli").load("test")
    with pytest.raises(UserError, match=r"esnli_valid\.json not found"):
        get_task("esnli", data_dir=str(tmp_path)).load("test")
