"""MLflow tracking for every stage: one experiment per task family, one run per stage call.

Where runs go: `MLFLOW_TRACKING_URI` when set (e.g. the stack's `http://127.0.0.1:5000`), else the
local store `sqlite:///<root>/mlruns/mlflow.db` with artifacts under `<root>/mlruns/artifacts`
(MLflow 3 no longer accepts a plain ./mlruns file store). `<root>` is `PERK_ROOT` or the repo.

    with tracking.run("meta-train", params, task="needle") as r:
        tracking.log_metrics({"loss": 1.2}, step=10)

Exactly one run per stage call, opened by `perk.stages.call` under the CLI, DVC and Prefect alike;
every `PERK_*` environment variable becomes a `perk.*` tag (the flow exports PERK_FLOW_RUN_ID and
the deployment, which links the run to its Prefect flow run).
No server is needed; mlflow is imported lazily so `import perk.tracking` stays cheap.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from . import tracking_guard  # noqa: E402  (stdlib only; sets mlflow's retry defaults before mlflow loads)

ROOT = Path(__file__).resolve().parents[1]

# Run ids opened by this process, oldest first; the Prefect flow reads them to link its runs.
RUN_IDS: list[str] = []


def root() -> Path:
    return Path(os.environ.get("PERK_ROOT") or ROOT)


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    (root() / "mlruns").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root() / 'mlruns' / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or "://" not in uri


def setup() -> str:
    """Point mlflow at the store; returns the tracking URI."""
    import logging

    import mlflow

    # mlflow's INFO lines (system-metrics monitor start/stop, table migrations) would bury a stage's
    # own progress and a failing stage's one-line error; warnings and errors still show
    for name in ("mlflow.system_metrics", "mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri()
    tracking_guard.check_reachable(uri)  # a dead server fails here, before any stage work
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///") and ":memory:" not in uri and uri not in _READY:
        _create_store(uri)
    return uri


# sqlite stores this process has opened (mlflow caches the store object per URI after that)
_READY: set[str] = set()


def _create_store(uri: str) -> None:
    """Open (create, migrate) a local sqlite store under an exclusive file lock beside it.

    Without the lock, stages started side by side on a fresh store (DVC cells in parallel, Prefect
    workers on one machine) each run its schema migration at once and all of them fail in alembic
    ("Online migration expected to match one row"); with it the first creates, the rest wait and
    find it current.
    """
    import fcntl

    import mlflow

    db = Path(uri.removeprefix("sqlite:///"))
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
        mlflow.search_experiments(max_results=1)
    _READY.add(uri)


def experiment_name(task: str | None) -> str:
    return f"perk-{task}" if task else "perk"


def get_experiment_id(task: str | None) -> str:
    """Id of the task family's experiment, created on first use (local store: artifacts in mlruns/)."""
    import mlflow

    uri = setup()
    name = experiment_name(task)
    with tracking_guard.at_start(uri):
        exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if _is_local(uri):  # a server chooses its own (proxied) artifact location
        location = (root() / "mlruns" / "artifacts" / name).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        with tracking_guard.at_start(uri):
            exp = mlflow.get_experiment_by_name(name)
            if exp is None:
                raise
        return exp.experiment_id


# ---------------------------------------------------------------- params and tags

def _as_dict(params: Any) -> dict:
    if params is None:
        return {}
    if hasattr(params, "model_dump"):
        return params.model_dump(mode="json")
    return dict(params)


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'model': {'n_embd': 128}} -> {'model.n_embd': 128}; lists stay values, except lists of
    mappings (imports.datasets), flattened by index: as one JSON value they pass MLflow's 6,000-character
    limit (it truncates them, with a warning on stderr)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, v in enumerate(value):
                out.update(flatten(v, f"{name}.{i}."))
        else:
            out[name] = value
    return out


def params_hash(params: Any) -> str:
    """Short stable hash of the parameters (order-independent)."""
    blob = json.dumps(_as_dict(params), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def git_commit() -> str:
    if os.environ.get("PERK_GIT_COMMIT"):
        return os.environ["PERK_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def infer_task(params: Any) -> str | None:
    """The task family a run belongs to: the only enabled synth family, else None ('perk')."""
    tasks = _as_dict(params).get("synth", {}).get("tasks", {})
    enabled = [name for name, spec in tasks.items() if isinstance(spec, Mapping) and spec.get("enabled", True)]
    return enabled[0] if len(enabled) == 1 else None


def _context_length(tree: dict, task: str | None) -> int | None:
    tasks = tree.get("synth", {}).get("tasks", {})
    specs = [tasks[task]] if task in tasks else [s for s in tasks.values() if s.get("enabled", True)]
    lengths = [n for s in specs for n in s.get("train_lengths", [])]
    return max(lengths) if lengths else None


def run_tags(stage: str, params: Any, task: str | None = None) -> dict[str, str]:
    tree = _as_dict(params)
    tags = {
        "stage": stage,
        "method": "baseline" if "baseline" in stage else "perk",
        "engine": tree.get("inner", {}).get("engine"),
        "model": tree.get("model", {}).get("name"),
        "task": task,
        "cell": tree.get("cell"),  # a cell of the task matrix (perk/matrix.py); None in the main chain
        "context_length": _context_length(tree, task),
        "git_commit": git_commit(),
        "params_hash": params_hash(tree),
    }
    tags["mlflow.source.git.commit"] = tags["git_commit"]
    for key, value in os.environ.items():
        if key.startswith("PERK_") and key != "PERK_ROOT" and value:
            tags["perk." + key[5:].lower()] = value
    return {k: str(v) for k, v in tags.items() if v is not None}


# ---------------------------------------------------------------- runs

@contextlib.contextmanager
def run(stage: str, params: Any = None, task: str | None = None, run_name: str | None = None,
        tags: Mapping[str, Any] | None = None, system_metrics: bool = True) -> Iterator[Any]:
    """Open the MLflow run of one stage call; FAILED if the body raises, FINISHED otherwise.

    `perk.stages.call` opens exactly one per stage call; orchestrators add tags through PERK_*
    environment variables and never open runs of their own."""
    import mlflow

    task = task or infer_task(params)
    exp_id = get_experiment_id(task)
    active = mlflow.active_run()
    all_tags = run_tags(stage, params, task) | {k: str(v) for k, v in (tags or {}).items()}
    uri = tracking_uri()
    with tracking_guard.at_start(uri):
        r = mlflow.start_run(experiment_id=exp_id, run_name=run_name or stage, nested=active is not None,
                             tags=all_tags, log_system_metrics=system_metrics)
        try:
            flat = {k: json.dumps(v) if isinstance(v, (list, dict)) else v
                    for k, v in flatten(_as_dict(params)).items()}
            if flat:
                mlflow.log_params(flat)
        except BaseException:
            tracking_guard.end_run("FAILED")
            raise
    RUN_IDS.append(r.info.run_id)
    unlogged = root() / "mlruns" / "unlogged"
    try:
        yield r
    except BaseException:
        tracking_guard.end_run("FAILED")
        tracking_guard.OUTBOX.report(r.info.run_id, stage, uri, unlogged)
        raise
    tracking_guard.end_run("FINISHED")
    tracking_guard.OUTBOX.report(r.info.run_id, stage, uri, unlogged)


def _active():
    """The open run, or None: outside a stage call (a notebook, a non-zero torchrun rank) the
    log_* functions below do nothing rather than let MLflow invent a run in its default experiment."""
    import sys
    if "mlflow" not in sys.modules:
        return None
    import mlflow
    return mlflow.active_run()


def active_run_id() -> str | None:
    r = _active()
    return r.info.run_id if r else None


def set_tags(tags: Mapping[str, Any]) -> None:
    import mlflow
    if _active():
        values = {k: str(v) for k, v in tags.items() if v is not None}
        tracking_guard.log("tags", values, fallback=lambda: mlflow.set_tags(values))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow
    if not _active():
        return

    values = {k: float(v) for k, v in metrics.items()}
    tracking_guard.log("metrics", values, step, fallback=lambda: mlflow.log_metrics(values, step=step))


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow
    if not _active():
        return

    tracking_guard.log("artifact", str(path), artifact_path,
                       fallback=lambda: mlflow.log_artifact(str(path), artifact_path))


def log_artifacts(directory: str | Path, artifact_path: str | None = None) -> None:
    import mlflow
    if not _active():
        return

    tracking_guard.log("artifacts", str(directory), artifact_path,
                       fallback=lambda: mlflow.log_artifacts(str(directory), artifact_path))


def log_figure(figure: Any, name: str) -> None:
    """Log a matplotlib figure as `name` (e.g. 'plots/needle_heatmap.png')."""
    import mlflow

    tracking_guard.log("figure", figure, name, fallback=lambda: mlflow.log_figure(figure, name))


def run_url(run_id: str) -> str:
    """Where to look at a run: the UI page on a tracking server, else the store and run id."""
    import mlflow

    uri = setup()
    if uri.startswith("http"):
        exp_id = mlflow.get_run(run_id).info.experiment_id
        return f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
    return f"{uri} run {run_id}"
