"""Faults and bad input (issue 18), tried the way a careless user would, through the real CLI.

Every bad input must end with a non-zero exit (2: the user's to fix), a short message on stderr
that names the problem (key, file, URI), no Python traceback, and data/ exactly as it was. One
micro project is built per module (tokenizer .. baseline, ~25 s); each case runs in a copy of it.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import warm_cli

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "tests" / "micro_params.yaml"


def _env(proj: Path, **extra) -> dict:
    env = dict(os.environ, PERK_ROOT=str(proj), MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PERK_DEBUG", None)
    return env | extra


def perk(proj: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m perk.cli ARGS` in proj: a process of its own, forked from one that imported torch,
    transformers and MLflow once (tests/warm_cli.py; ~5 s a command less). The interpreter's own
    entry point is run by test_real_entry_point_fails_the_same_way below."""
    return warm_cli.run(list(args), proj, env or _env(proj), timeout=timeout)


def snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(d.rglob("*")) if p.is_file()}


BUILD = """
from perk import stages
from perk.config import load_params
p = load_params("params.yaml")
for name in ("tokenizer", "synth", "pretrain", "meta-train", "baseline"):
    stages.call(name, p, progress=False)
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory, empty_mlflow_db) -> Path:
    """A micro project with every training artifact: tokenizer, synth, pretrain, meta_train, baseline
    (one process: the CLI's own path is what the cases test; the store copied pre-migrated)."""
    proj = tmp_path_factory.mktemp("faults") / "proj"
    (proj / "mlruns").mkdir(parents=True)
    shutil.copy(empty_mlflow_db, proj / "mlruns" / "mlflow.db")
    shutil.copy(MICRO, proj / "params.yaml")
    r = subprocess.run([sys.executable, "-c", BUILD], cwd=proj, env=_env(proj), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return proj


@pytest.fixture()
def proj(template, tmp_path) -> Path:
    dst = tmp_path / "proj"
    shutil.copytree(template, dst)
    return dst


# ---------------------------------------------------------------- mutations of the project

def truncate(rel: str, keep: int = 100):
    def f(proj: Path):
        p = proj / rel
        p.write_bytes(p.read_bytes()[:keep])
    return f


def overwrite(rel: str, data: bytes):
    def f(proj: Path):
        (proj / rel).write_bytes(data)
    return f


def remove(rel: str):
    def f(proj: Path):
        p = proj / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return f


def params_text(text: str | bytes):
    def f(proj: Path):
        p = proj / "params.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return f


def foreign_parquet(rel: str):
    def f(proj: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), proj / rel)
    return f


def mkdir(rel: str):
    def f(proj: Path):
        (proj / rel).mkdir()
    return f


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


UNREACHABLE = f"http://127.0.0.1:{_closed_port()}"

# (id, argv, mutation or None, extra env, strings the message must contain)
CASES = [
    # the four failures named in the issue
    ("tracking-server-unreachable", ["train"], None, {"MLFLOW_TRACKING_URI": UNREACHABLE},
     [UNREACHABLE, "not answering"]),
    ("perk-safetensors-truncated", ["evaluate"], truncate("data/meta_train/perk.safetensors"), {},
     ["data/meta_train/perk.safetensors", "not a readable safetensors file", "perk meta-train"]),
    ("profile-length-zero", ["profile", "-P", "profile.lengths=[0]"], None, {}, ["profile.lengths", ">= 16"]),
    ("inner-step-sizes-absurd", ["train", "-P", "inner.lr_min=1e5", "-P", "inner.lr_init=1e6", "-P",
                                 "inner.lr_max=1e7"], None, {}, ["inner", "lr_max", "<= 1"]),
    # parameters
    ("unknown-key", ["train", "-P", "meta_train.stepz=3"], None, {}, ["meta_train.stepz: unknown key"]),
    ("unknown-section", ["train", "-P", "nonsense.x=1"], None, {}, ["nonsense: unknown key"]),
    ("wrong-type", ["train", "-P", "meta_train.steps=many"], None, {}, ["meta_train.steps", "'many'"]),
    ("override-without-value", ["train", "-P", "meta_train.steps"], None, {}, ["key.path=value"]),
    ("override-into-a-scalar", ["train", "-P", "seed.x=1"], None, {}, ["'seed' is not a section"]),
    ("params-file-missing", ["train", "--params", "nope.yaml"], None, {}, ["nope.yaml: params file not found"]),
    ("params-not-yaml", ["train"], params_text("seed: [1,\n"), {}, ["params.yaml: not valid YAML"]),
    ("params-a-list", ["train"], params_text("- seed\n- model\n"), {}, ["expected a mapping"]),
    ("params-binary", ["train"], params_text(b"\xff\xfe\x00\x81garbage"), {}, ["params.yaml", "UTF-8"]),
    ("params-a-directory", ["train", "--params", "pdir"], mkdir("pdir"), {}, ["pdir", "a parameters file"]),
    ("depth-out-of-range", ["synth", "-P", "synth.tasks.needle.depths=[1.5]"], None, {},
     ["synth.tasks.needle.depths", "[0, 1]"]),
    ("eval-lengths-too-short", ["synth", "-P", "synth.tasks.needle.eval_lengths=[128]"], None, {},
     ["eval_lengths must reach at least 8x"]),
    ("train-length-below-chunk", ["synth", "-P", "synth.tasks.needle.train_lengths=[32]"], None, {},
     ["chunk_tokens"]),
    ("negative-size", ["synth", "-P", "synth.tasks.needle.n_train=-1"], None, {}, ["synth.tasks.needle.n_train"]),
    ("synth-unknown-task", ["synth", "--tasks", "needle,nope"], None, {}, ["unknown task(s) ['nope']"]),
    ("heads-do-not-divide", ["train", "-P", "model.n_embd=33"], None, {}, ["divisible by n_head"]),
    ("inner-betas", ["train", "-P", "inner.betas=[1.5,0.9]"], None, {}, ["betas must be in [0, 1)"]),
    ("eval-unknown-subtask", ["evaluate", "-P", "evaluate.tasks=[needle/bogus]"], None, {}, ["unknown task 'needle/bogus'"]),
    ("eval-no-tasks", ["evaluate", "-P", "evaluate.tasks=[]"], None, {}, ["evaluate.tasks", "at least one"]),
    ("eval-unknown-method", ["evaluate", "-P", "evaluate.methods=[magic]"], None, {}, ["evaluate.methods"]),
    ("eval-only-length-negative", ["evaluate", "-P", "evaluate.only_lengths=[-5]"], None, {},
     ["evaluate.only_lengths", "got [-5]"]),
    ("profile-micro-batch-zero", ["profile", "-P", "profile.micro_batches=[0]"], None, {},
     ["profile.micro_batches"]),
    ("train-task-not-synthesized", ["train", "-P", "meta_train.task=needle/single"], None, {},
     ["train.parquet: task 'needle/single' is not synthesized"]),
    # artifacts: missing, truncated, foreign
    ("profile-perk-safetensors-truncated", ["profile"], truncate("data/meta_train/perk.safetensors", 5000), {},
     ["data/meta_train/perk.safetensors", "not a readable safetensors file", "perk meta-train"]),
    ("perk-safetensors-missing", ["evaluate"], remove("data/meta_train/perk.safetensors"), {},
     ["data/meta_train/perk.safetensors", "not found", "perk meta-train"]),
    ("perk-safetensors-other-shape", ["evaluate", "-P", "lora.rank=4"], None, {},
     ["perk.safetensors", "shape", "expects"]),
    ("baseline-safetensors-garbage", ["evaluate", "-P", "evaluate.methods=[baseline]"],
     overwrite("data/baseline/model.safetensors", b"\x00" * 64), {},
     ["data/baseline/model.safetensors", "not a readable safetensors file", "perk baseline"]),
    ("base-safetensors-truncated", ["train"], truncate("data/pretrain/base.safetensors", 5000), {},
     ["data/pretrain/base.safetensors", "perk pretrain"]),
    ("weight-net-empty", ["train"], overwrite("data/pretrain/weight_net.safetensors", b""), {},
     ["data/pretrain/weight_net.safetensors", "perk pretrain"]),
    ("parquet-truncated", ["train"], truncate("data/synth/needle/train.parquet", 3000), {},
     ["data/synth/needle/train.parquet", "not a readable Parquet file", "perk synth"]),
    ("parquet-foreign-schema", ["train"], foreign_parquet("data/synth/needle/train.parquet"), {},
     ["train.parquet", "missing column"]),
    ("parquet-a-directory", ["train"], lambda p: (remove("data/synth/needle/val.parquet")(p),
                                                 mkdir("data/synth/needle/val.parquet")(p)), {},
     ["val.parquet", "found a directory"]),
    ("tokenizer-truncated", ["train"], truncate("data/tokenizer/tokenizer.json", 300), {},
     ["data/tokenizer/tokenizer.json", "not a readable tokenizer", "perk tokenizer"]),
    ("tokenizer-missing", ["train"], remove("data/tokenizer"), {}, ["no tokenizer at 'data/tokenizer'"]),
    ("run-json-garbage", ["evaluate"], overwrite("data/meta_train/run.json", b"{not json"), {},
     ["data/meta_train/run.json", "not valid JSON"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly(proj, case):
    _, argv, mutate, env, needles = case
    if mutate is not None:
        mutate(proj)
    before = snapshot(proj / "data")
    t0 = time.monotonic()
    r = perk(proj, *argv, "--no-progress", env=_env(proj, **env))
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    err = r.stderr.strip().splitlines()
    assert err and err[0].startswith(f"perk {argv[0]}: error:"), r.stderr
    assert len([ln for ln in err if "INFO" not in ln]) <= 12, r.stderr  # pydantic lists one line per key
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert snapshot(proj / "data") == before, "a failed command changed data/"
    if argv[0] == "train" and "MLFLOW_TRACKING_URI" in env:
        assert time.monotonic() - t0 < 30, "an unreachable tracking server must fail at once"
        assert len(err) == 1


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("perk-safetensors-truncated", "unknown-key")],
                         ids=["perk-safetensors-truncated", "unknown-key"])
def test_real_entry_point_fails_the_same_way(proj, case):
    """Two cases through `python -m perk.cli` itself: the warm runner must not hide what the
    interpreter's own start would add (an import-time warning, a traceback, another exit code)."""
    _, argv, mutate, env, needles = case
    if mutate is not None:
        mutate(proj)
    warm = perk(proj, *argv, "--no-progress", env=_env(proj, **env))
    if mutate is not None:
        mutate(proj)
    real = subprocess.run([sys.executable, "-m", "perk.cli", *argv, "--no-progress"], cwd=proj,
                          env=_env(proj, **env), capture_output=True, text=True, timeout=300)
    assert real.returncode == warm.returncode == 2, real.stderr
    assert real.stderr.splitlines()[0] == warm.stderr.splitlines()[0], (real.stderr, warm.stderr)
    assert "Traceback" not in real.stdout + real.stderr and all(n in real.stderr for n in needles), real.stderr


def test_the_battery_is_large_enough():
    assert len(CASES) >= 30


# ---------------------------------------------------------------- resume

def test_resume_falls_back_to_the_newest_intact_checkpoint(proj):
    ckpts = proj / "data/meta_train/checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000002", "step-0000004"]
    ref = (proj / "data/meta_train/perk.safetensors").read_bytes()
    (proj / "data/meta_train/perk.safetensors").unlink()
    truncate("data/meta_train/checkpoints/step-0000004/tensors.safetensors", 200)(proj)
    r = perk(proj, "train", "--no-progress")
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert "skipping an unreadable checkpoint" in r.stdout and "step-0000004" in r.stdout
    assert "resuming from data/meta_train/checkpoints/step-0000002 (step 2/4)" in r.stdout, r.stdout
    # resumed from step 2 to the same result as the uninterrupted run; the bad checkpoint rewritten
    assert (proj / "data/meta_train/perk.safetensors").read_bytes() == ref
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000002", "step-0000004"]


def test_resume_after_moving_the_run_directory(proj):
    shutil.move(proj / "data/meta_train", proj / "data/moved")
    (proj / "data/moved/perk.safetensors").unlink()
    r = perk(proj, "train", "--no-progress", "-P", "meta_train.out_dir=data/moved")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming from data/moved/checkpoints/step-0000004" in r.stdout, r.stdout
    assert "other params/data" not in r.stdout
    assert sorted(p.name for p in (proj / "data/moved/checkpoints").iterdir()) == ["step-0000002", "step-0000004"]


# ---------------------------------------------------------------- real servers (slow)

BIN = Path(sys.executable).parent


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on a free port over a pre-migrated sqlite store; killable, restartable."""

    def __init__(self, d: Path, db: Path):
        self.dir = d
        shutil.copy(db, d / "mlflow.db")
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 180) -> None:
        import urllib.request
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.dir / 'mlflow.db'}",
             "--artifacts-destination", str(self.dir / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_env(self.dir))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=2).close()
                return
            except OSError:
                assert self.proc.poll() is None, (self.dir / "server.log").read_text()[-2000:]
                time.sleep(0.3)
        raise AssertionError("mlflow server did not come up")

    def kill(self) -> None:
        import signal
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, empty_mlflow_db):
    s = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), empty_mlflow_db)
    s.start()
    yield s
    s.kill()


@pytest.mark.slow
def test_mlflow_server_killed_mid_train_training_goes_on(proj, mlflow_server):
    """The documented choice (perk/tracking_guard.py): training goes on, checkpoints are kept, the run
    names what was not logged and keeps it; after the server is back a rerun completes."""
    import json

    from mlflow import MlflowClient

    args = ["train", "--no-progress", "-P", "meta_train.steps=30", "-P", "meta_train.eval_every=10"]
    env = _env(proj, MLFLOW_TRACKING_URI=mlflow_server.uri)
    proc = subprocess.Popen([sys.executable, "-m", "perk.cli", *args], cwd=proj, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpts = proj / "data/meta_train/checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (ckpts / "step-0000006").exists() and proc.poll() is None:
        time.sleep(0.05)
    mlflow_server.kill()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    assert "stopped answering" in err and "NOT logged" in err, err[-3000:]
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000028", "step-0000030"]  # none lost
    assert (proj / "data/meta_train/perk.safetensors").exists()
    run_id = json.loads((proj / "data/meta_train/run.json").read_text())["mlflow_run_id"]
    kept = json.loads((proj / "mlruns/unlogged" / f"{run_id}.json").read_text())
    assert kept["uri"] == mlflow_server.uri and "run status FINISHED" in kept["other"]
    unlogged = set(kept["steps_by_metric"]["loss"])
    assert 30 in unlogged and f"{len(unlogged)} values" not in err  # counted over all metrics

    mlflow_server.start()  # back again: what was logged before the kill plus what was kept = every step
    client = MlflowClient(mlflow_server.uri)
    logged = {m.step for m in client.get_metric_history(run_id, "loss")}
    assert logged and logged | unlogged == set(range(1, 31)), (sorted(logged), sorted(unlogged))
    r = perk(proj, *args, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "resuming from data/meta_train/checkpoints/step-0000030" in r.stdout and "NOT logged" not in r.stderr
    rerun = json.loads((proj / "data/meta_train/run.json").read_text())["mlflow_run_id"]
    assert rerun != run_id and client.get_run(rerun).info.status == "FINISHED"
    assert "val_em" in client.get_run(rerun).data.metrics


@pytest.mark.slow
def test_second_dvc_repro_is_refused_while_one_runs(tmp_path):
    import signal

    import psutil

    from test_pipeline import _project

    proj = _project(tmp_path)
    env = _env(proj, PATH=f"{BIN}:{os.environ['PATH']}")
    first = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=proj, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:  # until it runs a stage's `perk`
            try:
                kids = psutil.Process(first.pid).children(recursive=True)
                if any("perk" in " ".join(k.cmdline()) for k in kids):
                    break
            except psutil.Error:
                pass
            time.sleep(0.05)
        assert first.poll() is None, "the first dvc repro ended before a second could be tried"
        second = subprocess.run([str(BIN / "dvc"), "repro"], cwd=proj, env=env, capture_output=True, text=True,
                                timeout=120)
        text = second.stdout + second.stderr
        assert second.returncode != 0, text
        assert "Traceback" not in text
        assert ("is busy, it is being blocked by" in text and f"PID {first.pid}" in text) or \
            "Unable to acquire lock" in text, text
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


@pytest.mark.slow
def test_kill_9_during_baseline_at_a_random_step_resumes_bit_identical(proj):
    """meta_train has its own kill test (test_pipeline.py); the baseline shares the loop, but its
    step function, data order and save path are its own."""
    import random
    import signal

    args = ["baseline", "--no-progress", "-P", "baseline.steps=24", "-P", "baseline.checkpoint_every=4",
            "-P", "baseline.eval_every=100"]
    r = perk(proj, *args, "-P", "baseline.out_dir=data/ref")
    assert r.returncode == 0, r.stderr[-2000:]
    kill_at = random.choice([4, 8, 12, 16])
    print(f"killing after the step-{kill_at} checkpoint")
    ckpts = proj / "data/baseline/checkpoints"
    shutil.rmtree(ckpts, ignore_errors=True)  # the template's own step-2/4 checkpoints would end the wait at once
    proc = subprocess.Popen([sys.executable, "-m", "perk.cli", *args], cwd=proj, env=_env(proj),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (ckpts / f"step-{kill_at:07d}").exists() and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ref = (proj / "data/ref/model.safetensors").read_bytes()
    assert proc.returncode == -signal.SIGKILL, "finished before the kill"
    r = perk(proj, *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from data/baseline/checkpoints/step-" in r.stdout, r.stdout
    assert (proj / "data/baseline/model.safetensors").read_bytes() == ref, "resumed baseline differs"
