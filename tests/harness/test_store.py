import os

import pytest

from harness.store import Store, atomic_write_text, content_key, read_jsonl, write_jsonl


def test_content_key_is_order_independent_and_sensitive():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})
    assert len(content_key({})) == 16


def test_jsonl_roundtrip_and_atomic_replace(tmp_path):
    p = tmp_path / "x" / "rows.jsonl"
    write_jsonl(p, [{"a": 1}, {"b": "ü"}])
    assert read_jsonl(p) == [{"a": 1}, {"b": "ü"}]
    atomic_write_text(p, '{"c": 3}\n')
    assert read_jsonl(p) == [{"c": 3}]
    assert os.listdir(p.parent) == ["rows.jsonl"]  # no temp files left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "rows.jsonl"
    write_jsonl(p, [{"a": 1}])

    def rows():
        yield {"b": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(p, rows())
    assert read_jsonl(p) == [{"a": 1}] and os.listdir(tmp_path) == ["rows.jsonl"]


def test_atomic_dir_only_appears_on_success(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.atomic_dir("checkpoints", "k1") as d:
            (d / "half").write_text("x")
            raise RuntimeError("killed")
    assert not store.dir("checkpoints", "k1").exists()
    assert not any(p.name.startswith(".k1") for p in (tmp_path / "checkpoints").iterdir())
    with store.atomic_dir("checkpoints", "k1") as d:
        (d / "done").write_text("x")
    assert (store.dir("checkpoints", "k1") / "done").read_text() == "x"


def test_store_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLBENCH_HOME", str(tmp_path / "home"))
    s = Store()
    assert s.root == (tmp_path / "home").resolve() and s.root.is_dir()
    assert s.tracking_uri == f"sqlite:///{s.root / 'mlflow.db'}"
