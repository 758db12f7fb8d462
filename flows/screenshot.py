"""PNG of the MLflow UI comparing the PERK meta-train run with the baseline run (headless Chromium).

    python -m flows.screenshot [--root DIR] [--out docs/mlflow_compare.png] [--tracking-uri URI]

Picks the newest FINISHED runs tagged stage=meta-train and stage=baseline in the tracking store
(`MLFLOW_TRACKING_URI`/--tracking-uri, else <root>/mlruns/mlflow.db), serves that store with a
temporary `mlflow server` on a free port unless --tracking-uri is an http server already (e.g. the
stack's), and opens its compare view `#/compare-runs?runs=[...]` in `chromium --headless`.
Needs the Debian package `chromium` (apt-get install -y chromium) or --chromium PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_runs(uri: str) -> tuple[str, list[str]]:
    """(experiment id, [meta-train run id, baseline run id]): the newest FINISHED of each."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    ids, exp = [], None
    for stage in ("meta-train", "baseline"):
        runs = client.search_runs(exps, f"tags.stage = '{stage}' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1) if exps else []
        if not runs:
            raise SystemExit(f"no FINISHED {stage} run in {uri}; run the pipeline first (dvc repro)")
        ids.append(runs[0].info.run_id)
        exp = exp or runs[0].info.experiment_id
    return exp, ids


def compare_url(server: str, experiment_id: str, run_ids: list[str]) -> str:
    q = urllib.parse.urlencode({"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])})
    return f"{server.rstrip('/')}/#/compare-runs?{q}"


def _wait_ok(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"mlflow server exited ({proc.returncode})")
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s")


def shoot(url: str, out: Path, chromium: str, size: str = "1500,2600", budget_ms: int = 20000) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="perk-chromium-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
               f"--virtual-time-budget={budget_ms}", f"--screenshot={out.resolve()}", url]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if r.returncode or not out.exists():
        raise SystemExit(f"chromium failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.screenshot", description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.environ.get("PERK_ROOT") or str(ROOT))
    ap.add_argument("--out", default="docs/mlflow_compare.png")
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    ap.add_argument("--size", default="1500,2600", help="window width,height (default: %(default)s)")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    uri = args.tracking_uri or f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    exp, ids = pick_runs(uri)
    proc, server = None, uri
    if not uri.startswith("http"):
        port = _free_port()
        server = f"http://127.0.0.1:{port}"
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                                 "--port", str(port), "--workers", "1", "--backend-store-uri", uri,
                                 "--artifacts-destination", str(root / "mlruns" / "artifacts")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ok(f"{server}/health", 120, proc)
        url = compare_url(server, exp, ids)
        out = shoot(url, Path(args.out), args.chromium, args.size)
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    print(f"{out}  ({url}; meta-train {ids[0]}, baseline {ids[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
