"""The local stack: Prefect server + work pool + deployments + worker(s) + MLflow tracking server.

    perk stack up [--gpus 0,1] [--host 127.0.0.1] [--prefect-port 4200] [--mlflow-port 5000]
    perk stack status
    perk stack down

Every process runs in its own session with a pid file and a log under <root>/.prefect/stack/; Prefect
state lives in PREFECT_HOME=<root>/.prefect and MLflow's in <root>/mlruns/. `up` is idempotent:
services already running are kept, the work pools and deployments are (re)applied. Pool `gpu`: one
worker per GPU listed in --gpus (pinned with CUDA_VISIBLE_DEVICES, one flow run at a time), or one
unpinned worker. Pool `control`: one worker `worker-control` for coordinators (evaluate-fanout,
which waits on shard flow runs of pool `gpu`), up to 4 flow runs at once, with no GPU visible.
`--workers-only` starts just GPU workers on another machine against a running stack. Each worker
exports PERK_WORKER=<its name> (an MLflow tag `perk.worker` of the runs it makes). Before starting
workers, flow runs of this host whose process was killed are marked CRASHED (flows/recover.py).

Imports nothing heavy: the CLI loads this module, and prefect/mlflow run as subprocesses.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows.recover import _alive  # one notion of 'process gone' (zombies count)


class StackError(RuntimeError):
    """A service could not start or stop; the message says which and where its log is."""


@dataclass
class Stack:
    root: Path
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    gpus: list[str] = field(default_factory=list)
    pool: str = "gpu"
    control_pool: str = "control"
    control_limit: int = 4               # coordinators at once (they wait, holding no GPU)
    timeout: float = 120.0
    workers_only: bool = False
    prefect_api_url: str | None = None   # workers-only: the running stack's API
    mlflow_uri: str | None = None        # workers-only: the running stack's tracking server
    mlflow_args: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root).resolve()

    @property
    def state_dir(self) -> Path:
        return self.root / ".prefect" / "stack"

    @property
    def api_url(self) -> str:
        return self.prefect_api_url or f"http://{self.host}:{self.prefect_port}/api"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_uri or f"http://{self.host}:{self.mlflow_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PREFECT_HOME": str(self.root / ".prefect"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "2",       # pick up new flow runs quickly
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PERK_ROOT": str(self.root),
        })
        env.update(extra)
        return env


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def _pids(stack: Stack) -> dict[str, int]:
    out = {}
    for f in sorted(stack.state_dir.glob("*.pid")):
        try:
            out[f.stem] = int(f.read_text().split()[0])
        except (ValueError, IndexError):
            f.unlink()
    return out


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (urllib.error.URLError, OSError):
        return 0, ""


def _log_tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _start(stack: Stack, name: str, cmd: list[str], env: dict[str, str]) -> int:
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    log = stack.state_dir / f"{name}.log"
    with open(log, "ab") as fh:
        fh.write(f"\n=== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=stack.root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (stack.state_dir / f"{name}.pid").write_text(f"{proc.pid}\n{' '.join(cmd)}\n")
    return proc.pid


def _wait(stack: Stack, name: str, pid: int, ready, what: str) -> None:
    deadline = time.monotonic() + stack.timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not _alive(pid):
            raise StackError(f"{name} exited during start-up; log {stack.state_dir / (name + '.log')}:\n"
                             f"{_log_tail(stack.state_dir / (name + '.log'))}")
        time.sleep(0.5)
    raise StackError(f"{name} not ready after {stack.timeout:.0f} s ({what}); log "
                     f"{stack.state_dir / (name + '.log')}:\n{_log_tail(stack.state_dir / (name + '.log'))}")


def _running(stack: Stack, name: str) -> int | None:
    pid = _pids(stack).get(name)
    return pid if pid is not None and _alive(pid) else None


def _service(stack: Stack, name: str, port: int, cmd: list[str], health: str, expect: str) -> None:
    if _running(stack, name):
        print(f"{name}: already running (pid {_running(stack, name)})")
        return
    if not _port_free(stack.host, port):
        raise StackError(f"{name}: port {stack.host}:{port} is in use; choose another port or run `perk stack down`")
    # mlflow's background job runner (huey consumers, ~8 processes) serves GenAI jobs we do not use
    pid = _start(stack, name, cmd, stack.env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION=os.environ.get(
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")))
    t0 = time.monotonic()
    _wait(stack, name, pid, lambda: (lambda r: r[0] == 200 and expect in r[1])(_get(health)), f"GET {health}")
    print(f"{name}: ready in {time.monotonic() - t0:.1f} s (pid {pid})")


def _workers_ready(stack: Stack, pool: str, names: list[str]) -> bool:
    req = urllib.request.Request(f"{stack.api_url}/work_pools/{pool}/workers/filter", data=b"{}",
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            online = {w["name"] for w in json.loads(r.read()) if w.get("status") == "ONLINE"}
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return set(names) <= online


def _dead_flow_runs(stack: Stack) -> list[str]:
    """Lease files (flows/recover.py) of this host whose flow-run process is gone."""
    me = socket.gethostname()
    dead = []
    for f in (stack.root / ".prefect" / "flow-runs").glob("*.json"):
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if info.get("host") == me and not _alive(int(info.get("pid", 0))):
            dead.append(f.stem)
    return dead


def _recover(stack: Stack) -> None:
    """Flow runs killed with their worker: Prefect CRASHED, their RUNNING MLflow runs FAILED."""
    if not _dead_flow_runs(stack):
        return
    out = subprocess.run([sys.executable, "-m", "flows.recover", "--root", str(stack.root)], cwd=stack.root,
                         env=stack.env(), capture_output=True, text=True, timeout=stack.timeout)
    (stack.state_dir / "recover.log").write_text(out.stdout + out.stderr)
    for line in out.stdout.splitlines():
        print(line)
    if out.returncode:
        print(f"warning: recovering dead flow runs failed; log {stack.state_dir / 'recover.log'}", file=sys.stderr)


def up(stack: Stack) -> dict[str, str]:
    """Start what is not running, apply pool + deployments, start workers; returns the URLs."""
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    (stack.root / ".prefect").mkdir(exist_ok=True)
    (stack.root / "mlruns").mkdir(exist_ok=True)
    if not stack.workers_only:
        _service(stack, "prefect-server", stack.prefect_port,
                 [_bin("prefect"), "server", "start", "--host", stack.host, "--port", str(stack.prefect_port)],
                 f"{stack.api_url}/health", "true")
        _service(stack, "mlflow-server", stack.mlflow_port,
                 [_bin("mlflow"), "server", "--host", stack.host, "--port", str(stack.mlflow_port),
                  "--workers", "1", "--backend-store-uri", f"sqlite:///{stack.root}/mlruns/mlflow.db",
                  "--artifacts-destination", str(stack.root / "mlruns" / "artifacts"), *stack.mlflow_args],
                 f"{stack.tracking_uri}/health", "OK")
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "flows.deploy", "--pool", stack.pool, "--control-pool",
                              stack.control_pool, "--root", str(stack.root)],
                             cwd=stack.root, env=stack.env(), capture_output=True, text=True, timeout=stack.timeout * 3)
        (stack.state_dir / "deploy.log").write_text(out.stdout + out.stderr)
        if out.returncode:
            raise StackError(f"applying deployments failed; log {stack.state_dir / 'deploy.log'}:\n"
                             f"{_log_tail(stack.state_dir / 'deploy.log', 25)}")
        for line in out.stdout.splitlines():  # skip prefect's per-deployment tables
            if line.startswith(("applied ", "note: ", "created ")):
                print(line)
        print(f"deployments applied in {time.monotonic() - t0:.1f} s (log {stack.state_dir / 'deploy.log'})")

    _recover(stack)
    host = socket.gethostname().split(".")[0]
    # (pid-file name, pool, --limit, extra env): GPU workers, and the coordinators' worker on the head
    workers = [(f"worker-gpu{gpu}" if gpu is not None else "worker", stack.pool, 1,
                {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}) for gpu in stack.gpus or [None]]
    if not stack.workers_only:
        workers.append(("worker-control", stack.control_pool, stack.control_limit, {"CUDA_VISIBLE_DEVICES": ""}))
    started: dict[str, list[tuple[str, str, int]]] = {}  # pool -> (name, worker name, pid)
    for name, pool, limit, extra in workers:
        worker = f"{host}-{name}"
        pid = _running(stack, name)
        if pid:
            print(f"{name}: already running (pid {pid})")
        else:
            pid = _start(stack, name, [_bin("prefect"), "worker", "start", "--pool", pool, "--type", "process",
                                       "--name", worker, "--limit", str(limit)], stack.env(PERK_WORKER=worker, **extra))
        started.setdefault(pool, []).append((name, worker, pid))
    t0 = time.monotonic()
    for pool, ws in started.items():
        names = [w for _, w, _ in ws]
        _wait(stack, ws[0][0], ws[0][2], lambda pool=pool, names=names: _workers_ready(stack, pool, names),
              f"workers {names} online in pool {pool!r}")
        each = "one flow run at a time each" if pool == stack.pool else f"up to {stack.control_limit} coordinators"
        print(f"pool {pool}: workers {', '.join(names)} online in {time.monotonic() - t0:.1f} s ({each})")
    urls = {"prefect_ui": stack.api_url.removesuffix("/api"), "prefect_api": stack.api_url,
            "mlflow_ui": stack.tracking_uri}
    (stack.state_dir / "stack.json").write_text(json.dumps(
        {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(stack).items()}, **urls}, indent=1))
    return urls


def _tree(pid: int) -> list[int]:
    """The process and its descendants (flow runs a worker started may sit in other groups)."""
    try:
        import psutil
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return [pid]


def down(stack: Stack, grace: float = 20.0) -> list[str]:
    """Stop every process of the stack, SIGKILL after `grace` s; returns the names. All workers
    are stopped together first (each may take its grace to wind down a polling loop; one after
    the other that was a minute), then the tracking server, then the Prefect server the workers
    report to."""
    pids = _pids(stack)
    waves = [sorted(n for n in pids if n.startswith("worker")), ["mlflow-server"], ["prefect-server"]]
    waves += [sorted(set(pids) - {n for w in waves for n in w})]
    stopped = []
    for wave in waves:
        alive = {name: pids[name] for name in wave if name in pids and _alive(pids[name])}
        trees = {name: _tree(pid) for name, pid in alive.items()}
        for name, tree in trees.items():
            for p in tree:
                try:
                    os.killpg(p, signal.SIGTERM) if p == alive[name] else os.kill(p, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        every = [p for tree in trees.values() for p in tree]
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in every):
            time.sleep(0.2)
        for name, tree in trees.items():
            for p in tree:
                if _alive(p):
                    try:
                        os.killpg(p, signal.SIGKILL) if p == alive[name] else os.kill(p, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            stopped.append(name)
        for name in wave:
            if name in pids:
                (stack.state_dir / f"{name}.pid").unlink(missing_ok=True)
    return stopped


def status(stack: Stack) -> dict[str, int | None]:
    return {name: (pid if _alive(pid) else None) for name, pid in _pids(stack).items()}


# ---------------------------------------------------------------- CLI glue (perk stack ...)

def add_arguments(sp) -> None:
    sp.add_argument("action", choices=["up", "down", "status"], help="start, stop, or show the stack")
    sp.add_argument("--root", default=None, help="project directory (default: PERK_ROOT, else the current "
                    "directory if it holds params.yaml, else the repository of this package)")
    sp.add_argument("--host", default="127.0.0.1", help="interface the servers bind to (default: %(default)s)")
    sp.add_argument("--prefect-port", type=int, default=4200, help="Prefect server port (default: %(default)s)")
    sp.add_argument("--mlflow-port", type=int, default=5000, help="MLflow server port (default: %(default)s)")
    sp.add_argument("--gpus", default="", help="comma-separated GPU ids: one worker per GPU, pinned with "
                    "CUDA_VISIBLE_DEVICES (default: one unpinned worker)")
    sp.add_argument("--pool", default="gpu", help="Prefect work pool of the GPU workers (default: %(default)s)")
    sp.add_argument("--control-pool", default="control", help="work pool of the coordinator worker "
                    "(evaluate-fanout; not with --workers-only) (default: %(default)s)")
    sp.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each service (default: %(default)s)")
    sp.add_argument("--workers-only", action="store_true", help="start only GPU workers (another machine), against "
                    "--prefect-api-url and --mlflow-uri of a running stack")
    sp.add_argument("--prefect-api-url", help="e.g. http://head:4200/api (with --workers-only)")
    sp.add_argument("--mlflow-uri", help="e.g. http://head:5000 (with --workers-only)")
    sp.add_argument("--mlflow-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `mlflow server`, e.g. --mlflow-arg=--allowed-hosts=head:5000 (repeatable)")


def default_root() -> Path:
    if os.environ.get("PERK_ROOT"):
        return Path(os.environ["PERK_ROOT"])
    if Path("params.yaml").exists():
        return Path.cwd()
    return Path(__file__).resolve().parents[1]


def main(args) -> int:
    stack = Stack(root=Path(args.root) if args.root else default_root(), host=args.host,
                  prefect_port=args.prefect_port, mlflow_port=args.mlflow_port,
                  gpus=[g.strip() for g in args.gpus.split(",") if g.strip()], pool=args.pool,
                  control_pool=args.control_pool,
                  timeout=args.timeout, workers_only=args.workers_only, prefect_api_url=args.prefect_api_url,
                  mlflow_uri=args.mlflow_uri, mlflow_args=args.mlflow_arg)
    if args.action == "up":
        if stack.workers_only and not (stack.prefect_api_url and stack.mlflow_uri):
            raise StackError("--workers-only needs --prefect-api-url and --mlflow-uri of the running stack")
        try:
            urls = up(stack)
        except BaseException:
            print("start-up failed; stopping what was started (`perk stack down`)", file=sys.stderr)
            down(stack)
            raise
        print(f"\nPrefect UI   {urls['prefect_ui']}\nMLflow UI    {urls['mlflow_ui']}\n"
              f"logs, pids   {stack.state_dir}\n\nIn another shell:\n"
              f"  export PREFECT_API_URL={urls['prefect_api']} MLFLOW_TRACKING_URI={urls['mlflow_ui']} "
              f"PREFECT_HOME={stack.root / '.prefect'}\n"
              f"  {_bin('prefect')} deployment run perk/pipeline --watch\n"
              f"  {_bin('prefect')} deployment run perk/evaluate-fanout --watch   # one shard per eval length, "
              f"over the GPU workers\n")
    elif args.action == "down":
        stopped = down(stack)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    else:
        st = status(stack)
        for name, pid in st.items():
            print(f"{name:16s} {'running, pid ' + str(pid) if pid else 'not running'}")
        info = stack.state_dir / "stack.json"
        if info.exists() and any(st.values()):
            d = json.loads(info.read_text())
            print(f"Prefect UI {d['prefect_ui']}   MLflow UI {d['mlflow_ui']}")
        if not st:
            print("stack is down")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`perk stack ...` / `perk-stack ...` / `python -m flows.stack ...`."""
    import argparse

    ap = argparse.ArgumentParser(prog="perk stack", description="Start/stop the local Prefect + MLflow stack: "
                                 "Prefect server, work pools 'gpu' (one worker per GPU) and 'control' (fan-out "
                                 "coordinators), the perk deployments, the workers and the MLflow tracking server "
                                 "on 127.0.0.1 (pids and logs in .prefect/stack/).")
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        return main(args)
    except StackError as err:
        print(f"perk stack: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perk stack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
