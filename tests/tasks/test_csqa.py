import json
from pathlib import Path

import pytest
from hub_fixture import write_hub_dataset  # tests/tasks is on sys.path (rootdir-relative import)

from harness.errors import UserError
from harness.types import Example
from tasks import get_task
from tasks.csqa import LETTERS, _load

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DSS = DATA / "dss" / "datasets" / "cqa"


def _jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


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


@pytest.fixture(scope="module")
def dss_splits():
    if not (DSS / "cqa_train.json").is_file() or not (DSS / "cqa_test.json").is_file():
        pytest.skip(f"DSS cqa export not found under {DSS}")
    task = get_task("csqa", data_dir=str(DSS))
    return task, {k: task.load(k) for k in ("train", "valid", "test")}


def test_counts_and_ids(splits):
    _, s = splits
    assert len(s["test"]) == 1221  # test = CSQA dev (no public test labels)
    assert (len(s["train"]), len(s["valid"])) == (8773, 968)
    ids = [e.id for k in s for e in s[k]]
    assert len(ids) == len(set(ids)) == 9741 + 1221
    assert all([e.id for e in s[k]] == sorted(e.id for e in s[k]) for k in s)
    _load.cache_clear()
    again = get_task("csqa", data_dir=splits[0].data_dir)
    assert [e.id for e in again.load("valid")] == [e.id for e in s["valid"]]


def test_gold_matches_raw_every_row(splits, data_dir):
    """Every example: the raw answerKey letter and the raw answer text check equal to the gold."""
    task, s = splits
    by_id = {e.id: e for k in s for e in s[k]}
    test_ids = {e.id for e in s["test"]}
    n = 0
    for name in ("train_rand_split.jsonl", "dev_rand_split.jsonl"):
        for row in _jsonl(Path(data_dir) / name):
            ex = by_id[f"csqa-{row['id']}"]
            assert (ex.id in test_ids) == name.startswith("dev")
            texts = [c["text"] for c in row["question"]["choices"]]
            key = row["answerKey"]
            assert ex.question == row["question"]["stem"].strip()
            assert ex.choices == tuple(t.strip() for t in texts)
            assert ex.answer == f"({key.lower()}) {texts['ABCDE'.index(key)].strip()}"
            assert task.canonical(ex.answer) == key.lower()
            assert task.equivalent(ex.answer, ex.answer)
            assert task.equivalent(key, ex.answer) and task.equivalent(f"({key})", ex.answer)
            raw_text = texts["ABCDE".index(key)]
            assert task.equivalent(task.extract_for(ex, raw_text), ex.answer), (ex.id, raw_text)
            assert task.equivalent(task.extract_for(ex, f"So the answer is {raw_text}."), ex.answer)
            wrong = next(L for L in LETTERS if L != key.lower())
            assert not task.equivalent(wrong, ex.answer)
            n += 1
    assert n == 9741 + 1221
    ex = s["test"][0]
    assert task.student_input(ex).endswith("\nAnswer Choices: " + " ".join(
        f"({letter}) {c}" for letter, c in zip("abcde", ex.choices)))
    assert task.prompt(ex).endswith(f"Q: {task.student_input(ex)}\nA:")


def test_dss_source_gives_the_same_examples(splits, dss_splits):
    """DSS cos_e export vs the original files: same ids, splits, questions, choices, answers;
    the rationale is the CoS-E abstractive explanation. The only answer differences are the
    19 questions whose answer text is two choices and whose answerKey is the later one."""
    task, s = splits
    dtask, d = dss_splits
    differ = []
    for k in s:
        assert [e.id for e in s[k]] == [e.id for e in d[k]]
        for a, b in zip(s[k], d[k], strict=True):
            assert (a.id, a.question, a.choices) == (b.id, b.question, b.choices)
            assert a.rationale is None and b.rationale
            if a.answer != b.answer:
                differ.append(a.id)
                letters = b.meta["answer_letters"]
                assert task.canonical(a.answer) in letters and task.canonical(b.answer) == letters[0]
                assert a.answer[4:] == b.answer[4:]  # the same text
                assert dtask.equivalent(a.answer[4:], b.answer)
    assert len(differ) == 19
    for name, split_ids in (("cqa_train.json", ("train", "valid")), ("cqa_test.json", ("test",))):
        by_id = {e.id: e for k in split_ids for e in d[k]}
        rows = _jsonl(DSS / name)
        assert len(rows) == len(by_id)
        for row in rows:
            ex = by_id[f"csqa-{row['id']}"]
            assert ex.rationale == row["abstractive_explanation"].strip()
            assert dtask.equivalent(dtask.extract_for(ex, row["answer"]), ex.answer)


def test_data_root(splits):
    if not (DSS / "cqa_train.json").is_file():
        pytest.skip("DSS cqa export missing")
    root = get_task("csqa", data_dir=str(DATA)).load("test")
    assert root == splits[1]["test"]
    dss = get_task("csqa", data_dir=str(DATA), source="dss").load("test")
    assert [e.id for e in dss] == [e.id for e in root] and dss[0].rationale


def _hub_row(row):
    """An original CSQA row in tau/commonsense_qa's field layout."""
    q = row["question"]
    return {
        "id": row["id"],
        "question": q["stem"],
        "question_concept": q["question_concept"],
        "choices": {"label": [c["label"] for c in q["choices"]], "text": [c["text"] for c in q["choices"]]},
        "answerKey": row["answerKey"],
    }


def test_hub_commonsense_qa(tmp_path, splits, data_dir):
    _, s = splits
    train = _jsonl(Path(data_dir) / "train_rand_split.jsonl")[:12]
    dev = _jsonl(Path(data_dir) / "dev_rand_split.jsonl")[:4]
    unlabeled = {**_hub_row(dev[0]), "id": "nokey", "answerKey": ""}
    root = write_hub_dataset(
        tmp_path / "commonsense_qa",
        {"default": {"train": [_hub_row(r) for r in train], "validation": [_hub_row(r) for r in dev],
                     "test": [unlabeled]}},
    )
    hub_task = get_task("csqa", hf_dataset=str(root))
    by_id = {e.id: (k, e) for k in s for e in s[k]}
    got = {k: hub_task.load(k) for k in s}
    assert sum(map(len, got.values())) == 16 and len(got["test"]) == 4
    for k, exs in got.items():
        for ex in exs:
            assert by_id[ex.id] == (k, ex)  # same split, same Example as from the files


def test_hub_cos_e_and_bad_hub_rows(tmp_path, dss_splits):
    _, d = dss_splits
    train = _jsonl(DSS / "cqa_train.json")[:10]
    test = _jsonl(DSS / "cqa_test.json")[:3]
    root = write_hub_dataset(tmp_path / "cos_e", {"v1.11": {"train": train, "validation": test}}, fmt="json")
    by_id = {e.id: (k, e) for k in d for e in d[k]}
    task = get_task("csqa", hf_dataset=str(root))
    got = [(k, e) for k in d for e in task.load(k)]
    assert len(got) == 13 and all(by_id[e.id] == (k, e) for k, e in got)

    bad = [*train[:2], {**train[2], "answer": "not a choice"}]
    root = write_hub_dataset(tmp_path / "bad" / "cos_e", {"v1.11": {"train": bad, "validation": test}}, fmt="json")
    with pytest.raises(UserError, match=r"cos_e\[v1\.11:train\] row 2: answer 'not a choice' is not one of the choices"):
        get_task("csqa", hf_dataset=str(root)).load("test")
    task = get_task("csqa", hf_dataset=str(root), skip_bad=True)
    assert len(task.load("train") + task.load("valid")) == 2
    assert len(task.skipped()) == 1 and "[v1.11:train] row 2" in task.skipped()[0]


EX = Example(id="x", question="q", answer="(c) wooded area", choices=("ant", "bee", "wooded area", "dog", "elk"))


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
    for pred in ("c", "C", "(c)", "(c) wooded area", "(C) Wooded Area.", "wooded area", "The answer is (c)"):
        assert task.equivalent(task.extract(pred) or pred, EX.answer), pred
    assert task.canonical(EX.answer) == "c" == task.canonical("(c)")
    assert not task.equivalent(None, EX.answer) and not task.equivalent("d", EX.answer)
    assert not task.equivalent("(d) wooded area", EX.answer) and not task.equivalent("bee", EX.answer)
    assert not task.equivalent("wooded area", "c")  # a bare letter gold has no text to compare
    twice = Example(id="y", question="q", answer="(d) bent", choices=("bent", "x", "y", "bent", "z"))
    assert task.extract_for(twice, "bent") == "bent" and task.equivalent("bent", twice.answer)


def test_bad_rows(tmp_path):
    choices = [{"label": letter, "text": t} for letter, t in zip("ABCDE", "vwxyz")]
    good = {"answerKey": "A", "id": "g1", "question": {"stem": "S?", "choices": choices}}
    (tmp_path / "train_rand_split.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "dev_rand_split.jsonl").write_text(
        json.dumps({**good, "id": "g2"}) + "\n" + json.dumps({**good, "id": "g3", "answerKey": "F"}) + "\n"
        + "{broken\n" + json.dumps({"id": "g4", "answerKey": "B"}) + "\n"
    )
    with pytest.raises(UserError, match=r"dev_rand_split\.jsonl:3: invalid JSON"):
        get_task("csqa", data_dir=str(tmp_path)).load("test")
    task = get_task("csqa", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["csqa-g2"] and task.load("test")[0].answer == "(a) v"
    msgs = task.skipped()
    assert len(msgs) == 3 and "dev_rand_split.jsonl:3: invalid JSON" in msgs[0]
    assert "dev_rand_split.jsonl:2: unknown answerKey 'F'" in msgs[1]
    assert "dev_rand_split.jsonl:4: missing field 'question'" in msgs[2]


def test_bad_dss_rows(tmp_path):
    good = {"id": "d1", "question": "Q?", "choices": list("vwxyz"), "answer": "x", "abstractive_explanation": "E."}
    (tmp_path / "cqa_train.json").write_text(json.dumps(good) + "\n")
    (tmp_path / "cqa_test.json").write_text(
        json.dumps({**good, "id": "d2"}) + "\n" + json.dumps({**good, "id": "d3", "answer": "q"}) + "\n"
    )
    with pytest.raises(UserError, match=r"cqa_test\.json:2: answer 'q' is not one of the choices"):
        get_task("csqa", data_dir=str(tmp_path)).load("test")
    task = get_task("csqa", data_dir=str(tmp_path), source="dss", skip_bad=True)
    [ex] = task.load("test")
    assert (ex.id, ex.answer, ex.rationale) == ("csqa-d2", "(c) x", "E.") and len(task.skipped()) == 1


def test_options_and_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="needs data_dir"):
        get_task("csqa").load("test")
    with pytest.raises(UserError, match="is not a folder"):
        get_task("csqa", data_dir=str(tmp_path / "nope")).load("test")
    with pytest.raises(UserError, match=r"train_rand_split\.jsonl not found"):
        get_task("csqa", data_dir=str(tmp_path)).load("test")
    with pytest.raises(UserError, match=r"cqa_train\.json not found"):
        get_task("csqa", data_dir=str(tmp_path), source="dss").load("test")
    with pytest.raises(UserError, match="source"):
        get_task("csqa", source="cose")
    with pytest.raises(UserError, match="not both"):
        get_task("csqa", data_dir=str(tmp_path), hf_dataset="tau/commonsense_qa")
    with pytest.raises(UserError, match="source applies to data_dir"):
        get_task("csqa", hf_dataset="cos_e", source="dss")
