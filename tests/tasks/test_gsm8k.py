import json
from pathlib import Path

import pytest
from hub_fixture import write_hub_dataset  # tests/tasks is on sys.path (rootdir conftest)

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


# --- data root, gold self-checks, Hugging Face source -------------------------------------

def _raw(data_dir, split_file):
    return [json.loads(line) for line in (data_dir / f"{split_file}.jsonl").read_text().splitlines()]


def test_data_root_works_like_task_folder(data_dir, splits):
    task = get_task("gsm8k", data_dir=str(data_dir.parent))  # shared/data, holding gsm8k/
    assert [e.to_dict() for e in task.load("test")] == [e.to_dict() for e in splits["test"]]
    assert [e.id for e in task.load("valid")] == [e.id for e in splits["valid"]]


def test_gold_equals_itself_on_every_row(data_dir, splits):
    """Re-read both files with plain json: the answer as written after '####' (commas kept,
    e.g. "1,000") and the rationale + "The answer is <raw>" both check equal to the gold."""
    task = GSM8KTask(data_dir=str(data_dir))
    by_id = {e.id: e for s in splits.values() for e in s}
    n = 0
    for split_file in ("train", "test"):
        for i, row in enumerate(_raw(data_dir, split_file)):
            ex = by_id[f"gsm8k-{split_file}-{i}"]
            written = row["answer"].rsplit("####", 1)[1].strip()
            assert task.equivalent(written, ex.answer), (ex.id, written, ex.answer)
            assert task.equivalent(ex.answer, ex.answer) and task.canonical(ex.answer) == ex.answer
            assert ex.rationale
            # gsm8k-train-7157's rationale ends in an unterminated "the final answer is ...":
            # the appended statement must still win (an earlier extractor bug)
            said = task.extract(ex.rationale + " The answer is " + written)
            assert task.equivalent(said, ex.answer), (ex.id, said, ex.answer)
            assert task.equivalent(task.extract(ex.rationale + "\nThe answer is " + written + "."), ex.answer)
            assert task.equivalent(task.extract(f"The answer is {written}."), ex.answer), ex.id
            n += 1
    assert n == 7473 + 1319


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_hub_gives_the_same_examples_as_the_files(data_dir, splits, tmp_path, fmt):
    """A hub-layout folder made from the first 20 rows of each real file (openai/gsm8k keeps
    the jsonl order) loads to the very same Examples, ids included."""
    rows = {s: _raw(data_dir, s)[:20] for s in ("train", "test")}
    root = write_hub_dataset(tmp_path / "gsm8k-hub", {"main": rows}, fmt=fmt)
    task = get_task("gsm8k", hf_dataset=str(root))
    for split in ("train", "valid", "test"):
        want = [e for e in splits[split] if int(e.id.rsplit("-", 1)[1]) < 20]
        assert [e.to_dict() for e in task.load(split)] == [e.to_dict() for e in want], split
    assert task.load("test")[0].id == "gsm8k-test-0"
    assert len(task.load("train")) + len(task.load("valid")) == 20


def _hub_rows():
    good = {"question": "q?", "answer": "1+1=<<1+1=2>>2\n#### 2"}
    return [good, {"question": "no answer", "answer": None}, {"question": "q", "answer": "no hashes"}, good]


def test_hub_bad_rows(tmp_path, caplog):
    root = write_hub_dataset(tmp_path / "h", {"main": {"train": _hub_rows(), "test": _hub_rows()[:1]}})
    with pytest.raises(UserError, match=r"h\[main:train\] row 1: missing field 'answer'$") as e:
        get_task("gsm8k", hf_dataset=str(root)).load("test")
    assert "\n" not in str(e.value)
    task = get_task("gsm8k", hf_dataset=str(root), skip_bad=True)
    with caplog.at_level("WARNING", logger="distillbench.tasks"):
        loaded = task.load("train") + task.load("valid")
    assert sorted(e.id for e in loaded) == ["gsm8k-train-0", "gsm8k-train-3"]  # ids never shift
    assert loaded[0].rationale == "1+1=2" and loaded[0].answer == "2"
    skipped = task.skipped()
    assert len(skipped) == 2
    assert skipped[0].endswith("[main:train] row 1: missing field 'answer'")
    assert skipped[1].endswith("[main:train] row 2: answer has no '#### <number>' line")
    assert "row 2" in caplog.text


def test_hub_options_and_unloadable_sources(tmp_path):
    with pytest.raises(UserError, match="not both"):
        get_task("gsm8k", data_dir=str(tmp_path), hf_dataset="openai/gsm8k")
    with pytest.raises(UserError, match="hf_dataset must be"):
        get_task("gsm8k", hf_dataset="  ")
    only_test = write_hub_dataset(tmp_path / "t", {"main": {"test": _hub_rows()[:1]}})
    with pytest.raises(UserError, match=r"split 'train': cannot load: .*train") as e:
        get_task("gsm8k", hf_dataset=str(only_test)).load("test")
    assert "\n" not in str(e.value)
    other = write_hub_dataset(tmp_path / "c", {"socratic": {"train": _hub_rows()[:1]}})
    with pytest.raises(UserError, match=r"config 'main'.*cannot load") as e:
        get_task("gsm8k", hf_dataset=str(other)).load("test")
    assert "\n" not in str(e.value)


def test_hub_id_offline_is_one_fast_line():
    import time

    start = time.monotonic()
    with pytest.raises(UserError, match=r"'openai/gsm8k'.*cannot load.*offline") as e:
        get_task("gsm8k", hf_dataset="openai/gsm8k").load("test")
    assert "\n" not in str(e.value) and time.monotonic() - start < 10


def test_last_number_fallback_can_be_switched_off():
    text = "She has 3 apples and buys 4 more, 7 in all"
    assert GSM8KTask().extract(text) == "7"
    assert GSM8KTask(last_number_fallback=False).extract(text) is None
    assert GSM8KTask(last_number_fallback=False).extract(text + ". The answer is 7.") == "7"
