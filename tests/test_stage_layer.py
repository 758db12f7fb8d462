"""The stage layer: DVC deps cover the code, the library never imports orchestration, one name and
one default per thing, short stage functions that declare their sharding."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from module_deps import ROOT, closure, covered, stage_deps
from perk import stages

BIN = Path(sys.executable).parent
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


MATRIX_STAGES = [n for n in DVC if n.startswith("matrix-")]


def test_every_stage_is_one_dvc_stage_with_the_same_name_and_command():
    assert [n for n in DVC if n not in MATRIX_STAGES] == stages.names()
    for name in stages.names():
        if name == "position":  # one DVC stage per protocol of params.yaml `position:` (perk/position.py)
            assert DVC[name]["foreach"] == "${position}" and DVC[name]["do"]["cmd"] == "perk position --protocol ${key}"
        else:
            assert DVC[name]["cmd"] == f"perk {name}", name
        assert stages.get(name).name == name


@pytest.mark.parametrize("name", stages.names())
def test_dvc_deps_cover_every_module_the_stage_can_import(name):
    module = f"perk.stages.{stages.ORDER[name][0]}"
    missing = sorted(str(f.relative_to(ROOT)) for f in closure(module) if not covered(f, stage_deps(DVC[name])))
    assert not missing, f"dvc.yaml stage {name!r} lacks deps on {missing}"


def test_each_cell_stage_repeats_its_main_stage_on_the_cell():
    """matrix-<stage>@NAME (the task matrix, perk/matrix.py) is `perk <stage> --cell NAME` with the main
    stage's code deps, its data deps moved under the cell's directory, and the cell's params."""
    from perk.matrix import MATRIX_STAGES as CLI_CELLS
    assert MATRIX_STAGES == [f"matrix-{n}" for n in CLI_CELLS]
    for name in CLI_CELLS:
        main, cell = DVC[name], DVC[f"matrix-{name}"]
        assert cell["foreach"] == "${matrix}" and cell["do"]["cmd"] == f"perk {name} --cell ${{key}}"
        code = [d for d in main["deps"] if d.startswith("perk/")]
        assert [d for d in cell["do"]["deps"] if d.startswith("perk/")] == code, name
        data = [d for d in cell["do"]["deps"] if not d.startswith("perk/")]
        assert all(d in ("data/synth", "data/imports") or d.startswith("${matrix_dir}/${key}/") for d in data), (name, data)
        # the task may be an imported benchmark (a cell's or meta_train.task): its rows are deps too
        assert "data/imports" in main["deps"] and "data/imports" in cell["do"]["deps"], name
        assert {"matrix_dir", "matrix.${key}"} <= set(cell["do"]["params"]), name


def test_the_walk_sees_lazy_imports():
    # the inner loop is imported inside functions only, yet the walk must reach it
    assert ROOT / "perk/meta/inner.py" in closure("perk.stages.evaluate")
    assert ROOT / "perk/meta/inner.py" not in closure("perk.stages.synth")


def _project(tmp_path: Path) -> Path:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    dst = tmp_path / "proj"
    for f in files + ["dvc.yaml", "perk/stages/__init__.py"]:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    for src in (ROOT / "perk").rglob("*.py"):  # the working tree's modules, committed or not
        (dst / src.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / src.relative_to(ROOT))
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


def _outs(stage: dict) -> list[str]:
    return [next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]


def _dvc(args, cwd):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_touching_the_inner_loop_makes_dvc_rerun_training_and_evaluation(tmp_path):
    proj = _project(tmp_path)
    for stage in DVC.values():  # stand-in outputs, so `dvc commit` can record a lock without training
        for out in _outs(stage):
            path = proj / out
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "x").write_text("x")
    _dvc(["commit", "-f", "-q"], proj)
    assert json.loads(_dvc(["status", "--json"], proj)) == {}
    with open(proj / "perk/meta/inner.py", "a") as f:
        f.write("\n# an edit of the inner loop\n")
    changed = set(json.loads(_dvc(["status", "--json"], proj)))
    assert {"meta-train", "evaluate"} <= changed, changed
    assert not changed & {"tokenizer", "synth"}, changed


def test_the_library_imports_no_orchestration():
    code = ("import pkgutil, importlib, sys, perk\n"
            "for m in pkgutil.walk_packages(perk.__path__, 'perk.'):\n"
            "    importlib.import_module(m.name)\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('prefect', 'dvc', 'flows'))\n"
            "print(len(list(pkgutil.walk_packages(perk.__path__, 'perk.'))), bad)\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(r.stdout.split()[0]) > 30  # every module was imported


def _leaves(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_params_yaml_states_the_defaults_of_config_py():
    from perk.config import Params
    defaults = dict(_leaves(Params().model_dump(mode="json")))
    differ = {k: (v, defaults.get(k, "<no such key>")) for k, v in _leaves(yaml.safe_load((ROOT / "params.yaml").read_text()))
              if defaults.get(k, "<no such key>") != (list(v) if isinstance(v, tuple) else v)}
    assert not differ, f"params.yaml vs config.py defaults: {differ}"


def test_stage_functions_are_short_and_sharding_is_declared():
    for name in stages.names():
        st = stages.get(name)
        src = Path(sys.modules[st.run.__module__].__file__)
        fn = next(n for n in ast.parse(src.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == st.run.__name__)
        assert fn.end_lineno - fn.lineno + 1 <= 42, f"{src.name}:{fn.name} is {fn.end_lineno - fn.lineno + 1} lines"
    ev = stages.get("evaluate").shards
    assert isinstance(ev, stages.Shards) and ev.merge is stages.get("evaluate").run
    from perk.config import Params
    assert ev.split(Params()) == [[f"evaluate.only_lengths=[{L}]"] for L in (512, 1024, 2048, 4096)]
    assert all(stages.get(n).shards is None for n in stages.names() if n != "evaluate")


def test_one_name_per_stage_and_old_spellings_as_aliases():
    assert stages.canonical("train") == stages.canonical("meta_train") == "meta-train"
    with pytest.raises(ValueError, match="unknown stage 'nope'; stages, in pipeline order: tokenizer, synth"):
        stages.canonical("nope")
    from flows import deploy
    assert {n for n in deploy.DEPLOYMENTS if n in stages.names()} == set(stages.names())  # perk/<stage>
    for name, (_, params) in deploy.DEPLOYMENTS.items():
        assert all(s in stages.names() for s in params.get("stages", [])), name
