"""The Prefect flow `perk`: run registered stages in pipeline order as retrying tasks.

    perk_flow(stages=["tokenizer", "synth"], params=["synth.tasks.needle.n_train=4"])

Stages come from `perk.stages` (pipeline order, one name per stage: `meta-train` is the CLI
command, the DVC stage and the deployment). Each stage call goes through `perk.stages.call`,
which opens that call's one MLflow run; this flow opens none, it exports the flow run id,
deployment, git commit and params hash as PERK_* variables (tags `perk.*` of the stage's run) and
adds a markdown artifact linking the MLflow runs made.

Sharding: a stage whose `Stage.shards` is set (`evaluate`: one shard per eval length) runs once per
shard (each shard is a list of extra overrides), then once more as its declared merge (for
`evaluate`: the full-grid call, which reuses every cached cell and summarizes). Two ways:

- default: one task per shard, one after the other inside this flow run, so the worker (one GPU)
  holds one job at a time; each shard is its own task run (retried alone) and its own MLflow run.
- `fan_out=True`: one flow run of the deployment `perk/<stage>-shard` per shard (`run_deployment`,
  all submitted at once, linked as subflows), so every free worker of the shard deployment's pool
  takes one; this flow run waits for all of them, fails naming the shards that did not complete,
  then runs the merge itself. Run it from a pool that is not the shards' pool (deployment
  `perk/evaluate-fanout` on pool `control`): a coordinator waiting in a `--limit 1` GPU slot would
  keep a shard out of it.

`expand_cells=False` runs a sharded stage once, with the given overrides (what a shard does).

While it runs, the flow keeps a lease file (flows/recover.py) so that a flow run whose process was
killed can be marked CRASHED, with its RUNNING MLflow runs FAILED, when the workers restart.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 2.0  # how often a fan-out coordinator reads the states of its shard flow runs

# Errors that no retry can fix: bad parameters, missing inputs, programming errors.
_PERMANENT = (ValueError, TypeError, KeyError, AttributeError, ImportError, FileNotFoundError, NotImplementedError)


_BAD_INPUT: set[str] = set()  # messages of bad-input failures this process has already logged


class _NoTracebackForBadInput(logging.Filter):
    """A deployment's flow run that ends Failed is logged once more by Prefect's engine ("Engine
    execution exited with unexpected exception") with a traceback. For bad input that traceback says
    nothing the one-line message above it did not, so the record keeps its text and loses exc_info."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if isinstance(err, ValueError) and str(err) in _BAD_INPUT:
            record.exc_info, record.exc_text = None, None
            record.msg = f"{record.msg}: {type(err).__name__} (bad input, see the message above)"
        return True


logging.getLogger("prefect.flow_runs").addFilter(_NoTracebackForBadInput())


def _transient(task, task_run, state) -> bool:
    """Retry only faults that may go away (I/O, CUDA/driver, network), not deterministic ones."""
    try:
        state.result()
    except _PERMANENT:
        return False
    except Exception:
        return True
    return False


def registered() -> list[str]:
    from perk import stages
    return stages.names()


def resolve_stages(stages: list[str] | None, target: str | None = None) -> list[str]:
    """Requested stage names in pipeline order; all when none given; up to `target` inclusive.
    Older spellings (meta_train, train) are accepted."""
    from perk import stages as registry
    from perk.config import ConfigError

    table = registered()
    try:
        if target is not None:
            return table[: table.index(registry.canonical(target)) + 1]
        if not stages:
            return table
        names = {registry.canonical(s) for s in stages}
    except ConfigError as err:
        raise ValueError(f"{err}; nothing was run") from None
    return [s for s in table if s in names]


def _params_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else Path(os.environ.get("PERK_ROOT") or ROOT) / p


def load(params_file: str, overrides: list[str], cell: str | None = None):
    from perk.config import load_params
    return load_params(_params_path(params_file), overrides, cell=cell)


# NO_CACHE: a stage asked for always runs (DVC, not Prefect, decides what is up to date)
@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient, task_run_name="{name}",
      cache_policy=NO_CACHE)
def run_stage(name: str, params_file: str = "params.yaml", overrides: list[str] | None = None,
              merge: bool = False, cell: str | None = None) -> str:
    """One stage call (`merge`: the merge its Shards declare); `perk.stages.call` opens its one
    MLflow run, this flow only exports the PERK_* tags. Returns the outputs as text."""
    from perk import stages
    out = stages.call(name, load(params_file, overrides or [], cell), merge=merge)
    get_run_logger().info("stage %s -> %s", name, out)
    return str(out)


def _merge(name: str, params_file: str, overrides: list[str], matrix_cell: str | None = None) -> str:
    """The sharded stage's whole call, which reuses every shard's output (its own MLflow run)."""
    return run_stage.with_options(task_run_name=f"{name}-merge")(name, params_file, overrides, merge=True,
                                                                  cell=matrix_cell)


def _run_with_cells(name: str, params_file: str, overrides: list[str], matrix_cell: str | None = None) -> str:
    from perk import stages
    cells = stages.get(name).shards.split(load(params_file, overrides, matrix_cell))
    # one at a time: the flow run owns one GPU (see the module docstring)
    for i, cell in enumerate(cells):
        run_stage.with_options(task_run_name=f"{name}[{i}]")(name, params_file, overrides + list(cell),
                                                               cell=matrix_cell)
    return _merge(name, params_file, overrides, matrix_cell)


def shard_deployment(name: str) -> str:
    return f"perk/{name}-shard"


def _fan_out(name: str, params_file: str, overrides: list[str], matrix_cell: str | None = None) -> str:
    """One shard flow run per cell on the shard deployment's pool; wait for all, then merge here."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext
    from prefect.exceptions import ObjectNotFound

    log = get_run_logger()
    from perk import stages
    cells = stages.get(name).shards.split(load(params_file, overrides, matrix_cell))
    deployment = shard_deployment(name)
    parent = FlowRunContext.get().flow_run
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_deployment_by_name(deployment).work_pool_name
        except ObjectNotFound:
            raise ValueError(f"fan_out: deployment {deployment} not found; apply it (python -m flows.deploy)") from None
        if pool and pool == parent.work_pool_name:
            log.warning("this coordinator runs on pool %r, the pool of its shards: a `--limit 1` worker it holds "
                        "cannot take a shard (run perk/evaluate-fanout, on pool 'control')", pool)
        submitted = [run_deployment(deployment, timeout=0, as_subflow=True, flow_run_name=f"{parent.name}-{name}[{i}]",
                                    parameters={"stages": [name], "params": overrides + list(cell),
                                                "params_file": params_file, "expand_cells": False,
                                                "cell": matrix_cell})
                     for i, cell in enumerate(cells)]
        log.info("%s: %d shard(s) submitted to %s (pool %r): %s", name, len(cells), deployment, pool,
                 ", ".join(r.name for r in submitted))
        while True:
            runs = [client.read_flow_run(r.id) for r in submitted]
            if all(r.state is not None and r.state.is_final() for r in runs):
                break
            time.sleep(POLL_SECONDS)
    failed = [f"{name}[{i}] {list(cell)} (flow run {r.name} {r.id}: {r.state.type.value})"
              for i, (cell, r) in enumerate(zip(cells, runs)) if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(cells)} {name} shard(s) did not complete, so no merge: "
                           + "; ".join(failed))
    return _merge(name, params_file, overrides, matrix_cell)


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
              target: str | None = None, params_file: str = "params.yaml", fan_out: bool = False,
              expand_cells: bool = True, cell: str | None = None) -> dict[str, str]:
    """Run `stages` (default: all registered, in order; or every stage up to `target`) with
    `params` overrides such as ["model.name=gpt2"] applied to params_file. A stage with cells runs
    them one after the other here, or as shard flow runs on other workers (`fan_out`), or once
    without cell expansion (`expand_cells=False`, a shard itself). `cell`: run the stages as that
    cell of the task matrix (params.yaml `matrix:`, perk/matrix.py), as `perk <stage> --cell` does."""
    from prefect.runtime import deployment, flow_run
    from perk import stages as registry, tracking

    from prefect.states import Failed

    overrides = list(params or [])
    try:
        names = resolve_stages(stages, target)
        p = load(params_file, overrides, cell)  # fail fast on bad parameters, before any stage runs
    except ValueError as err:
        # bad input, not a crash: the message alone in the flow-run log, no engine traceback
        _BAD_INPUT.add(str(err))
        get_run_logger().error(str(err))
        return Failed(message=str(err), data=err)
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
            if expand_cells and registry.get(name).shards is not None:
                cells = _fan_out if fan_out else _run_with_cells
                outputs[name] = cells(name, params_file, overrides, cell)
            else:
                outputs[name] = run_stage(name, params_file, overrides, cell=cell)
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
