"""The whole pipeline on the micro profile, run the way users run it: `dvc repro` and `perk`."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(root: Path) -> dict:
    env = dict(os.environ, PERK_ROOT=str(root), MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1",
               PATH=f"{BIN}:{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _project(tmp_path: Path) -> Path:
    """A fresh copy of the tracked project with the micro params, as its own git + DVC repo."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    dst = tmp_path / "proj"
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    shutil.copy(ROOT / "tests" / "micro_params.yaml", dst / "params.yaml")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dst, check=True)
    return dst


def _run(cmd, cwd, timeout=600):
    r = subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


TWO_FAMILIES = {"subtasks": ["qa1"], "n_train": 2, "n_val": 1, "n_test": 1, "train_lengths": [128],
                "eval_lengths": [1024], "depths": [0.0], "chunk_tokens": 64}


def test_dvc_repro_runs_every_stage_then_nothing(tmp_path):
    import yaml
    proj = _project(tmp_path)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["synth"]["tasks"]["babilong"] = TWO_FAMILIES  # two families enabled: runs must not split
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run([str(BIN / "dvc"), "repro"], proj)
    assert "meta-train: 4/4 (100%)" in out and "evaluate needle/multikey (cells): 16/16 (100%)" in out, out[-3000:]  # 2 methods + 2 controls x 4 cells
    d = proj / "data"
    for f in ("synth/needle/test.parquet", "synth/babilong/test.parquet", "pretrain/base.safetensors",
              "meta_train/perk.safetensors", "baseline/model.safetensors", "eval/metrics.json", "eval/predictions.parquet",
              "eval/plots/needle_multikey_accuracy.png", "eval/plots/needle_multikey_perk_heatmap.png",
              "profile/points.csv", "profile/metrics.json", "profile/plots/memory_vs_length.png",
              "capacity/capacity.json", "capacity/capacity.csv", "capacity/plots/capacity.png",
              "capacity/ranks/index.json"):
        assert (d / f).exists(), f
    metrics = json.loads((d / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"perk", "baseline", "perk_no_inner", "perk_wrong_context", "chance"}
    assert "em_1024" in metrics["perk"]["needle_multikey"] and "distractor_1024" in metrics["perk"]["needle_multikey"]
    assert "em_1024" in metrics["perk_no_inner"]["needle_multikey"] and metrics["chance"]["needle_multikey"] == 1 / 230
    index = json.loads((d / "imports" / "index.json").read_text())  # no ../shared here: every dev set absent, said so
    assert index and all("absent" in v for v in index.values()) and "import: SKIPPED ruler/niah_single_2" in out
    expected = metrics["perk_no_inner"]["needle_multikey"]["expected"]  # exact, over every test key
    assert expected["keys"] == 62 and 0 <= expected["expected_em"] <= 1 / 230
    cap = json.loads((d / "capacity" / "capacity.json").read_text())
    assert {(r["method"], r["facts"]) for r in cap["points"]} == {(m, f) for m in ("perk_r2", "baseline") for f in (2, 4)}
    prof = json.loads((d / "profile" / "metrics.json").read_text())
    assert set(prof["memory_growth"]) == {"perk_mb4", "prompt"}
    again = _run([str(BIN / "dvc"), "repro"], proj)
    assert "Data and pipelines are up to date" in again, again
    shown = _run([str(BIN / "dvc"), "metrics", "show"], proj)
    assert "em_1024" in shown
    # exactly one MLflow run per stage call, FINISHED, in its family's experiment
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{proj}/mlruns/mlflow.db")
    exps = {e.experiment_id: e.name for e in client.search_experiments()}
    runs = sorted((r.data.tags.get("stage"), exps[r.info.experiment_id], r.info.status)
                  for r in client.search_runs(list(exps)))
    assert runs == sorted([("tokenizer", "perk", "FINISHED"), ("synth", "perk", "FINISHED"),
                           ("import", "perk-imports", "FINISHED")] +
                          [(s, "perk-needle", "FINISHED") for s in ("pretrain", "meta-train", "baseline", "evaluate", "capacity", "profile")]), runs
    # an extra LoRA rank: only capacity reruns, meta-training it on the same base
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["capacity"]["ranks"] = [4]
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    status = _run([str(BIN / "dvc"), "status"], proj)
    assert "capacity:" in status and "meta-train:" not in status and "evaluate:" not in status, status
    out = _run([str(BIN / "dvc"), "repro"], proj)
    assert "Running stage 'capacity'" in out and "Running stage 'meta-train'" not in out, out[-3000:]
    assert (d / "capacity" / "ranks" / "perk_r4" / "perk.safetensors").exists()
    cap = json.loads((d / "capacity" / "capacity.json").read_text())
    assert {r["method"] for r in cap["points"]} == {"perk_r2", "perk_r4", "baseline"}
    assert json.loads((d / "capacity" / "ranks" / "index.json").read_text())["extra_ranks"] == [4]
    # a cell of the task matrix: `dvc repro matrix-evaluate@NAME` runs that cell's chain and nothing else
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["matrix"] = {"babilong-qa1": {"task": "babilong/qa1", "set": {"meta_train.steps": 2}}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run([str(BIN / "dvc"), "repro", "matrix-evaluate@babilong-qa1"], proj)
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    # its chain and nothing else (meta-train and baseline both follow pretrain, in either order)
    chain = [f"matrix-{s}@babilong-qa1" for s in ("pretrain", "meta-train", "baseline", "evaluate")]
    assert sorted(ran) == sorted(chain) and ran[0] == chain[0] and ran[-1] == chain[-1], out[-3000:]
    c = d / "matrix" / "babilong-qa1"
    assert json.loads((c / "meta_train" / "metrics.json").read_text())["steps"] == 2
    assert "babilong_qa1" in json.loads((c / "eval" / "metrics.json").read_text())["perk"]
    assert "Data and pipelines are up to date" in _run([str(BIN / "dvc"), "repro"], proj)
    exps = {e.experiment_id: e.name for e in client.search_experiments()}
    cell_runs = {(r.data.tags.get("stage"), exps[r.info.experiment_id], r.info.run_name)
                 for r in client.search_runs(list(exps)) if r.data.tags.get("cell") == "babilong-qa1"}
    assert cell_runs == {(s, "perk-babilong", f"matrix-{s}@babilong-qa1")
                         for s in ("pretrain", "meta-train", "baseline", "evaluate")}, cell_runs
    report = _run([str(BIN / "perk"), "report"], proj)
    assert "### cell babilong-qa1: babilong/qa1 (test" in report and "### needle/multikey (test" in report, report


def _kill_and_resume(proj, command, args, ckpts: Path, out_file: Path, step_dir: str):
    """Run `perk command`, kill -9 it once `step_dir` is checkpointed, rerun: the rerun must resume."""
    proc = subprocess.Popen([str(BIN / "perk"), command, "--no-progress", *args], cwd=proj, env=_env(proj),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpts.glob(step_dir)):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out_file.exists(), "killed too late to test resume"
    out = _run([str(BIN / "perk"), command, "--no-progress", *args], proj)
    assert "resuming from" in out
    return out


def _random_step(steps) -> str:
    """A checkpoint to kill after, drawn at random (printed, so a failure can be replayed)."""
    import random
    step = random.choice(list(steps))
    print(f"killing after the step-{step} checkpoint")
    return f"step-{step:07d}"


def _same_tensors(a: Path, b: Path) -> None:
    ref, got = load_file(a), load_file(b)
    assert ref.keys() == got.keys()
    assert all((ref[k] == got[k]).all() for k in ref), "resumed run differs from the uninterrupted one"


def test_kill_9_during_pretrain_resumes_to_the_same_base(tmp_path):
    proj = _project(tmp_path)
    for stage in ("tokenizer", "synth"):
        _run([str(BIN / "perk"), stage, "--no-progress"], proj)
    args = ["-P", "pretrain.steps=120", "-P", "pretrain.checkpoint_every=4"]  # the kill lands by step ~40
    _run([str(BIN / "perk"), "pretrain", "--no-progress", *args, "-P", "pretrain.out_dir=data/ref"], proj)
    _kill_and_resume(proj, "pretrain", args, proj / "data/pretrain-checkpoints", proj / "data/pretrain/base.safetensors",
                     _random_step(range(4, 40, 4)))
    for f in ("base.safetensors", "weight_net.safetensors"):
        assert (proj / "data/ref" / f).read_bytes() == (proj / "data/pretrain" / f).read_bytes(), f


def test_kill_9_during_meta_train_resumes_to_the_same_adapter(tmp_path):
    proj = _project(tmp_path)
    for stage in ("tokenizer", "synth", "pretrain"):
        _run([str(BIN / "perk"), stage, "--no-progress"], proj)
    args = ["-P", "meta_train.steps=24", "-P", "meta_train.checkpoint_every=4", "-P", "meta_train.eval_every=100"]
    _run([str(BIN / "perk"), "meta-train", "--no-progress", *args, "-P", "meta_train.out_dir=data/ref"], proj)
    # the old command name `train` is an alias of the same stage
    _kill_and_resume(proj, "train", args, proj / "data/meta_train/checkpoints", proj / "data/meta_train/perk.safetensors",
                     _random_step([4, 8, 12, 16]))
    _same_tensors(proj / "data/ref/perk.safetensors", proj / "data/meta_train/perk.safetensors")


@pytest.mark.parametrize("command, override, needle", [
    ("train", "inner.engine=jax", "inner.engine"),
    ("train", "inner.steps=0", "inner.steps"),
    ("train", "meta_train.lr=-1", "meta_train.lr"),
    ("train", "lora.rank=0", "lora.rank"),
    ("train", "meta_train.task=needle/nope", "unknown task 'needle/nope'"),
    ("tokenizer", "model.name=/nonexistent/model", "no tokenizer at '/nonexistent/model'"),
    ("train", "synth.out_dir=/nonexistent", "run `perk tokenizer`"),
])
def test_bad_inputs_fail_clearly(tmp_path, command, override, needle):
    proj = tmp_path
    shutil.copy(ROOT / "tests" / "micro_params.yaml", proj / "params.yaml")
    r = subprocess.run([str(BIN / "perk"), command, "--no-progress", "-P", override], cwd=proj, env=_env(proj),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert needle in r.stderr and "Traceback" not in r.stderr
