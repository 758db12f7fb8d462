"""End to end: `perk stack up` in a copy of the project on free ports, a deployment run through the
worker lands in MLflow, `perk stack down` leaves no process behind."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# The data stages at micro size (seconds). Switch to perk/meta-train once that stage is registered
# and has micro parameters of its own.
DEPLOYMENT = "perk/data"
MICRO = [
    "tokenizer.corpus_texts=200", "tokenizer.vocab_size=512",
    "synth.tasks.babilong.enabled=false", "synth.tasks.records.enabled=false",
    "synth.tasks.retrieval.enabled=false", "synth.tasks.needle.subtasks=[single]",
    "synth.tasks.needle.n_train=4", "synth.tasks.needle.n_val=2", "synth.tasks.needle.n_test=1",
    "synth.tasks.needle.train_lengths=[128]", "synth.tasks.needle.eval_lengths=[1024]",
    "synth.tasks.needle.depths=[0.5]", "synth.tasks.needle.chunk_tokens=32",
]


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


def test_stack_up_run_deployment_down(tmp_path):
    import psutil  # noqa: PLC0415

    root = tmp_path / "proj"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("perk", "flows"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    pport, mport = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "PERK_"))}
    env |= {"PREFECT_HOME": str(root / ".prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{pport}/api",
            "MLFLOW_DISABLE_TELEMETRY": "true"}
    stack = [str(BIN / "perk"), "stack", "--root", str(root)]
    ports = ["--prefect-port", str(pport), "--mlflow-port", str(mport)]
    pids: list[int] = []
    try:
        up = subprocess.run(stack[:2] + ["up"] + stack[2:] + ports + ["--timeout", "180"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{pport}" in up.stdout and f"http://127.0.0.1:{mport}" in up.stdout
        for f in (root / ".prefect" / "stack").glob("*.pid"):
            pid = int(f.read_text().split()[0])
            pids += [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        assert len(list((root / ".prefect" / "stack").glob("*.pid"))) == 3

        run = subprocess.run([str(BIN / "prefect"), "deployment", "run", DEPLOYMENT, "--watch",
                              "--params", json.dumps({"params": MICRO})],
                             cwd=root, env=env | {"COLUMNS": "200"}, capture_output=True, text=True, timeout=400)
        assert "finished successfully" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
        assert (root / "data" / "synth" / "needle" / "train.parquet").exists()

        import mlflow
        client = mlflow.MlflowClient(f"http://127.0.0.1:{mport}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert {(r.data.tags["stage"], r.info.status) for r in runs} == {("tokenizer", "FINISHED"), ("synth", "FINISHED")}
        assert all(r.data.tags.get("perk.flow_run_id") and r.data.tags.get("perk.deployment") == "data" for r in runs)
        assert {client.get_experiment(r.info.experiment_id).name for r in runs} == {"perk-needle"}
        assert (root / "mlruns" / "mlflow.db").exists()
    finally:
        down = subprocess.run(stack[:2] + ["down"] + stack[2:], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "worker" in down.stdout and "prefect-server" in down.stdout and "mlflow-server" in down.stdout
    assert not [p for p in pids if _alive(p)]
    assert not list((root / ".prefect" / "stack").glob("*.pid"))
    for port in (pport, mport):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
