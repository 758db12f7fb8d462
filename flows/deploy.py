"""Apply the deployments of the flow `perk` to the Prefect server at PREFECT_API_URL.

    python -m flows.deploy [--pool gpu] [--control-pool control] [--root DIR]

Stage deployments run on the process work pool `gpu`; each of its workers takes one flow run at a
time (`prefect worker start --limit 1`, one worker per GPU), so a GPU never holds two jobs.
`evaluate-fanout` is a coordinator: it submits one `evaluate-shard` flow run (pool `gpu`) per eval
length, waits for them and merges, so it runs on the process pool `control` (workers that hold no
GPU) and never takes the GPU slot a shard needs. Every
deployment is applied even when its stage is not registered yet in perk.stages.ORDER (a note is
printed): such a run fails at once naming the registered stages, and starts working as soon as the
stage is registered, with no re-deploy, since workers load the flow from the source tree per run.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

POOL, CONTROL_POOL = "gpu", "control"

# deployment name -> (pool role, the flow's parameters; no stages: every registered stage, in order)
DEPLOYMENTS: dict[str, tuple[str, dict]] = {
    "pipeline": (POOL, {}),
    "data": (POOL, {"stages": ["tokenizer", "synth", "import"]}),
    "tokenizer": (POOL, {"stages": ["tokenizer"]}),
    "synth": (POOL, {"stages": ["synth"]}),
    "import": (POOL, {"stages": ["import"]}),
    "pretrain": (POOL, {"stages": ["pretrain"]}),
    "meta-train": (POOL, {"stages": ["meta-train"]}),
    "baseline": (POOL, {"stages": ["baseline"]}),
    "evaluate": (POOL, {"stages": ["evaluate"]}),
    "capacity": (POOL, {"stages": ["capacity"]}),
    "profile": (POOL, {"stages": ["profile"]}),
    "position": (POOL, {"stages": ["position"]}),
    "evaluate-fanout": (CONTROL_POOL, {"stages": ["evaluate"], "fan_out": True}),
    "evaluate-shard": (POOL, {"stages": ["evaluate"], "expand_cells": False}),
}


def ensure_pool(pool: str = POOL) -> None:
    """Create the process work pool (with the process worker's default job template) if missing."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    async def create():
        async with get_client() as client:
            try:
                await client.create_work_pool(WorkPoolCreate(
                    name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
                print(f"created work pool {pool!r} (process)")
            except ObjectAlreadyExists:
                pass
    anyio.run(create)


def apply(root: Path, pool: str = POOL, names: list[str] | None = None,
          control_pool: str = CONTROL_POOL) -> list[str]:
    """Create or update the deployments (`pool`: the GPU pool); returns 'flow/deployment' names."""
    from perk import stages

    from .pipeline import perk_flow

    flow = perk_flow.from_source(source=str(root), entrypoint="flows/pipeline.py:perk_flow")
    applied = []
    pools = {POOL: pool, CONTROL_POOL: control_pool}
    for name, (role, parameters) in DEPLOYMENTS.items():
        if names and name not in names:
            continue
        missing = [s for s in parameters.get("stages", []) if s not in stages.names()]
        if missing:
            print(f"note: deployment perk/{name}: stage(s) {missing} not registered in perk.stages.ORDER yet; "
                  f"its runs fail until they are")
        flow.deploy(name=name, work_pool_name=pools[role], parameters=parameters, build=False, push=False,
                    tags=["perk"], description=f"perk stages {parameters.get('stages', 'all')}",
                    print_next_steps=False, ignore_warnings=True)
        applied.append(f"perk/{name}")
    return applied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.split("\n")[0])
    ap.add_argument("--pool", default=POOL, help="pool of the stage deployments (GPU workers)")
    ap.add_argument("--control-pool", default=CONTROL_POOL, help="pool of the coordinator evaluate-fanout")
    ap.add_argument("--root", default=os.environ.get("PERK_ROOT") or str(Path(__file__).resolve().parents[1]),
                    help="source tree the workers run (default: PERK_ROOT or this repository)")
    ap.add_argument("names", nargs="*", help=f"deployments to apply (default: all of {list(DEPLOYMENTS)})")
    args = ap.parse_args(argv)
    ensure_pool(args.pool)
    ensure_pool(args.control_pool)
    for name in apply(Path(args.root).resolve(), args.pool, args.names, args.control_pool):
        print(f"applied {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
