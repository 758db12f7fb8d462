"""The task matrix's cells (perk/matrix.py): a cell changes the task, the output directories and
its own overrides, nothing else; a wrong cell fails at config load naming what is valid."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perk.config import ConfigError, load_params

ROOT = Path(__file__).resolve().parents[1]


def _params(tmp_path, cells) -> Path:
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    tree["matrix"] = cells
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(tree))
    return f


def test_a_cell_sets_task_dirs_and_its_overrides_only(tmp_path):
    f = _params(tmp_path, {"retrieval-random": {"task": "retrieval/random", "set": {"meta_train.steps": 30}}})
    main, cell = load_params(f), load_params(f, cell="retrieval-random")
    assert (cell.meta_train.task, cell.baseline.task, cell.evaluate.tasks) == ("retrieval/random",) * 2 + (["retrieval/random"],)
    assert cell.meta_train.steps == 30 and main.meta_train.steps == 700
    assert cell.pretrain.out_dir == "data/matrix/retrieval-random/pretrain"
    assert cell.evaluate.out_dir == "data/matrix/retrieval-random/eval" and cell.cell == "retrieval-random"
    changed = {k for k in type(main).model_fields if getattr(main, k) != getattr(cell, k)}
    assert changed == {"pretrain", "meta_train", "baseline", "evaluate", "cell"}
    assert cell.synth == main.synth and cell.inner == main.inner


@pytest.mark.parametrize("cells,cell,needle", [
    ({"a-b": {"task": "needle/single"}}, "nope", "no such cell; cells: a-b"),
    ({"A_b": {"task": "needle/single"}}, None, "must be lower-case letters"),
    ({"a": {"task": "needle/foo"}}, None, "unknown task 'needle/foo'; needle defines"),
    ({"a": {"task": "needle/single", "set": {"meta_train.stepz": 1}}}, "a", "meta_train.stepz: unknown key"),
    ({"a": {"task": "needle/single", "set": {"meta_train.out_dir": "x"}}}, "a", "cannot be set per cell"),
    ({"a": {"task": "needle/single", "set": {"synth.tasks.needle.num_keys": 8}}}, "a",
     "'synth.tasks.needle.num_keys' cannot be set per cell: the synth stage runs once for every cell"),
    ({"a": {"task": "needle/single", "set": {"tokenizer.vocab_size": 8}}}, "a", "the tokenizer stage runs once"),
])
def test_bad_cells_fail_at_load_naming_the_problem(tmp_path, cells, cell, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_params(_params(tmp_path, cells), cell=cell)


def test_the_cli_names_a_missing_cell_and_exits_2(tmp_path):
    f = _params(tmp_path, {"babilong-qa1": {"task": "babilong/qa1"}})
    r = subprocess.run([sys.executable, "-m", "perk.cli", "meta-train", "--params", str(f), "--cell", "qa1"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "--cell 'qa1': no such cell; cells: babilong-qa1" in r.stderr, r.stderr


def test_the_shipped_reasoning_profile_runs_the_four_subtasks_with_the_logged_recipe():
    """profiles/tiny/reasoning.yaml (issue #14): one cell per reasoning subtask, each on REASONING.md's
    common settings (experiments/fam_args.sh: 2,000 train contexts per subtask, pretrain 400 steps
    without the recall text, 500 meta-train steps), tested at 1x and 8x with 50 questions per length."""
    root = Path(__file__).resolve().parents[1]
    path = root / "profiles" / "tiny" / "reasoning.yaml"
    p = load_params(path)
    tasks = {"babilong-qa2": "babilong/qa2", "babilong-qa3": "babilong/qa3",
             "records-relation": "records/relation", "records-aggregate": "records/aggregate"}
    assert {name: cell.task for name, cell in p.matrix.items()} == tasks
    for fam in ("babilong", "records"):
        spec = getattr(p.synth.tasks, fam)
        assert spec.n_train // len(spec.subtasks) == 2000 and spec.n_val // len(spec.subtasks) == 64
        assert spec.eval_lengths == [spec.train_lengths[0], 8 * spec.train_lengths[0]]
        assert spec.n_test * len(spec.depths) == 50
    assert p.synth.tasks.babilong.ask_all and p.synth.tasks.records.ask_all_ops
    for name, task in tasks.items():
        c = load_params(path, cell=name)
        assert (c.pretrain.steps, c.pretrain.recall, c.meta_train.steps) == (400, False, 500)
        assert c.meta_train.task == c.baseline.task == task and c.evaluate.tasks == [task]
        assert set(c.evaluate.controls) == {"no_inner", "wrong_context"} and c.evaluate.per_cell == 10


@pytest.mark.parametrize("profile,families,sections", [
    ("position-retrieval.yaml", ["retrieval"], ["matrix", "position"]),
    ("reasoning.yaml", ["babilong", "records"], ["matrix"]),
])
def test_a_shipped_profile_differs_from_params_yaml_only_where_it_says(profile, families, sections):
    """Each profile's header names what differs from params.yaml (those families' synth settings and
    the sections given): a default changed in params.yaml must reach the profile too, or this fails
    naming the section."""
    root = Path(__file__).resolve().parents[1]
    prof = load_params(root / "profiles" / "tiny" / profile).model_dump()
    base = load_params(root / "params.yaml").model_dump()
    for tree in (prof, base):
        for fam in families:
            tree["synth"]["tasks"].pop(fam)
        for section in sections:
            tree.pop(section)
    assert {k: v for k, v in prof.items() if base.get(k) != v} == {}
