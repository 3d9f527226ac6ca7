"""tasks/hub.py: the shared Hugging Face loading path, on local folders in the hub's layout."""

import pytest
from hub_fixture import write_hub_dataset

from harness.errors import UserError
from tasks import hub

ROWS = [{"uid": f"u{i}", "label": i % 3, "premise": f"p{i}"} for i in range(5)]


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_rows_keep_fields_and_order_with_row_index(tmp_path, fmt):
    root = write_hub_dataset(tmp_path, {"plain_text": {"train_r1": ROWS, "test_r1": ROWS[:2]}}, fmt=fmt)
    rows = hub.load_rows(str(root), "train_r1", task="anli", config="plain_text")
    assert [r["uid"] for r in rows] == [r["uid"] for r in ROWS]
    assert [r["_line"] for r in rows] == list(range(5))
    assert rows[2] == {**ROWS[2], "_line": 2}


def test_unknown_split_and_config_are_one_line_errors(tmp_path):
    root = write_hub_dataset(tmp_path, {"plain_text": {"test_r1": ROWS}})
    with pytest.raises(UserError, match=r"split 'test': cannot load: Unknown split \"test\".*test_r1") as e:
        hub.load_rows(str(root), "test", task="anli")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="config 'nope'.*cannot load"):
        hub.load_rows(str(root), "test_r1", task="anli", config="nope")


@pytest.mark.timeout(60)  # HF_HUB_OFFLINE=1 (conftest): a hang here means the hub was tried
def test_hub_id_offline_fails_with_a_hint():
    with pytest.raises(UserError, match=r"'facebook/anli'.*cannot load.*offline") as e:
        hub.load_rows("facebook/anli", "test_r1", task="anli")
    assert "\n" not in str(e.value)


def test_missing_local_folder_says_so(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        hub.load_rows(str(tmp_path / "nope"), "test", task="gsm8k")


def test_where_names_dataset_config_split_and_row():
    assert hub.where("openai/gsm8k", "main", "test", 7) == "openai/gsm8k[main:test] row 7"
    assert hub.where("esnli", None, "validation", 0) == "esnli[validation] row 0"


def test_check_source():
    hub.check_source("gsm8k", None, None)
    hub.check_source("gsm8k", None, "openai/gsm8k")
    with pytest.raises(UserError, match="not both"):
        hub.check_source("gsm8k", "/data", "openai/gsm8k")
    with pytest.raises(UserError, match="hf_dataset must be"):
        hub.check_source("gsm8k", None, 3)
