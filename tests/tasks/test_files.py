import json

import pytest

from harness.errors import UserError
from tasks import files


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n{not json\n[1, 2]\n\n{"a": 4}\n')
    with pytest.raises(UserError, match=r"x\.jsonl:2: invalid JSON"):
        files.read_jsonl(p)
    rows, skipped = files.read_jsonl(p, skip_bad=True)
    assert [r["a"] for r in rows] == [1, 4]
    assert [r["_line"] for r in rows] == [1, 5]
    assert len(skipped) == 2
    assert "x.jsonl:2:" in skipped[0] and "x.jsonl:3: expected a JSON object" in skipped[1]


def test_read_json_list_errors(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps([{"a": 1}, 5, {"a": 3}]))
    with pytest.raises(UserError, match=r"x\.json:record 1: expected a JSON object"):
        files.read_json_list(p)
    rows, skipped = files.read_json_list(p, skip_bad=True)
    assert [r["a"] for r in rows] == [1, 3] and len(skipped) == 1
    p.write_text('[{"a": 1},\n{"a": ]')
    with pytest.raises(UserError, match=r"x\.json:2: invalid JSON"):
        files.read_json_list(p, skip_bad=True)  # a broken array cannot be partly read
    p.write_text('{"a": 1}')
    with pytest.raises(UserError, match="expected a JSON array"):
        files.read_json_list(p)


def test_require():
    assert files.require({"a": "x"}, "a", "f:1", str) == "x"
    with pytest.raises(files.RowError, match=r"^f:1: missing field 'b'$"):
        files.require({"a": 1}, "b", "f:1")
    with pytest.raises(files.RowError, match="field 'a' has type int"):
        files.require({"a": 1}, "a", "f:1", str)


def test_resolve_data_dir(tmp_path):
    with pytest.raises(UserError) as e:
        files.resolve_data_dir(None, "gsm8k", "train.jsonl and test.jsonl")
    msg = str(e.value)
    assert msg == (
        "task 'gsm8k' needs data_dir: the folder holding train.jsonl and test.jsonl "
        "(see README: Data)"
    )
    with pytest.raises(UserError, match="is not a folder") as e:
        files.resolve_data_dir(str(tmp_path / "nope"), "gsm8k", "train.jsonl")
    assert "\n" not in str(e.value)
    assert files.resolve_data_dir(str(tmp_path), "t", "x") == tmp_path


def test_hash_split_deterministic_and_about_share():
    ids = [f"id-{i}" for i in range(5000)]
    a = files.hash_split(ids, 0.1, "s")
    assert a == files.hash_split(reversed(ids), 0.1, "s")  # order does not matter
    assert a == files.hash_split(ids + ["extra"], 0.1, "s") - {"extra"}  # stable under growth
    assert 400 < len(a) < 600
    assert a != files.hash_split(ids, 0.1, "other salt")
    assert files.hash_split(ids, 0, "s") == set() and files.hash_split(ids, 1, "s") == set(ids)
    with pytest.raises(ValueError):
        files.hash_split(ids, 1.5, "s")


@pytest.mark.parametrize(
    "raw, want", [(39.0, "39"), (0.5, "0.5"), ("43", "43"), (7, "7"), ("1,000", "1000"), (-2.0, "-2")]
)
def test_number_answer(raw, want):
    assert files.number_answer(raw, "f:1") == want


@pytest.mark.parametrize("raw", ["abc", True, None, float("nan")])
def test_number_answer_rejects(raw):
    with pytest.raises(files.RowError, match="^f:1: answer"):
        files.number_answer(raw, "f:1")
