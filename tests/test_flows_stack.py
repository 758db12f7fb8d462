"""End to end on the real stack (issue 5 acceptance), in a fresh micro copy of the project on free ports:
`perk stack up --gpus 0,1` (two GPU workers, pinned, and the coordinators' control worker; on a CPU
machine the pins just hide nothing); the data stages and pretrain through a deployment; `prefect
deployment run perk/meta-train --watch` lands in MLflow with params, metrics and the adapter
artifact; a worker killed mid-run leaves a CRASHED flow run, a FAILED MLflow run and no
half-written outputs, and the rerun resumes from the checkpoint; `perk/evaluate-fanout` spreads
one shard per eval length over the two GPU workers and merges; `perk stack down` leaves no process
behind.

The tests share one stack (module fixture) and run in file order; the kill test is `slow`."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_pipeline import _project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GPUS = ["0", "1"]
WORKERS = {"worker-gpu0", "worker-gpu1", "worker-control"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


class Stack:
    def __init__(self, tmp: Path):
        self.root = _project(tmp)  # tracked files, micro params.yaml as the project's params.yaml
        shutil.copytree(ROOT / "flows", self.root / "flows", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.pport, self.mport = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "PERK_"))}
        self.env = env | {"PREFECT_HOME": str(self.root / ".prefect"), "MLFLOW_DISABLE_TELEMETRY": "true",
                          "PREFECT_API_URL": f"http://127.0.0.1:{self.pport}/api", "COLUMNS": "200"}
        self.pids: set[int] = set()
        self.state_dir = self.root / ".prefect" / "stack"

    def perk(self, action: str, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "perk"), "stack", action, "--root", str(self.root), *extra]
        if action == "up":
            cmd += ["--prefect-port", str(self.pport), "--mlflow-port", str(self.mport), "--timeout", "180",
                    "--gpus", ",".join(GPUS)]
        return subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)

    def up(self) -> str:
        import psutil
        r = self.perk("up")
        assert r.returncode == 0, r.stdout + r.stderr
        for f in self.state_dir.glob("*.pid"):
            pid = int(f.read_text().split()[0])
            self.pids |= {pid} | {c.pid for c in psutil.Process(pid).children(recursive=True)}
        return r.stdout

    def deployment_run(self, name: str, params: dict | None = None, watch: bool = True) -> str:
        cmd = [str(BIN / "prefect"), "deployment", "run", name] + (["--watch"] if watch else [])
        if params:
            cmd += ["--params", json.dumps(params)]
        r = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=300)
        if watch:
            assert "finished successfully" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:] + self.worker_log()
        else:
            assert r.returncode == 0, r.stdout + r.stderr
        return UUID.search(r.stdout).group(0)

    def api(self, path: str, body: dict | None = None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.pport}/api/{path}", method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def flow_run_state(self, flow_run_id: str) -> str:
        return self.api(f"flow_runs/{flow_run_id}")["state"]["type"]

    def worker_log(self) -> str:
        return "".join(f"\n== {f.name}\n" + f.read_text(errors="replace")
                       for f in sorted(self.state_dir.glob("worker*.log")))

    def mlflow(self):
        import mlflow
        return mlflow.MlflowClient(f"http://127.0.0.1:{self.mport}")

    def runs(self, flow_run_id: str | None = None):
        client = self.mlflow()
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        return [r for r in runs if flow_run_id is None or r.data.tags.get("perk.flow_run_id") == flow_run_id]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield s
    finally:
        s.perk("down", timeout=120)  # no-op once test_stack_down_leaves_nothing_running ran


def test_stack_up_then_meta_train_deployment_lands_in_mlflow(stack):
    t0 = time.monotonic()
    out = stack.up()
    assert f"http://127.0.0.1:{stack.pport}" in out and f"http://127.0.0.1:{stack.mport}" in out
    assert {f.stem for f in stack.state_dir.glob("*.pid")} == {"prefect-server", "mlflow-server"} | WORKERS

    # data stages + pretrain (meta_train reads data/pretrain), then the acceptance command
    data_id = stack.deployment_run("perk/pipeline", {"target": "pretrain"})
    assert (stack.root / "data" / "pretrain" / "base.safetensors").exists()
    run_id = stack.deployment_run("perk/meta-train")
    assert (stack.root / "data" / "meta_train" / "perk.safetensors").exists()

    by_flow = {(r.data.tags["stage"], r.info.status) for r in stack.runs(data_id)}
    # import runs too (it precedes pretrain); with no ../shared in the copy it skips every dataset loudly
    assert by_flow == {("tokenizer", "FINISHED"), ("synth", "FINISHED"), ("import", "FINISHED"), ("pretrain", "FINISHED")}
    [mt] = stack.runs(run_id)
    assert (mt.data.tags["stage"], mt.info.status) == ("meta-train", "FINISHED")
    assert mt.data.tags["perk.deployment"] == "meta-train" and mt.data.tags["method"] == "perk"
    assert mt.data.params["meta_train.steps"] == "4" and mt.data.params["model.n_embd"] == "32"
    assert {"val_em", "val_em_no_inner", "loss"} <= set(mt.data.metrics), mt.data.metrics
    assert [a.path for a in stack.mlflow().list_artifacts(mt.info.run_id, "perk")] == ["perk/perk.safetensors"]
    assert stack.mlflow().get_experiment(mt.info.experiment_id).name == "perk-needle"
    assert stack.flow_run_state(run_id) == "COMPLETED"
    assert not list((stack.root / ".prefect" / "flow-runs").glob("*.json"))  # leases removed
    print(f"stack up + data/pretrain + meta-train: {time.monotonic() - t0:.0f} s")


KILL = ["meta_train.steps=40", "meta_train.checkpoint_every=4", "meta_train.eval_every=100",
        "meta_train.out_dir=data/meta_kill"]


@pytest.mark.slow
def test_worker_killed_mid_run_crashes_then_rerun_resumes(stack):
    from perk import checkpoint
    import psutil

    out = stack.root / "data" / "meta_kill"
    flow_run_id = stack.deployment_run("perk/meta-train", {"params": KILL}, watch=False)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (out / "checkpoints" / "step-0000008").exists():
        time.sleep(0.05)
    assert (out / "checkpoints" / "step-0000008").exists(), stack.worker_log()[-3000:]
    # the machine goes away: SIGKILL the worker's process group and the flow-run process (own session)
    def runs_it(pid):
        def env(c):
            try:
                return c.environ()
            except psutil.Error:
                return {}
        return any(env(c).get("PREFECT__FLOW_RUN_ID") == flow_run_id for c in psutil.Process(pid).children(recursive=True))
    [worker] = [pid for f in stack.state_dir.glob("worker-gpu*.pid") if runs_it(pid := int(f.read_text().split()[0]))]
    tree = [worker] + [c.pid for c in psutil.Process(worker).children(recursive=True)]
    os.killpg(worker, signal.SIGKILL)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (out / "perk.safetensors").exists(), "killed too late"
    assert stack.flow_run_state(flow_run_id) == "RUNNING"  # nobody told Prefect yet

    # nothing half-written: only complete checkpoints, or temp dirs that checkpoint.latest ignores
    assert not (out / "metrics.json").exists()
    for d in (out / "checkpoints").iterdir():
        assert (d.name.startswith("step-") and (d / "state.json").exists()) or d.name.startswith(".step-"), d
    assert checkpoint.latest(out / "checkpoints") is not None

    # restarting the workers marks the dead flow run CRASHED and its MLflow run FAILED
    up = stack.up()
    assert f"recovered flow run {flow_run_id}" in up, up
    assert stack.flow_run_state(flow_run_id) == "CRASHED"
    [dead] = stack.runs(flow_run_id)
    assert (dead.data.tags["stage"], dead.info.status) == ("meta-train", "FAILED")

    # the rerun resumes from the last checkpoint and completes
    rerun = stack.deployment_run("perk/meta-train", {"params": KILL})
    assert re.search(r"resuming from .*step-00000(08|12|16)", stack.worker_log()), stack.worker_log()[-3000:]
    assert (out / "perk.safetensors").exists()
    [done] = stack.runs(rerun)
    assert done.info.status == "FINISHED" and done.data.params["meta_train.steps"] == "40"


def test_evaluate_fanout_spreads_shards_over_gpu_workers(stack):
    t0 = time.monotonic()
    stack.deployment_run("perk/baseline")  # evaluate reads it and data/meta_train (first test)
    fanout = stack.deployment_run("perk/evaluate-fanout")
    assert stack.flow_run_state(fanout) == "COMPLETED"
    shard_dep = stack.api("deployments/name/perk/evaluate-shard")
    shards = stack.api("flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [fanout]}}})
    lengths = [128, 1024]  # tests/micro_params.yaml: needle eval_lengths
    assert sorted((s["parameters"]["params"] for s in shards), key=str) == sorted(
        ([f"evaluate.only_lengths=[{L}]"] for L in lengths), key=str)
    assert {(s["deployment_id"], s["state"]["type"]) for s in shards} == {(shard_dep["id"], "COMPLETED")}
    assert shard_dep["work_pool_name"] == "gpu"

    host = socket.gethostname().split(".")[0]
    ran_on = {}
    for s in shards:
        [run] = stack.runs(s["id"])  # each shard: one MLflow run, tagged with the worker that ran it
        assert (run.data.tags["stage"], run.info.status) == ("evaluate", "FINISHED")
        ran_on[s["parameters"]["params"][0]] = run.data.tags["perk.worker"]
    print("shard -> worker:", ran_on)
    # both shards are submitted at once and each --limit 1 worker takes one (a shard outlasts the
    # 2 s worker poll), so they land on the two GPU workers
    assert sorted(ran_on.values()) == [f"{host}-worker-gpu0", f"{host}-worker-gpu1"]
    [merge] = stack.runs(fanout)
    assert (merge.info.run_name, merge.info.status) == ("evaluate-merge", "FINISHED")
    assert merge.data.tags["perk.worker"] == f"{host}-worker-control"
    assert merge.data.tags["perk.deployment"] == "evaluate-fanout"

    metrics = json.loads((stack.root / "data" / "eval" / "metrics.json").read_text())
    for method in ("perk", "baseline"):
        assert {f"em_{L}" for L in lengths} <= set(metrics[method]["needle_multikey"]), metrics
    print(f"baseline + evaluate-fanout: {time.monotonic() - t0:.0f} s")


def test_deployment_run_with_a_bad_key_ends_failed_with_the_message_in_its_log(stack):
    """Issue 18: `prefect deployment run perk/meta-train --params` with a bad key: Failed, the flow-run
    log names the key, no traceback, nothing trained."""
    if not stack.pids:  # run on its own (-k): bring the stack up first
        stack.up()
    cmd = [str(BIN / "prefect"), "deployment", "run", "perk/meta-train", "--watch",
           "--params", json.dumps({"params": ["meta_train.bogus=1"]})]
    r = subprocess.run(cmd, cwd=stack.root, env=stack.env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0, r.stdout[-2000:]
    flow_run_id = UUID.search(r.stdout).group(0)
    assert stack.flow_run_state(flow_run_id) == "FAILED"
    text, deadline = "", time.monotonic() + 30
    while "unknown key" not in text and time.monotonic() < deadline:  # logs arrive in batches
        logs = stack.api("logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
        text = "\n".join(log["message"] for log in logs)
        time.sleep(0.5)
    assert "meta_train.bogus: unknown key" in text, text + stack.worker_log()[-3000:]
    assert "Traceback" not in text, text
    assert not stack.runs(flow_run_id)  # no MLflow run: nothing started


def test_stack_down_leaves_nothing_running(stack):
    down = stack.perk("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(w in down.stdout for w in WORKERS) and "prefect-server" in down.stdout and "mlflow-server" in down.stdout
    assert stack.pids and not [p for p in stack.pids if _alive(p)]
    assert not list(stack.state_dir.glob("*.pid"))
    for port in (stack.pport, stack.mport):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
