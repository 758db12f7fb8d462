"""The Prefect flow `perk`: run registered stages in pipeline order as retrying tasks.

    perk_flow(stages=["tokenizer", "synth"], params=["synth.tasks.needle.n_train=4"])

Stages come from `perk.stages.STAGES` (pipeline order), so stages registered later are picked up
without touching this file. Each stage runs inside a `perk.tracking` run (a stage that opens its
own run for the same stage logs into it), the flow run id, git commit and params hash are exported
as PERK_* variables for the MLflow tags, and a markdown artifact links the MLflow runs made.

Fan-out hook: a stage function with a `cells(params) -> list[list[str]]` attribute is run as one
task per cell (each cell is a list of extra overrides; `evaluate` has one shard per eval length),
then its optional `merge(params)` attribute collects the cells. The cell tasks run one after the
other inside the flow run, so a worker (one GPU) still holds one job at a time; each shard is its
own task run (retried alone) and its own MLflow run. Spreading shards over several workers would
mean `run_deployment` per shard; that is not done here.

While it runs, the flow keeps a lease file (flows/recover.py) so that a flow run whose process was
killed can be marked CRASHED, with its RUNNING MLflow runs FAILED, when the workers restart.
"""
from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

ROOT = Path(__file__).resolve().parents[1]

# Errors that no retry can fix: bad parameters, missing inputs, programming errors.
_PERMANENT = (ValueError, TypeError, KeyError, AttributeError, ImportError, FileNotFoundError, NotImplementedError)


def _transient(task, task_run, state) -> bool:
    """Retry only faults that may go away (I/O, CUDA/driver, network), not deterministic ones."""
    try:
        state.result()
    except _PERMANENT:
        return False
    except Exception:
        return True
    return False


def registered() -> dict:
    from perk.stages import STAGES
    return STAGES


def resolve_stages(stages: list[str] | None, target: str | None = None) -> list[str]:
    """Requested stage names in pipeline order; all when none given; up to `target` inclusive."""
    table = list(registered())
    if target is not None:
        _check([target], table)
        return table[: table.index(target) + 1]
    if not stages:
        return table
    names = [s.replace("-", "_") for s in stages]
    _check(names, table)
    return [s for s in table if s in names]


def _check(names: list[str], table: list[str]) -> None:
    missing = [s for s in names if s not in table]
    if missing:
        raise ValueError(f"stage(s) {missing} not registered in perk.stages.STAGES "
                         f"(registered, in order: {table}); nothing was run")


def _params_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else Path(os.environ.get("PERK_ROOT") or ROOT) / p


def load(params_file: str, overrides: list[str]):
    from perk.config import load_params
    return load_params(_params_path(params_file), overrides)


# NO_CACHE: a stage asked for always runs (DVC, not Prefect, decides what is up to date)
@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient, task_run_name="{name}",
      cache_policy=NO_CACHE)
def run_stage(name: str, params_file: str = "params.yaml", overrides: list[str] | None = None) -> str:
    """One stage call inside its MLflow run; returns the outputs as text (results stay small)."""
    from perk import tracking
    p = load(params_file, overrides or [])
    with tracking.run(name, p):
        out = registered()[name](p)
    get_run_logger().info("stage %s -> %s", name, out)
    return str(out)


def _run_with_cells(name: str, params_file: str, overrides: list[str]) -> str:
    fn = registered()[name]
    cells = fn.cells(load(params_file, overrides))
    # one at a time: the flow run owns one GPU (see the module docstring)
    outs = [run_stage.with_options(task_run_name=f"{name}[{i}]")(name, params_file, overrides + list(cell))
            for i, cell in enumerate(cells)]
    merge = getattr(fn, "merge", None)
    if merge is not None:
        from perk import tracking
        p = load(params_file, overrides)
        with tracking.run(name, p, run_name=f"{name}-merge"):
            return str(merge(p))
    return str(outs)


def _recover():
    """flows/recover.py, also when a worker loaded this file by path (not as the package `flows`)."""
    try:
        from flows import recover
    except ImportError:
        import importlib.util
        spec = importlib.util.spec_from_file_location("perk_flows_recover", Path(__file__).with_name("recover.py"))
        recover = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(recover)
    return recover


def _link_runs(run_ids: list[str]) -> None:
    from perk import tracking
    if not run_ids:
        return
    lines = ["# MLflow runs of this flow run", "", f"Tracking URI: `{tracking.tracking_uri()}`", "",
             "| run | link |", "|---|---|"]
    import mlflow
    for rid in run_ids:
        r = mlflow.get_run(rid)
        url = tracking.run_url(rid)
        link = f"[{r.info.run_name}]({url})" if url.startswith("http") else f"`{url}`"
        lines.append(f"| {r.info.run_name} ({r.info.status}) | {link} |")
    create_markdown_artifact("\n".join(lines), key="mlflow-runs", description="MLflow runs made by this flow run")


@flow(name="perk", log_prints=True)
def perk_flow(stages: list[str] | None = None, params: list[str] | None = None,
              target: str | None = None, params_file: str = "params.yaml") -> dict[str, str]:
    """Run `stages` (default: all registered, in order; or every stage up to `target`) with
    `params` overrides such as ["model.name=gpt2"] applied to params_file."""
    from prefect.runtime import deployment, flow_run
    from perk import tracking

    overrides = list(params or [])
    names = resolve_stages(stages, target)
    p = load(params_file, overrides)  # fail fast on bad parameters, before any stage runs
    env = {"PERK_FLOW_RUN_ID": str(flow_run.id or ""), "PERK_FLOW_RUN_NAME": str(flow_run.name or ""),
           "PERK_DEPLOYMENT": str(deployment.name or ""),
           "PERK_GIT_COMMIT": tracking.git_commit(), "PERK_PARAMS_HASH": tracking.params_hash(p)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if v})
    first = len(tracking.RUN_IDS)
    outputs: dict[str, str] = {}
    lease = None
    if flow_run.id:
        lease = _recover().write_lease(tracking.root(), str(flow_run.id))
    try:
        for name in names:
            if hasattr(registered()[name], "cells"):
                outputs[name] = _run_with_cells(name, params_file, overrides)
            else:
                outputs[name] = run_stage(name, params_file, overrides)
    finally:
        _link_runs(tracking.RUN_IDS[first:])
        if lease is not None:
            lease.unlink(missing_ok=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return outputs


if __name__ == "__main__":
    perk_flow()
