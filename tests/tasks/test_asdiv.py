import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import get_task
from tasks.asdiv import ASDivATask, ASDivTask, _load, asdiv_canonical, asdiv_equivalent

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def folder():
    d = DATA / "asdiv"
    if not (d / "ASDiv.xml").is_file():
        pytest.skip(f"ASDiv data not found at {d} (shared/data is missing)")
    return d


@pytest.fixture(scope="module")
def asdiv(folder):
    task = get_task("asdiv", data_dir=str(DATA))  # the data root works as data_dir too
    return task, task.load("test")


def _raw_answers(folder: Path) -> dict[str, str]:
    root = ET.parse(folder / "ASDiv.xml").getroot()
    return {p.get("ID"): p.findtext("Answer") for p in root.iter("Problem")}


def test_counts_and_ids(asdiv, folder):
    task, test = asdiv
    assert len(test) == 2305
    assert task.load("train") == [] and task.load("valid") == []
    assert test[0].id == "asdiv-nluds-0001"
    assert test[0].question == "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    assert test[0].answer == "9" and test[0].meta["raw_answer"] == "9 (apples)"
    assert len({e.id for e in test}) == 2305
    a = get_task("asdiv_a", data_dir=str(folder)).load("test")
    assert len(a) == 1218
    assert {e.id for e in a} <= {e.id for e in test}
    _load.cache_clear()
    assert [e.to_dict() for e in ASDivTask(data_dir=str(DATA)).load("test")] == [e.to_dict() for e in test]


def test_gold_equals_raw_answer(asdiv, folder):
    """Every gold checks equal to its raw <Answer> text, for both tasks."""
    raw = _raw_answers(folder)
    for task, examples in (asdiv, (ASDivATask(data_dir=str(folder)), ASDivATask(data_dir=str(folder)).load("test"))):
        for e in examples:
            written = raw[e.meta["problem_id"]]
            assert task.equivalent(written, e.answer), (e.id, written, e.answer)
            assert task.canonical(written) == e.answer == task.canonical(e.answer)


def test_answer_categories():
    assert asdiv_canonical("9 (apples)") == "9"
    assert asdiv_canonical("14  (seats)") == "14"
    assert asdiv_canonical("0.46 (dollars)") == "0.46"
    assert asdiv_canonical("-(1/3)") == "-1/3"
    assert asdiv_canonical("5/2") == "2.5"
    assert asdiv_canonical("8 (ft); 128 (sq. ft)") == "8; 128"
    assert asdiv_canonical("3:30 p.m.") == "3:30 pm"
    assert asdiv_canonical("Mrs. Hilt") == "mrs. hilt"
    assert asdiv_canonical("3:2") == "3:2"
    eq = asdiv_equivalent
    assert eq("9", "9") and eq("9 apples", "9") and eq("9.0", "9")
    assert eq("5, 15 and 20", "5; 15; 20") and eq("5 years; 15 years; 20", "5; 15; 20")
    assert not eq("15; 5", "5; 15") and not eq("5", "5; 15")
    assert eq("3:30 PM", "3:30 pm") and eq("3 : 2", "3:2") and not eq("6:4", "3:2")
    assert eq("mrs. hilt.", "mrs. hilt") and eq("YES", "yes") and not eq("no", "yes")
    assert eq("0.4", "2/5") and not eq(None, "1")


def test_folds(folder, asdiv):
    all_ids = {e.id for e in asdiv[1]}
    for name, n_total in (("asdiv", 2305), ("asdiv_a", 1218)):
        tests = []
        for k in range(5):
            t = get_task(name, data_dir=str(folder), fold=k)
            s = {x: t.load(x) for x in ("train", "valid", "test")}
            ids = [{e.id for e in s[x]} for x in ("train", "valid", "test")]
            assert sum(len(i) for i in ids) == n_total
            assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
            assert 0 < len(ids[1]) < len(ids[0])
            listed = (folder / "nfolds" / ("asdiv-w" if name == "asdiv" else "asdiv-a") / f"fold{k}.txt").read_text().split()
            assert ids[2] == {f"asdiv-{i}" for i in listed}
            tests.append(ids[2])
        assert set().union(*tests) <= all_ids and len(set().union(*tests)) == n_total
    with pytest.raises(UserError, match="fold must be 0-4"):
        get_task("asdiv", data_dir=str(folder), fold=5)


def test_prompt(asdiv):
    task, test = asdiv
    ex = test[0]
    p = task.prompt(ex)
    assert p.count("Q: ") == 5 and p.endswith(f"Q: {ex.question}\nA:")
    assert task.student_input(ex) == ex.question
    assert task.extract("so 7 + 2 = 9. The answer is 9.") == "9"
    assert task.equivalent(task.extract("The answer is 3:30 p.m."), "3:30 pm")


# --- bad input -------------------------------------------------------------------------------

_PROBLEM = (
    '<Problem ID="{id}" Grade="1" Source="x"><Body>{body}</Body><Question>How many?</Question>'
    "<Solution-Type>Addition</Solution-Type>{answer}<Formula>1+1=2</Formula></Problem>"
)


def _xml(tmp_path: Path, problems: list[str]) -> Path:
    (tmp_path / "ASDiv.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8" ?>\n<Machine-Reading-Corpus-File>\n<ProblemSet>\n'
        + "\n".join(problems) + "\n</ProblemSet>\n</Machine-Reading-Corpus-File>\n"
    )
    return tmp_path


def test_bad_problems(tmp_path):
    _xml(tmp_path, [
        _PROBLEM.format(id="nluds-0001", body="Two apples.", answer="<Answer>2 (apples)</Answer>"),
        _PROBLEM.format(id="nluds-0002", body="No answer.", answer=""),
        _PROBLEM.format(id="nluds-0003", body="Three.", answer="<Answer>3</Answer>"),
        _PROBLEM.format(id="nluds-0001", body="Again.", answer="<Answer>4</Answer>"),
    ])
    with pytest.raises(UserError, match=r"ASDiv\.xml: Problem nluds-0002 \(#2\): missing <Answer>$"):
        ASDivTask(data_dir=str(tmp_path)).load("test")
    task = ASDivTask(data_dir=str(tmp_path), skip_bad=True)
    assert [(e.id, e.answer) for e in task.load("test")] == [("asdiv-nluds-0001", "2"), ("asdiv-nluds-0003", "3")]
    skipped = task.skipped()
    assert len(skipped) == 2 and "nluds-0002 (#2): missing <Answer>" in skipped[0]
    assert "duplicate ID 'nluds-0001'" in skipped[1]


def test_malformed_xml(tmp_path):
    (tmp_path / "ASDiv.xml").write_text("<ProblemSet>\n<Problem ID='a'>\n<Body>x</Problem>\n</ProblemSet>\n")
    with pytest.raises(UserError, match=r"ASDiv\.xml:3: malformed XML") as e:
        ASDivTask(data_dir=str(tmp_path), skip_bad=True).load("test")
    assert "\n" not in str(e.value)


def test_missing_folds_and_data(tmp_path):
    _xml(tmp_path, [_PROBLEM.format(id="nluds-0001", body="B.", answer="<Answer>1</Answer>")])
    assert len(ASDivTask(data_dir=str(tmp_path)).load("test")) == 1
    with pytest.raises(UserError, match=r"nfolds/asdiv-a/fold0\.txt not found"):
        ASDivATask(data_dir=str(tmp_path)).load("test")
    (tmp_path / "nfolds" / "asdiv-a").mkdir(parents=True)
    for k in range(5):
        (tmp_path / "nfolds" / "asdiv-a" / f"fold{k}.txt").write_text("nluds-0001\n" if k == 0 else f"nluds-099{k}\n")
    with pytest.raises(UserError, match="lists 4 IDs not in ASDiv.xml"):
        ASDivATask(data_dir=str(tmp_path)).load("test")
    (tmp_path / "nfolds" / "asdiv-a" / "fold2.txt").write_text("nluds-0991\n")
    with pytest.raises(UserError, match="'nluds-0991' is listed in fold1 and fold2"):
        ASDivATask(data_dir=str(tmp_path), fold=1).load("test")
    with pytest.raises(UserError, match="needs data_dir"):
        ASDivTask().load("test")


# --- Hugging Face layout ---------------------------------------------------------------------


def test_hub_matches_file(tmp_path, folder, asdiv):
    from tests.tasks.hub_fixture import write_hub_dataset

    root = ET.parse(folder / "ASDiv.xml").getroot()
    picks = [p for p in root.iter("Problem") if p.get("ID") in {"nluds-0001", "nluds-0166", "nluds-0676", "nluds-0677", "nluds-1295", "nluds-1331", "nluds-0850"}]
    rows = [
        {"body": p.findtext("Body"), "question": p.findtext("Question"), "solution_type": p.findtext("Solution-Type"),
         "answer": p.findtext("Answer"), "formula": p.findtext("Formula")}
        for p in picks
    ]
    write_hub_dataset(tmp_path / "hub", {"asdiv": {"validation": rows}})
    task = get_task("asdiv", hf_dataset=str(tmp_path / "hub"))
    got = task.load("test")
    by_pid = {e.meta["problem_id"]: e for e in asdiv[1]}
    want = [by_pid[p.get("ID")] for p in picks]
    assert [(e.question, e.answer, e.meta["raw_answer"], e.meta["content_id"]) for e in got] == [
        (e.question, e.answer, e.meta["raw_answer"], e.meta["content_id"]) for e in want
    ]
    ids = [e.id for e in got]
    assert all(i.startswith("asdiv-h") for i in ids) and len(set(ids)) == len(ids)
    assert ids[3] == ids[2] + "-2"  # nluds-0676 and -0677 are the same problem
    for opts in ({"fold": 0}, {}):
        name = "asdiv" if opts else "asdiv_a"
        with pytest.raises(UserError, match="needs problem IDs") as e:
            get_task(name, hf_dataset=str(tmp_path / "hub"), **opts)
        assert "\n" not in str(e.value)
