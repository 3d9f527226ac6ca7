import json
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import checking, get_task
from tasks.math import HF_MATH, SUBJECT_CONFIGS, Math500Task, MathTask, _load_test, _load_train, boxed, problem_id

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TDG = DATA / "tdg" / "GPT3.5-turbo-MATH"


@pytest.fixture(scope="module")
def root():
    if not (DATA / "math" / "full_test_5000" / "test.jsonl").is_file():
        pytest.skip(f"MATH data not found under {DATA / 'math'} (shared/data is missing)")
    return DATA


@pytest.fixture(scope="module")
def math_splits(root):
    task = get_task("math", data_dir=str(root))
    if not TDG.is_dir():
        pytest.skip(f"TDG train data not found at {TDG}")
    return task, {s: task.load(s) for s in ("train", "valid", "test")}


@pytest.fixture(scope="module")
def m500(root):
    task = get_task("math500", data_dir=str(root / "math"))
    return task, task.load("test")


def _raw(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- counts and ids --------------------------------------------------------------------------


def test_test_counts(math_splits, m500):
    _, splits = math_splits
    assert len(splits["test"]) == 5000
    counts = Counter(e.meta["subject"] for e in splits["test"])
    assert counts == {
        "Algebra": 1187, "Intermediate Algebra": 903, "Prealgebra": 871, "Precalculus": 546,
        "Number Theory": 540, "Geometry": 479, "Counting & Probability": 474,
    }
    assert len(m500[1]) == 500


def test_train_valid(math_splits):
    task, splits = math_splits
    train, valid = splits["train"], splits["valid"]
    # 7,500 TDG records; MATH itself repeats one train problem and has one train problem in
    # its test set (equal after whitespace normalisation): both left out, named by dropped().
    dropped = task.dropped()
    assert len(train) + len(valid) + len(dropped) == 7500
    assert len(dropped) == 2
    assert any("already in the test set" in d for d in dropped)
    assert (len(train), len(valid)) == (6738, 760)
    ids = {e.id for e in train} | {e.id for e in valid}
    assert len(ids) == len(train) + len(valid)
    assert not {e.id for e in train} & {e.id for e in valid}
    assert not ids & {e.id for e in splits["test"]}
    assert not {" ".join(e.question.split()) for e in train + valid} & {
        " ".join(e.question.split()) for e in splits["test"]
    }
    assert not any(e.question.startswith("Problem:") for e in train + valid)
    assert Counter(e.meta["subject"] for e in train + valid)["Algebra"] == 1744 - 1  # the repeat


def test_ids(math_splits, m500, root):
    _, splits = math_splits
    ids = [e.id for e in splits["test"]]
    assert len(set(ids)) == 5000
    assert all(i.startswith("math-") and len(i) == 17 for i in ids)
    # A MATH500 example has the same id (and question, gold) as in "math".
    by_id = {e.id: e for e in splits["test"]}
    assert all(e.id in by_id for e in m500[1])
    for e in m500[1]:
        assert (e.question, e.answer, e.rationale) == (by_id[e.id].question, by_id[e.id].answer, by_id[e.id].rationale)
    assert m500[1][0].meta["unique_id"] == "test/precalculus/807.json"
    assert m500[1][0].id == problem_id(_raw(root / "math/prm800k_math_splits/test.jsonl")[0]["problem"])
    # Stable across loads.
    _load_test.cache_clear()
    _load_train.cache_clear()
    again = MathTask(data_dir=str(root)).load("valid")
    assert [e.to_dict() for e in again] == [e.to_dict() for e in splits["valid"]]


def test_math500_train_is_math_train(math_splits, root):
    _, splits = math_splits
    t = Math500Task(data_dir=str(root / "math"))
    assert [e.id for e in t.load("train")] == [e.id for e in splits["train"]]
    assert [e.id for e in t.load("valid")] == [e.id for e in splits["valid"]]


# --- gold answers ----------------------------------------------------------------------------


def test_gold_math500_answer_field(m500, root):
    task, examples = m500
    raw = _raw(root / "math/prm800k_math_splits/test.jsonl")
    for ex, row in zip(examples, raw, strict=True):
        assert ex.answer == checking.last_boxed(row["solution"]).strip()
        assert task.equivalent(row["answer"], ex.answer), (ex.id, row["answer"], ex.answer)
        assert ex.rationale == row["solution"].strip()


def test_gold_math_5000_self(math_splits, root):
    task, splits = math_splits
    raw = _raw(root / "math/full_test_5000/test.jsonl")
    for ex, row in zip(splits["test"], raw, strict=True):
        written = checking.last_boxed(row["answer"])
        assert task.equivalent(written, ex.answer), (ex.id, written)
        assert task.canonical(ex.answer) == task.canonical(written)
    for ex in splits["train"] + splits["valid"]:
        assert task.equivalent(ex.answer, ex.answer), ex.id


def test_train_errata_and_bare_boxed(math_splits):
    _, splits = math_splits
    train = splits["train"] + splits["valid"]
    errata = [e for e in train if "erratum" in e.meta]
    assert sorted(e.id for e in errata) == ["math-79595ba3b4cf", "math-81a7fe8e017d"]
    assert all(e.answer == "0" for e in errata)
    bare = [e for e in train if "\\boxed{" not in e.rationale]  # "\boxed 2" in two solutions
    assert sorted(e.answer for e in bare) == ["2", "9"]


# --- prompting and extraction ----------------------------------------------------------------


def test_prompt(m500):
    task, examples = m500
    ex = examples[0]
    p = task.prompt(ex)
    assert p.count("Problem: ") == 5 and p.count("\\boxed{") == 4
    assert p.endswith(f"Problem: {ex.question}\nSolution:")
    assert task.student_input(ex) == ex.question
    test_questions = {e.question for e in examples}
    assert not any(q in p for q in test_questions if q != ex.question)


def test_extract():
    task = MathTask()
    assert task.extract("so $x = \\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert task.extract("first \\boxed{1} then \\boxed{ 3 }") == "3"
    assert task.extract("hence \\boxed 7.") == "7"
    assert task.extract("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.") == "\\frac{3}{4}"
    assert task.extract("Final Answer: The final answer is 2.5. I hope it is correct.") == "2.5"
    assert task.extract("Therefore the answer is 12.") == "12"
    assert task.extract("no answer stated, maybe 42") is None
    assert task.extract("") is None
    assert MathTask(last_number_fallback=True).extract("no answer stated, maybe 42") == "42"
    assert task.equivalent(task.extract("The answer is $\\boxed{0.5}$"), "\\frac{1}{2}")
    assert not task.equivalent(None, "1")


def test_boxed():
    assert boxed("a \\boxed{x^{2}} b") == "x^{2}"
    assert boxed("$\\boxed 2$.") == "2"
    assert boxed("\\boxed{}") is None
    assert boxed("nothing") is None


# --- bad input -------------------------------------------------------------------------------


def _row(q: str, sol: str) -> str:
    return json.dumps({"question": q, "answer": sol, "level": "Level 1", "type": "Algebra"})


def _fixture(tmp_path: Path, test_lines: list[str], train_lines: list[str] | None = None) -> Path:
    math = tmp_path / "math"
    (math / "full_test_5000").mkdir(parents=True)
    (math / "full_test_5000" / "test.jsonl").write_text("\n".join(test_lines) + "\n")
    if train_lines is not None:
        sub = tmp_path / "tdg" / "GPT3.5-turbo-MATH" / "train_gpt3.5_algebra_8"
        sub.mkdir(parents=True)
        (sub / "0.jsonl").write_text("\n".join(train_lines) + "\n")
    return math


def test_bad_rows(tmp_path):
    good = _row("What is $1+1$?", "It is $\\boxed{2}$.")
    math = _fixture(
        tmp_path,
        [good, "{broken", json.dumps({"question": "q?"}), _row("No box?", "It is 3."), _row("What is $2+2$?", "$\\boxed{4}$"),
         _row("What is  $1+1$?", "again $\\boxed{2}$")],
    )
    with pytest.raises(UserError, match=r"full_test_5000/test\.jsonl:2: invalid JSON") as e:
        MathTask(data_dir=str(tmp_path)).load("test")
    assert "\n" not in str(e.value)
    task = MathTask(data_dir=str(math), skip_bad=True)
    loaded = task.load("test")
    assert [e.answer for e in loaded] == ["2", "4"]
    skipped = task.skipped()
    assert len(skipped) == 4
    assert "test.jsonl:2: invalid JSON" in skipped[0]
    assert "test.jsonl:3: missing field 'answer'" in skipped[1]
    assert "test.jsonl:4: solution has no \\boxed{} answer" in skipped[2]
    assert "test.jsonl:6: duplicate problem" in skipped[3] and "test.jsonl:1" in skipped[3]


def test_missing_field_and_box_name_line(tmp_path):
    _fixture(tmp_path, [_row("ok?", "\\boxed{1}"), json.dumps({"answer": "\\boxed{3}"})])
    with pytest.raises(UserError, match=r"test\.jsonl:2: missing field 'question'$"):
        MathTask(data_dir=str(tmp_path)).load("test")


def test_train_from_tdg_fixture(tmp_path):
    test = [_row("What is $1+1$?", "$\\boxed{2}$")]
    train = [
        json.dumps({"question": "Problem:\nWhat is $3+3$?", "answer": "$\\boxed{6}$", "level": "Level 2", "type": "Algebra"}),
        json.dumps({"question": "Problem:\nWhat is $1+1$?\n", "answer": "$\\boxed{2}$", "level": "Level 1", "type": "Algebra"}),
        json.dumps({"question": "Problem:\nBad?", "answer": "no box"}),
    ]
    _fixture(tmp_path, test, train)
    with pytest.raises(UserError, match=r"0\.jsonl:3: solution has no \\boxed"):
        MathTask(data_dir=str(tmp_path)).load("train")
    task = MathTask(data_dir=str(tmp_path), skip_bad=True)
    got = task.load("train") + task.load("valid")
    assert [(e.question, e.answer, e.meta["level"]) for e in got] == [("What is $3+3$?", "6", 2)]
    assert len(task.dropped()) == 1 and "already in the test set" in task.dropped()[0]
    assert len(task.skipped()) == 1


def test_missing_train_is_one_line_error(tmp_path):
    _fixture(tmp_path, [_row("What is $1+1$?", "$\\boxed{2}$")])
    task = MathTask(data_dir=str(tmp_path))
    assert len(task.load("test")) == 1
    for split in ("train", "valid"):
        with pytest.raises(UserError, match="no MATH train data") as e:
            task.load(split)
        assert "\n" not in str(e.value)
    assert task.skipped() == []
    with pytest.raises(UserError, match="needs data_dir"):
        MathTask().load("test")
    with pytest.raises(UserError, match="not both"):
        MathTask(data_dir=str(tmp_path), hf_dataset="x/y")
    with pytest.raises(UserError, match="unknown option"):
        get_task("math", tdg=str(tmp_path))


# --- Hugging Face layout ---------------------------------------------------------------------

_CONFIG_OF = {
    "Algebra": "algebra", "Counting & Probability": "counting_and_probability", "Geometry": "geometry",
    "Intermediate Algebra": "intermediate_algebra", "Number Theory": "number_theory",
    "Prealgebra": "prealgebra", "Precalculus": "precalculus",
}


def _pick(rows: list[dict], per_subject: int) -> list[dict]:
    out, seen = [], Counter()
    for r in rows:
        if seen[r["type"]] < per_subject:
            seen[r["type"]] += 1
            out.append(r)
    return out


def _core(e):
    return (e.id, e.question, e.answer, e.rationale, e.meta["level"], e.meta["subject"])


def test_hub_math_matches_files(tmp_path, math_splits, root):
    from tests.tasks.hub_fixture import write_hub_dataset

    _, splits = math_splits
    test_rows = _pick(_raw(root / "math/full_test_5000/test.jsonl"), 2)
    train_rows = []
    for sub in sorted(TDG.iterdir()):
        train_rows += [r for r in _raw(sub / "0.jsonl")[:3]]
    configs: dict = {c: {"train": [], "test": []} for c in SUBJECT_CONFIGS}
    for r in test_rows:
        configs[_CONFIG_OF[r["type"]]]["test"].append(
            {"problem": r["question"], "level": r["level"], "type": r["type"], "solution": r["answer"]}
        )
    for r in train_rows:
        configs[_CONFIG_OF[r["type"]]]["train"].append(
            {"problem": r["question"].removeprefix("Problem:\n"), "level": r["level"], "type": r["type"], "solution": r["answer"]}
        )
    write_hub_dataset(tmp_path / "hub", configs)
    task = get_task("math", hf_dataset=str(tmp_path / "hub"))
    hub_test = task.load("test")
    by_id = {e.id: e for e in splits["test"]}
    assert len(hub_test) == 14
    assert [_core(e) for e in hub_test] == [_core(by_id[e.id]) for e in hub_test]
    assert hub_test[0].meta["hf_config"] == "algebra"
    file_train = {e.id: e for e in splits["train"] + splits["valid"]}
    hub_train = task.load("train") + task.load("valid")
    assert len(hub_train) == 21
    assert [_core(e) for e in hub_train] == [_core(file_train[e.id]) for e in hub_train]
    # The same hash split: an example is in valid on the hub iff it is in valid from the files.
    valid_ids = {e.id for e in splits["valid"]}
    assert {e.id for e in task.load("valid")} == {e.id for e in hub_train if e.id in valid_ids}


def test_hub_math500_matches_files(tmp_path, m500, root):
    from tests.tasks.hub_fixture import write_hub_dataset

    rows = _raw(root / "math/prm800k_math_splits/test.jsonl")[:6]
    write_hub_dataset(tmp_path / "hub", {"default": {"test": [{k: v for k, v in r.items()} for r in rows]}})
    task = get_task("math500", hf_dataset=str(tmp_path / "hub"))
    got = task.load("test")
    want = m500[1][:6]
    assert [_core(e) + (e.meta["unique_id"],) for e in got] == [_core(e) + (e.meta["unique_id"],) for e in want]
    with pytest.raises(UserError, match="only a test split; train with task 'math'") as e:
        task.load("train")
    assert "\n" not in str(e.value)


def test_hub_bad_row_named(tmp_path):
    from tests.tasks.hub_fixture import write_hub_dataset

    configs = {c: {"test": [{"problem": "p?", "level": "Level 1", "type": "Algebra", "solution": "\\boxed{1}"}]} for c in SUBJECT_CONFIGS}
    configs["geometry"]["test"] = [{"problem": "q?", "level": "Level 1", "type": "Geometry", "solution": "none"}]
    write_hub_dataset(tmp_path / "hub", configs)
    with pytest.raises(UserError, match=r"\[geometry:test\] row 0: solution has no \\boxed"):
        MathTask(hf_dataset=str(tmp_path / "hub")).load("test")


def test_hub_default_ids():
    assert HF_MATH == "EleutherAI/hendrycks_math"
    assert problem_id("a  b\n c") == problem_id(" a b c ")
