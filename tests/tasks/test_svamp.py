import json
from pathlib import Path

import pytest
from hub_fixture import write_hub_dataset  # tests/tasks is on sys.path (rootdir conftest)

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
    opts = {"data_dir": str(tmp_path), "split_source": "dss", "dss_dir": str(tmp_path)}
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


# --- data root, DSS default, gold self-checks, Hugging Face source --------------------------

def _raw(dirs):
    return json.loads((Path(dirs[0]) / "SVAMP.json").read_text())


def test_data_root_and_default_dss_dir(dirs):
    full = get_task("svamp", data_dir=dirs[0]).load("test")
    assert get_task("svamp", data_dir=str(DATA)).load("test") == full  # shared/data, holding svamp/
    explicit = get_task("svamp", data_dir=dirs[0], split_source="dss", dss_dir=dirs[1])
    for data_dir in (dirs[0], str(DATA), dirs[1]):  # task folder, data root, the DSS folder itself
        task = get_task("svamp", data_dir=data_dir, split_source="dss")  # dss_dir defaulted
        for split in ("train", "valid", "test"):
            assert task.load(split) == explicit.load(split), (data_dir, split)


def test_gold_equals_itself_on_every_row(dirs):
    task = get_task("svamp", data_dir=dirs[0])
    test = task.load("test")
    raw = _raw(dirs)
    assert len(raw) == len(test) == 1000
    for ex, row in zip(test, raw, strict=True):
        written = str(row["Answer"])  # a float as written, e.g. "51.0"
        assert task.equivalent(written, ex.answer), (ex.id, written, ex.answer)
        assert task.equivalent(ex.answer, ex.answer) and task.canonical(ex.answer) == ex.answer
        assert ex.rationale is None  # SVAMP has no gold rationale
        assert task.equivalent(task.extract(f"{ex.question} The answer is {written}."), ex.answer)


def _hub_rows(rows):
    return [{**r, "question_concat": f"{r['Body']} {r['Question']}"} for r in rows]


def test_hub_gives_the_same_examples_as_the_file(dirs, tmp_path):
    raw = _raw(dirs)
    root = write_hub_dataset(
        tmp_path / "svamp-hub", {"default": {"train": _hub_rows(raw[:40]), "test": _hub_rows(raw[40:55])}}
    )
    task = get_task("svamp", hf_dataset=str(root))
    full = {e.id: e for e in get_task("svamp", data_dir=dirs[0]).load("test")}
    test, train, valid = task.load("test"), task.load("train"), task.load("valid")
    assert [e.id for e in test] == [f"svamp-{r['ID']}" for r in raw[40:55]]
    assert all(full[e.id] == e for e in test + train + valid)  # same Example, meta included
    assert sorted(e.id for e in train + valid) == sorted(f"svamp-{r['ID']}" for r in raw[:40])
    assert valid and not {e.id for e in train} & {e.id for e in valid}
    # valid membership is the same hash rule as the DSS split: it depends on the id alone
    dss = get_task("svamp", data_dir=dirs[0], split_source="dss", dss_dir=dirs[1])
    dss_valid = {e.id for e in dss.load("valid")}
    dss_train = {e.id for e in dss.load("train")}
    assert not {e.id for e in valid} & dss_train and not {e.id for e in train} & dss_valid


def test_hub_bad_rows_and_options(tmp_path, caplog):
    good = {"ID": "a-1", "Body": "B.", "Question": "Q?", "Equation": "( 1.0 + 1.0 )", "Answer": 2.0, "Type": "Addition"}
    rows = [good, {**good, "ID": "a-2", "Answer": None}, {**good, "ID": "a-1"}, {**good, "ID": "a-3"}]
    root = write_hub_dataset(tmp_path / "h", {"default": {"train": rows, "test": [{**good, "ID": "t-1"}]}})
    with pytest.raises(UserError, match=r"h\[train\] row 1: missing field 'Answer'$") as e:
        get_task("svamp", hf_dataset=str(root)).load("test")
    assert "\n" not in str(e.value)
    task = get_task("svamp", hf_dataset=str(root), skip_bad=True)
    with caplog.at_level("WARNING", logger="distillbench.tasks"):
        assert sorted(e.id for e in task.load("train") + task.load("valid")) == ["svamp-a-1", "svamp-a-3"]
    assert [e.id for e in task.load("test")] == ["svamp-t-1"]
    skipped = task.skipped()
    assert [m.split(": ", 1)[0].rsplit("]", 1)[1] for m in skipped] == [" row 1", " row 2"]
    assert "duplicate id 'svamp-a-1'" in skipped[1] and "row 2" in caplog.text
    leak = write_hub_dataset(tmp_path / "leak", {"default": {"train": [good], "test": [good]}})
    with pytest.raises(UserError, match="train and test share 1 problems, e.g. svamp-a-1"):
        get_task("svamp", hf_dataset=str(leak)).load("test")
    with pytest.raises(UserError, match="with hf_dataset the hub's own train/test split") as e:
        get_task("svamp", hf_dataset="ChilleD/SVAMP", split_source="dss")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not both"):
        get_task("svamp", hf_dataset="ChilleD/SVAMP", data_dir=str(tmp_path))
    only_test = write_hub_dataset(tmp_path / "t", {"default": {"test": [good]}})
    with pytest.raises(UserError, match=r"split 'train': cannot load") as e:
        get_task("svamp", hf_dataset=str(only_test)).load("test")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"'ChilleD/SVAMP'.*cannot load.*offline") as e:
        get_task("svamp", hf_dataset="ChilleD/SVAMP").load("test")
    assert "\n" not in str(e.value)


# --- label: equation (the DSS / QCRD label) ------------------------------------------------------


def test_equation_labels_are_the_dss_labels(dirs):
    """With label: equation the gold answer is SVAMP's Equation, exactly DSS's label string, and
    answers are compared by exact value."""
    task = get_task("svamp", data_dir=dirs[0], split_source="dss", dss_dir=dirs[1], label="equation")
    number = get_task("svamp", data_dir=dirs[0], split_source="dss", dss_dir=dirs[1])
    dss_rows = [json.loads(line) for line in (Path(dirs[1]) / "svamp_test.json").read_text().splitlines() if line.strip()]
    test = task.load("test")
    assert [ex.answer for ex in test] == [r["label"] for r in dss_rows]
    assert [ex.id for ex in test] == [ex.id for ex in number.load("test")]
    pairs = zip(task.load("train") + test, number.load("train") + number.load("test"), strict=True)
    mismatched = [ex.id for ex, n in pairs if not task.equivalent(n.answer, ex.answer)]
    assert mismatched == ["svamp-chal-680"]  # the one row whose Equation and Answer disagree (5 vs 1)
    full = {e.id: e for e in get_task("svamp", data_dir=dirs[0], label="equation").load("test")}
    assert full["svamp-chal-680"].answer == "( ( 4.0 - 2.0 ) + 3.0 )" and full["svamp-chal-680"].meta["answer_number"] == "1"


def test_equation_labels_extract_and_compare_by_value(dirs):
    task = get_task("svamp", data_dir=dirs[0], label="equation")
    gold = "( 84.0 / 2.0 )"
    # the predict head writes the bare expression; a chain states it
    assert task.extract("( 84.0 / 2.0 )") == gold
    assert task.extract("He scored 84 in 2 rounds. The answer is (84 / 2).") == "(84 / 2)"
    assert task.extract("84 / 2 = 42 so 42") == "42"  # no expression as a whole: the last number
    for same in ("(84 / 2)", "42", "42.0", "(21 * 2)", "( ( 84.0 / 2.0 ) )"):
        assert task.equivalent(same, gold), same
    for other in ("(84 * 2)", "41", "(84 / 0)", "", "x + 1"):
        assert not task.equivalent(other, gold), other
    assert task.canonical("( 84.0 / 2.0 )") == task.canonical("(21 * 2)") == "42"
    assert task.canonical("(1 / 3)") == "1/3"


def test_equation_labels_never_eval(dirs, tmp_path):
    """Model output is data: code in an 'equation' is not an arithmetic expression, so it is
    never run, and compares unequal."""
    task = get_task("svamp", data_dir=dirs[0], label="equation")
    marker = tmp_path / "ran"
    payloads = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        f"(1).__class__.__base__.__subclasses__() or open({str(marker)!r}, 'w')",
        "(9 ** 9 ** 9)",  # powers are not in the grammar: no huge computation either
        "(" * 300 + "1" + ")" * 300,
    ]
    for p in payloads:
        assert not task.equivalent(p, "( 84.0 / 2.0 )")
        task.canonical(p)
        task.extract(p)
    assert not marker.exists()


def test_equation_label_is_checked(dirs):
    with pytest.raises(UserError, match="label"):
        get_task("svamp", data_dir=dirs[0], label="formula")
