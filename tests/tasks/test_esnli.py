import json
import shutil
from pathlib import Path

import pytest
from hub_fixture import write_hub_dataset  # tests/tasks is on sys.path (rootdir-relative import)

from harness.errors import UserError
from tasks import get_task, nli

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TEXT = DATA / "esnli" / "eSNLI"
STEMS = ("s1", "s2", "labels", "preproc1_expl_1", "preproc1_expl_2", "preproc1_expl_3")


def _jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def data_dir():
    d = DATA / "dss" / "datasets" / "esnli"
    if not (d / "esnli_test.json").is_file() or not (d / "esnli_valid.json").is_file():
        pytest.skip(f"e-SNLI data not found under {d} (shared/data is missing)")
    return str(d)


@pytest.fixture(scope="module")
def splits(data_dir):
    task = get_task("esnli", data_dir=data_dir)
    return task, {k: task.load(k) for k in ("valid", "test")}


@pytest.fixture(scope="module")
def text_splits():
    if not all((TEXT / f"{s}.{x}").is_file() for s in STEMS for x in ("dev", "test")):
        pytest.skip(f"e-SNLI text files not found under {TEXT}")
    task = get_task("esnli", data_dir=str(TEXT))
    return task, {k: task.load(k) for k in ("valid", "test")}


def test_counts_ids_gold(splits, data_dir):
    task, s = splits
    assert (len(s["valid"]), len(s["test"])) == (9842, 9824)
    ids = [e.id for k in s for e in s[k]]
    assert len(set(ids)) == 9842 + 9824
    assert s["test"][0].id == "esnli-test-0" and s["valid"][-1].id == "esnli-valid-9841"
    for split in s:
        raw = _jsonl(Path(data_dir) / f"esnli_{split}.json")
        for ex, row in zip(s[split], raw, strict=True):
            assert task.equivalent(ex.answer, ex.answer)
            assert task.equivalent(nli.LABELS[row["label"]], ex.answer)
            assert ex.rationale == (row["explanation_1"].strip() or None)


def test_text_source_agrees_with_dss(splits, text_splits):
    """The repo's line-aligned files: same sizes and ids as the DSS export, and the same label
    on every line; the raw label word checks equal to the gold."""
    _, d = splits
    task, t = text_splits
    for split, suffix in (("valid", "dev"), ("test", "test")):
        assert [e.id for e in t[split]] == [e.id for e in d[split]]
        assert [e.answer for e in t[split]] == [e.answer for e in d[split]]
        words = (TEXT / f"labels.{suffix}").read_text().split("\n")[: len(t[split])]
        expl = (TEXT / f"preproc1_expl_1.{suffix}").read_text().split("\n")
        assert len(expl) == len(t[split])  # no trailing newline: the last record is kept
        for ex, word, e1 in zip(t[split], words, expl, strict=True):
            assert task.equivalent(word, ex.answer) and task.equivalent(ex.answer, ex.answer)
            assert ex.rationale == (e1.strip() or None)
    first = t["test"][0]
    assert first.question.startswith("Premise: This church choir") and first.question.endswith("ceiling .")
    assert first.rationale == "not all churches have cracks in the ceiling"


def test_data_root_and_source_option(splits, text_splits):
    assert get_task("esnli", data_dir=str(DATA)).load("test") == splits[1]["test"]  # DSS first
    assert get_task("esnli", data_dir=str(DATA), source="text").load("test") == text_splits[1]["test"]
    assert get_task("esnli", data_dir=str(DATA / "esnli")).load("valid") == text_splits[1]["valid"]
    with pytest.raises(UserError, match="source"):
        get_task("esnli", source="csv")


def test_train_missing_is_user_error(splits, text_splits):
    with pytest.raises(UserError, match=r"no train split: esnli_train\.json is not in") as e:
        splits[0].load("train")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"no train split: s1/s2/labels/preproc1_expl_\{1,2,3\}\.train are not in"):
        text_splits[0].load("train")


def test_extract_teacher_format():
    task = get_task("esnli")
    assert task.extract("The choir does not imply cracks.\nAnswer: neutral\n\n") == "neutral"


def test_bad_rows(tmp_path):
    good = {"premise": "P.", "hypothesis": "H.", "label": 2, "explanation_1": "E."}
    (tmp_path / "esnli_valid.json").write_text(json.dumps(good) + "\n")
    (tmp_path / "esnli_test.json").write_text(
        json.dumps(good) + "\n" + json.dumps({**good, "label": "maybe"}) + "\n{oops\n"
        + json.dumps({"premise": "P.", "label": 0}) + "\n"
    )
    with pytest.raises(UserError, match=r"esnli_test\.json:3: invalid JSON"):  # read before converted
        get_task("esnli", data_dir=str(tmp_path)).load("test")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "esnli_valid.json").write_text(json.dumps(good) + "\n")
    (tmp_path / "one" / "esnli_test.json").write_text(json.dumps({**good, "label": "maybe"}) + "\n")
    with pytest.raises(UserError, match=r"esnli_test\.json:1: unknown label 'maybe'"):
        get_task("esnli", data_dir=str(tmp_path / "one")).load("test")
    task = get_task("esnli", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["esnli-test-0"]
    msgs = task.skipped()
    assert len(msgs) == 3 and "esnli_test.json:3: invalid JSON" in msgs[0]
    assert "esnli_test.json:2: unknown label" in msgs[1] and "esnli_test.json:4: missing field 'hypothesis'" in msgs[2]
    assert task.load("valid")[0].answer == "contradiction" and task.load("valid")[0].rationale == "E."


def _write_text(folder, suffix, rows, trailing=True):
    folder.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(STEMS):
        text = "\n".join(r[i] for r in rows)
        (folder / f"{stem}.{suffix}").write_text(text + ("\n" if trailing and i < 3 else ""))


def test_text_bad_files(tmp_path):
    row = ("A man .", "A person .", "entailment", "a man is a person", "e2", "e3")
    folder = tmp_path / "eSNLI"
    _write_text(folder, "dev", [row, row])
    _write_text(folder, "test", [row, (*row[:2], "maybe", *row[3:]), row])
    with pytest.raises(UserError, match=r"labels\.test:2: unknown label 'maybe'"):
        get_task("esnli", data_dir=str(tmp_path)).load("test")
    task = get_task("esnli", data_dir=str(tmp_path), skip_bad=True)
    assert [e.id for e in task.load("test")] == ["esnli-test-0", "esnli-test-2"]
    assert len(task.skipped()) == 1 and "labels.test:2: unknown label" in task.skipped()[0]
    assert task.load("valid")[1].rationale == "a man is a person"
    (folder / "s2.dev").write_text("A person .\n")
    with pytest.raises(UserError, match=r"dev files .* are not line-aligned \(lines: s1\.dev 2, s2\.dev 1, labels\.dev 2") as e:
        get_task("esnli", data_dir=str(folder), skip_bad=True).load("test")
    assert "\n" not in str(e.value)


def test_hub_path_matches_files(tmp_path, splits, data_dir):
    """HF `esnli` layout (train / validation / test) from real rows: the same Examples."""
    _, d = splits
    valid = _jsonl(Path(data_dir) / "esnli_valid.json")[:5]
    test = _jsonl(Path(data_dir) / "esnli_test.json")[:5]
    train = [*test[:3], {**test[3], "label": -1}]
    root = write_hub_dataset(tmp_path / "esnli", {"plain_text": {"train": train, "validation": valid, "test": test}})
    with pytest.raises(UserError, match=r"esnli\[train\] row 3: unlabeled row \(label -1\)"):
        get_task("esnli", hf_dataset=str(root)).load("test")
    task = get_task("esnli", hf_dataset=str(root), skip_bad=True)
    assert task.load("valid") == d["valid"][:5] and task.load("test") == d["test"][:5]
    assert [e.id for e in task.load("train")] == ["esnli-train-0", "esnli-train-1", "esnli-train-2"]
    assert len(task.skipped()) == 1
    with pytest.raises(UserError, match="not both"):
        get_task("esnli", data_dir=data_dir, hf_dataset="esnli")
    with pytest.raises(UserError, match="source applies to data_dir"):
        get_task("esnli", hf_dataset="esnli", source="text")


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="needs data_dir"):
        get_task("esnli").load("test")
    with pytest.raises(UserError, match=r"esnli_valid\.json not found"):
        get_task("esnli", data_dir=str(tmp_path)).load("test")
    with pytest.raises(UserError, match=r"s1\.dev not found"):
        get_task("esnli", data_dir=str(tmp_path), source="text").load("test")
    if TEXT.is_dir():  # a partial copy of the text files names the missing one
        part = tmp_path / "part"
        shutil.copytree(TEXT, part)
        (part / "s2.test").unlink()
        with pytest.raises(UserError, match=r"s2\.test not found"):
            get_task("esnli", data_dir=str(part)).load("test")
