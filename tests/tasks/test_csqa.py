import json
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.types import Example
from tasks import get_task
from tasks.csqa import _load

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_dir():
    d = DATA / "csqa"
    if not (d / "train_rand_split.jsonl").is_file() or not (d / "dev_rand_split.jsonl").is_file():
        pytest.skip(f"CommonsenseQA data not found under {d} (shared/data is missing)")
    return str(d)


@pytest.fixture(scope="module")
def splits(data_dir):
    task = get_task("csqa", data_dir=data_dir)
    return task, {k: task.load(k) for k in ("train", "valid", "test")}


def test_counts_and_ids(splits):
    task, s = splits
    assert len(s["test"]) == 1221  # test = CSQA dev (no public test labels)
    assert len(s["train"]) + len(s["valid"]) == 9741
    assert 0.08 * 9741 < len(s["valid"]) < 0.12 * 9741
    ids = [e.id for k in s for e in s[k]]
    assert len(ids) == len(set(ids)) == 9741 + 1221
    _load.cache_clear()
    again = get_task("csqa", data_dir=splits[0].data_dir)
    assert [e.id for e in again.load("valid")] == [e.id for e in s["valid"]]


def test_gold_matches_raw(splits, data_dir):
    task, s = splits
    raw = [json.loads(x) for x in (Path(data_dir) / "dev_rand_split.jsonl").read_text().splitlines() if x.strip()]
    for ex, row in zip(s["test"], raw, strict=True):
        assert ex.id == f"csqa-{row['id']}" and ex.question == row["question"]["stem"].strip()
        assert ex.choices == tuple(c["text"].strip() for c in row["question"]["choices"])
        assert task.equivalent(ex.answer, ex.answer)
        assert task.equivalent(row["answerKey"], ex.answer) and task.equivalent(f"({row['answerKey']})", ex.answer)
    ex = s["test"][0]
    assert task.student_input(ex).endswith("\nAnswer Choices: " + " ".join(
        f"({l}) {c}" for l, c in zip("abcde", ex.choices)))
    assert task.prompt(ex).endswith(f"Q: {task.student_input(ex)}\nA:")


EX = Example(id="x", question="q", answer="c", choices=("ant", "bee", "wooded area", "dog", "elk"))


@pytest.mark.parametrize(
    "text, letter",
    [
        ("(c)", "c"),
        ("So the answer is (c) wooded area.", "c"),
        ("The answer is c", "c"),
        ("The answer is C.", "c"),
        ("Not (a). The answer is (e) elk", "e"),
        ("c", "c"),
        ("The answer is a bird", None),
        ("no idea", None),
    ],
)
def test_extract(text, letter):
    task = get_task("csqa")
    assert task.extract(text) == letter


def test_extract_for_and_equivalent():
    task = get_task("csqa")
    assert task.extract_for(EX, "So the answer is wooded area.") == "c"
    assert task.extract_for(EX, "Wooded Area") == "c"
    assert task.extract_for(EX, "The answer is (b) bee") == "b"
    assert task.extract_for(EX, "The answer is a cat") is None
    assert task.equivalent("C", "c") and task.equivalent("(c)", "c")
    assert not task.equivalent(None, "c") and not task.equivalent("d", "c")
    assert not task.equivalent("wooded area", "c")


def test_bad_rows(tmp_path):
    choices = [{"label": l, "text": t} for l, t in zip("ABCDE", "vwxyz")]
    good = {"answerKey": "A", "id": "g1", "question": {"stem": "S?", "choices": choices}}
    (tmp_path / "train_rand_split.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "dev_rand_split.jsonl").write_text(
        json.dumps({**good, "id": "g2"}) + "\n" + json.dumps({**good, "id": "g3", "answerKey": "F"}) + "\n"
    )
    with pytest.raises(UserError, match=r"dev_rand_split\.jsonl:2: unknown answerKey 'F'"):
        get_task("csqa", data_dir=str(tmp_path)).load("test")
    task = get_task("csqa", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["csqa-g2"] and len(task.skipped()) == 1


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="needs data_dir"):
        get_task("csqa").load("test")
    with pytest.raises(UserError, match="is not a folder"):
        get_task("csqa", data_dir=str(tmp_path / "nope")).load("test")
    with pytest.raises(UserError, match=r"train_rand_split\.jsonl not found"):
        get_task("csqa", data_dir=str(tmp_path)).load("test")
