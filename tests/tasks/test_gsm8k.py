import json
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import get_task
from tasks.gsm8k import GSM8KTask, _load

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_dir():
    d = DATA / "gsm8k"
    if not (d / "train.jsonl").is_file():
        pytest.skip(f"GSM8K data not found at {d} (shared/data is missing)")
    return d


@pytest.fixture(scope="module")
def splits(data_dir):
    task = get_task("gsm8k", data_dir=str(data_dir))
    return {s: task.load(s) for s in ("train", "valid", "test")}


def test_counts(splits):
    assert len(splits["test"]) == 1319
    assert len(splits["train"]) + len(splits["valid"]) == 7473
    assert (len(splits["train"]), len(splits["valid"])) == (6719, 754)


def test_ids_unique_stable_disjoint(data_dir, splits):
    ids = [e.id for s in splits.values() for e in s]
    assert len(ids) == len(set(ids)) == 1319 + 7473
    assert not {e.id for e in splits["train"]} & {e.id for e in splits["valid"]}
    _load.cache_clear()
    again = GSM8KTask(data_dir=str(data_dir)).load("valid")
    assert [e.to_dict() for e in again] == [e.to_dict() for e in splits["valid"]]
    assert splits["test"][0].id == "gsm8k-test-0"


def test_gold_answers_match_raw(data_dir, splits):
    task = GSM8KTask(data_dir=str(data_dir))
    raw = [json.loads(line) for line in (data_dir / "test.jsonl").read_text().splitlines()]
    for ex, row in zip(splits["test"], raw, strict=True):
        written = row["answer"].rsplit("####", 1)[1].strip()
        assert task.equivalent(ex.answer, ex.answer)
        assert task.equivalent(written, ex.answer), (ex.id, written)
        assert "<<" not in ex.rationale and "####" not in ex.rationale
    for ex in splits["train"] + splits["valid"]:
        assert task.equivalent(ex.answer, ex.answer) and task.canonical(ex.answer) == ex.answer


def test_prompt(splits):
    task = GSM8KTask()
    ex = splits["test"][0]
    p = task.prompt(ex)
    assert p.count("Q: ") == 5 and p.count("The answer is") == 4
    assert p.endswith(f"Q: {ex.question}\nA:")
    assert task.student_input(ex) == ex.question
    assert task.extract("so 9 * 2 = 18. The answer is 18.") == "18"


def _write(folder: Path, train: str, test: str) -> None:
    (folder / "train.jsonl").write_text(train)
    (folder / "test.jsonl").write_text(test)


def test_bad_rows(tmp_path):
    good = json.dumps({"question": "q?", "answer": "1+1=<<1+1=2>>2\n#### 2"})
    _write(
        tmp_path,
        good + "\n{broken\n" + json.dumps({"question": "no answer"}) + "\n"
        + json.dumps({"question": "q", "answer": "no hashes"}) + "\n" + good + "\n",
        good + "\n",
    )
    with pytest.raises(UserError, match=r"train\.jsonl:2: invalid JSON"):
        GSM8KTask(data_dir=str(tmp_path)).load("train")
    task = GSM8KTask(data_dir=str(tmp_path), skip_bad=True)
    loaded = task.load("train") + task.load("valid")
    assert sorted(e.id for e in loaded) == ["gsm8k-train-0", "gsm8k-train-4"]
    assert loaded[0].rationale == "1+1=2" and loaded[0].answer == "2"
    skipped = task.skipped()
    assert len(skipped) == 3
    assert "train.jsonl:2:" in skipped[0]
    assert "train.jsonl:3: missing field 'answer'" in skipped[1]
    assert "train.jsonl:4: answer has no '#### <number>'" in skipped[2]


def test_missing_field_names_line(tmp_path):
    _write(tmp_path, json.dumps({"answer": "#### 3"}) + "\n", "")
    with pytest.raises(UserError, match=r"train\.jsonl:1: missing field 'question'$"):
        GSM8KTask(data_dir=str(tmp_path)).load("test")


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="needs data_dir") as e:
        get_task("gsm8k").load("test")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not a folder"):
        get_task("gsm8k", data_dir=str(tmp_path / "missing")).load("test")
    with pytest.raises(UserError, match=r"test\.jsonl not found"):
        (tmp_path / "train.jsonl").write_text("")
        get_task("gsm8k", data_dir=str(tmp_path)).load("test")
