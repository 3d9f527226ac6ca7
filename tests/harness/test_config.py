import pytest

from harness.config import (
    GridSpec,
    RunSpec,
    axis_label,
    flatten,
    load_grid,
    load_run,
    parse_override,
    set_dotted,
    validate,
)
from harness.errors import UserError

BASE = {"task": {"name": "arith", "n_train": 10}, "method": {"name": "finetune"}}


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_parse_override_reads_yaml_values():
    assert parse_override("train.steps=5") == ("train.steps", 5)
    assert parse_override("train.lr=3e-4") == ("train.lr", 3e-4)
    assert parse_override("eval.schemes=[greedy, majority@8]") == ("eval.schemes", ["greedy", "majority@8"])
    assert parse_override("task.name=arith") == ("task.name", "arith")
    with pytest.raises(UserError, match="expected key=value"):
        parse_override("train.steps")


def test_set_dotted_copies():
    d = {"a": {"b": 1}}
    e = set_dotted(d, "a.c", 2)
    assert d == {"a": {"b": 1}} and e == {"a": {"b": 1, "c": 2}}
    with pytest.raises(UserError, match="not a section"):
        set_dotted({"a": 1}, "a.b", 2)


def test_run_spec_defaults_and_flatten():
    spec = validate(RunSpec, BASE, where="t")
    flat = spec.flat()
    assert flat["task.name"] == "arith" and flat["task.n_train"] == 10 and flat["train.steps"] == 1000
    assert spec.task.options == {"n_train": 10}
    assert flatten({"a": {"b": {"c": 1}}, "d": 2}) == {"a.b.c": 1, "d": 2}


@pytest.mark.parametrize(
    "data, message",
    [
        ({**BASE, "trian": {}}, r"unknown spec key 'trian' \(did you mean 'train'"),
        ({**BASE, "train": {"stpes": 3}}, r"unknown spec key 'train.stpes' \(did you mean 'train.steps'\?\)"),
        ({**BASE, "train": {"steps": 0}}, r"train.steps: Input should be greater than or equal to 1"),
        ({**BASE, "eval": {"schemes": ["majorty@8"]}}, r"unknown aggregation scheme 'majorty' \(did you mean 'majority'\?\)"),
        ({"method": {"name": "dss"}}, r"task: Field required"),
    ],
)
def test_bad_specs_are_one_line_errors(data, message):
    with pytest.raises(UserError, match=message) as e:
        validate(RunSpec, data, where="spec.yaml")
    assert "\n" not in str(e.value)


def test_load_run_with_overrides(tmp_path):
    p = write(tmp_path, "task: {name: arith}\nmethod: {name: dss, alpha: 0.3}\n")
    spec = load_run(p, ["train.steps=7", "method.alpha=0.9"])
    assert spec.train.steps == 7 and spec.method.options == {"alpha": 0.9}


def test_invalid_yaml_names_the_line(tmp_path):
    p = write(tmp_path, "task: {name: arith\nmethod: x\n")
    with pytest.raises(UserError, match=r"spec.yaml: line \d+ invalid YAML"):
        load_run(p)
    with pytest.raises(UserError, match="not found"):
        load_run(tmp_path / "missing.yaml")


def test_grid_cells_and_overrides(tmp_path):
    p = write(
        tmp_path,
        "name: g\nbase:\n  task: {name: arith}\n  method: {name: finetune}\n"
        "grid:\n  method.name: [finetune, dss]\n  student.family: [t5, llama]\n",
    )
    g = load_grid(p)
    cells = g.cells()
    assert [c for c, _ in cells] == [
        "method=finetune,family=t5",
        "method=finetune,family=llama",
        "method=dss,family=t5",
        "method=dss,family=llama",
    ]
    assert cells[3][1].method.name == "dss" and cells[3][1].student.family == "llama" and cells[3][1].name == "g"
    g2 = load_grid(p, ["train.steps=3", "grid.method.name=dss"])
    assert [c for c, _ in g2.cells()] == ["method=dss,family=t5", "method=dss,family=llama"]
    assert all(s.train.steps == 3 for _, s in g2.cells())
    with pytest.raises(UserError, match="unknown spec key 'train.setps'"):
        load_grid(p, ["train.setps=3"])
    with pytest.raises(UserError, match="unknown spec key 'studnet'"):
        load_grid(p, ["grid.studnet.family=[t5]"])


def test_axis_label():
    assert axis_label("method.name") == "method"
    assert axis_label("student.family") == "family"
    assert axis_label("method.alpha") == "alpha"
    assert axis_label("seed") == "seed"


def test_sections_sharing_a_name_are_labelled_by_their_options(tmp_path):
    """An ablation axis (method: [{name: qcrd}, {name: qcrd, k: 0}]) names each cell by what
    differs; sections with distinct names keep the plain name."""
    p = write(
        tmp_path,
        "name: g\nbase:\n  task: {name: arith}\n  method: {name: finetune}\n"
        "grid:\n  method: [{name: dss}, {name: qcrd}, {name: qcrd, k: 0, judge: false}, {name: qcrd, dss: {alpha: 0.3}}]\n"
        "  task: [{name: arith, n_train: 50}, {name: gsm_symbolic}]\n",
    )
    cells = [c for c, _ in load_grid(p).cells()]
    assert cells[:4:2] == ["method=dss,task=arith", "method=qcrd,task=arith"]
    assert cells[4] == "method=qcrd[k=0,judge=False],task=arith"
    assert cells[6] == 'method=qcrd[dss={"alpha":0.3}],task=arith'
    assert len(set(cells)) == 8


def test_grid_without_axes_is_one_cell():
    g = GridSpec(name="one", base=BASE)
    assert [c for c, _ in g.cells()] == ["one"]
