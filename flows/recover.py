"""Flow runs whose process died (worker or machine killed, SIGKILL, OOM killer): mark them crashed.

    python -m flows.recover [--root DIR]     # `perk stack up` runs it before starting workers

A killed flow-run process runs no `finally`, so Prefect keeps showing the flow run RUNNING and
MLflow keeps its stage runs RUNNING. Every flow run of `perk` therefore leaves a lease file
`<root>/.prefect/flow-runs/<flow_run_id>.json` (host, pid) while it runs and removes it when it
ends in any way Python sees. A lease whose host is this machine and whose pid is gone belongs to a
dead flow run: its Prefect flow run is set CRASHED (if not already final), the MLflow runs tagged
with its `perk.flow_run_id` that are still RUNNING are set FAILED, and the lease is removed.
Each machine recovers its own leases when its workers (re)start. Stage outputs need no repair:
they are written atomically, and training resumes from its last complete checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

LEASES = Path(".prefect") / "flow-runs"


def host() -> str:
    return socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def lease_dir(root: str | Path) -> Path:
    return Path(root) / LEASES


def write_lease(root: str | Path, flow_run_id: str) -> Path:
    d = lease_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{flow_run_id}.json"
    path.write_text(json.dumps({"flow_run_id": flow_run_id, "host": host(), "pid": os.getpid()}))
    return path


def dead_leases(root: str | Path) -> list[dict]:
    """Leases of this host whose process is gone (cheap: no prefect/mlflow import)."""
    out = []
    for f in sorted(lease_dir(root).glob("*.json")):
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if info.get("host") == host() and not _alive(int(info.get("pid", 0))):
            out.append(info | {"path": str(f)})
    return out


def _crash_flow_run(flow_run_id: str) -> str:
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    async def go() -> str:
        async with get_client() as client:
            fr = await client.read_flow_run(flow_run_id)
            if fr.state is not None and fr.state.is_final():
                return fr.state.type.value
            await client.set_flow_run_state(flow_run_id, Crashed(
                message=f"flow-run process on {host()} died (killed); marked by flows.recover"), force=True)
            return "CRASHED"
    return anyio.run(go)


def _fail_mlflow_runs(flow_run_id: str) -> list[str]:
    import mlflow

    from perk import tracking

    client = mlflow.MlflowClient(tracking.setup())
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return []
    runs = client.search_runs(exps, filter_string=f"tags.`perk.flow_run_id` = '{flow_run_id}' "
                                                  "and attributes.status = 'RUNNING'")
    for r in runs:
        client.set_terminated(r.info.run_id, status="FAILED")
    return [r.info.run_id for r in runs]


def recover(root: str | Path) -> list[dict]:
    """Mark the dead flow runs of this host CRASHED and their RUNNING MLflow runs FAILED."""
    done = []
    for info in dead_leases(root):
        fid = info["flow_run_id"]
        state = _crash_flow_run(fid)
        failed = _fail_mlflow_runs(fid)
        Path(info["path"]).unlink(missing_ok=True)
        done.append({"flow_run_id": fid, "state": state, "mlflow_failed": failed})
        print(f"recovered flow run {fid} (pid {info['pid']} gone): prefect {state}, "
              f"MLflow runs set FAILED: {failed or 'none'}")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.recover", description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.environ.get("PERK_ROOT") or str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)
    recover(Path(args.root).resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
