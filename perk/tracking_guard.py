"""Tracking that degrades instead of killing work.

The choice (issue 18), for a tracking *server* (`MLFLOW_TRACKING_URI=http://...`):

- **Not answering when a stage starts**: the stage fails at once, before any training, with one
  line naming the URI (`TrackingUnavailable`, a ValueError: the CLI exits 2, the Prefect flow does
  not retry it). Nothing has been computed yet, so failing is cheaper than a run nobody can find.
- **Stops answering mid-run**: training goes on and checkpoints are written as usual. The failed
  call and every later one are queued; every `RETRY_S` seconds a call tries to deliver the queue
  (a restarted server gets everything, in order, with the original steps and timestamps). When the
  run ends, one last delivery is tried; whatever is still queued is named on stderr (metric names
  and steps, artifacts, the run's final status) and kept in `mlruns/unlogged/<run id>.json`.
  The stage's own outputs (perk.safetensors, metrics.json) are complete either way; the MLflow run
  stays RUNNING on the server until something marks it.

mlflow's own default is 7 retries with exponential backoff, about four minutes per call against a
refused connection; the defaults below make a dead server cost seconds. A user's settings win.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

RETRY_S = 30.0
_BATCH = 1000  # MLflow's per-request metric limit


class TrackingUnavailable(ValueError):
    """The tracking server does not answer at the start of a stage."""


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


_CAUSES = [re.compile(p) for p in (r"\[Errno -?\d+\][^'\")]*", r"Read timed out", r"RemoteDisconnected",
                                    r"Connection aborted", r"timed out", r"Max retries exceeded")]  # most telling first


def _why(err: BaseException) -> str:
    """A short cause: mlflow's message wraps the socket error in a few hundred characters of URL."""
    text = str(getattr(err, "reason", None) or err).strip()
    for pattern in _CAUSES:
        found = pattern.search(text)
        if found:
            return found.group(0).strip()
    lines = text.splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def unavailable(uri: str, why: str) -> TrackingUnavailable:
    return TrackingUnavailable(
        f"MLflow tracking server {uri} is not answering ({why}); nothing was run. Start it (`perk stack up`) "
        f"or unset MLFLOW_TRACKING_URI to log to the local store mlruns/")


_checked: set[str] = set()


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast when `uri` is a tracking server that does not answer; once per process and URI
    (later failures are the mid-run case, handled by `Outbox`)."""
    if not _is_server(uri) or uri in _checked:
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError as err:
        if err.code >= 500:
            raise unavailable(uri, f"HTTP {err.code}") from None
        # something answers (a proxy without /health, auth): the real calls will say more
    except (urllib.error.URLError, OSError) as err:
        raise unavailable(uri, _why(err)) from None
    _checked.add(uri)


class Outbox:
    """Tracking calls that could not be delivered, per run, in call order."""

    def __init__(self) -> None:
        self.pending: dict[str, list[tuple]] = defaultdict(list)
        self.down_since: float | None = None
        self.next_try = 0.0
        self.error = ""

    def send(self, run_id: str, kind: str, *payload: Any) -> None:
        item = (kind, time.time(), *payload)
        if self.down_since is not None and time.monotonic() < self.next_try:
            self.pending[run_id].append(item)
            return
        self.pending[run_id].append(item)
        self.flush(run_id)

    def flush(self, run_id: str) -> bool:
        """Deliver the run's queue in order; False (and the queue kept from the failed item on) if the
        server still does not answer."""
        queue = self.pending.get(run_id, [])
        while queue:
            try:
                _deliver(run_id, queue[0])
            except Exception as err:  # noqa: BLE001 - any failure to log must not stop training
                self._went_down(err)
                return False
            queue.pop(0)
        self.pending.pop(run_id, None)
        if self.down_since is not None:
            print("tracking: the MLflow server answers again; queued values delivered", file=sys.stderr)
            self.down_since = None
        return True

    def _went_down(self, err: BaseException) -> None:
        self.next_try = time.monotonic() + RETRY_S
        if self.down_since is None:
            self.down_since = time.time()
            self.error = _why(err)
            print(f"tracking: the MLflow server stopped answering ({self.error}); training goes on, "
                  f"values are queued and retried every {RETRY_S:g} s", file=sys.stderr)

    def report(self, run_id: str, stage: str, uri: str, store: Path) -> str | None:
        """After the run: one last delivery; then name what is still not logged (stderr and a JSON file)."""
        if not self.pending.get(run_id) or self.flush(run_id):
            return None
        queue = self.pending.pop(run_id)
        steps: dict[str, list[int]] = defaultdict(list)
        others = []
        for kind, _, *payload in queue:
            if kind == "metrics":
                for key in payload[0]:
                    steps[key].append(payload[1] if payload[1] is not None else -1)
            elif kind in ("artifact", "artifacts"):
                others.append(f"artifact {Path(payload[0]).name}")
            elif kind == "figure":
                others.append(f"figure {payload[1]}")
            elif kind == "terminate":
                others.append(f"run status {payload[0]}")
            else:
                others.append(kind)
        values = sum(len(v) for v in steps.values())
        all_steps = sorted({s for v in steps.values() for s in v if s >= 0})
        span = f", steps {all_steps[0]}-{all_steps[-1]}" if all_steps else ""
        store.mkdir(parents=True, exist_ok=True)
        path = store / f"{run_id}.json"
        values_kept = [[key, value, item[3], item[1]]  # name, value, step, unix time
                       for item in queue if item[0] == "metrics" for key, value in item[2].items()]
        record = {"run_id": run_id, "stage": stage, "uri": uri, "error": self.error,
                  "steps_by_metric": dict(sorted(steps.items())), "other": others, "values": values_kept}
        path.write_text(json.dumps(record, indent=1))
        names = ", ".join(sorted(steps)[:8]) + (", ..." if len(steps) > 8 else "")
        msg = (f"tracking: MLflow server {uri} stopped answering during {stage} ({self.error}); NOT logged to "
               f"run {run_id}: {values} values of {len(steps)} metrics ({names}{span})"
               + (f", {', '.join(others)}" if others else "")
               + f". The stage's outputs are complete; the missing values are kept in {path}")
        print(msg, file=sys.stderr)
        return msg


OUTBOX = Outbox()


def _deliver(run_id: str, item: tuple) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    kind, ts, *payload = item
    client = MlflowClient()
    if kind == "metrics":
        metrics, step = payload
        ms = int(ts * 1000)
        ms_list = [Metric(k, float(v), ms, step or 0) for k, v in metrics.items()]
        for i in range(0, len(ms_list), _BATCH):
            client.log_batch(run_id, metrics=ms_list[i:i + _BATCH], synchronous=True)
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in payload[0].items()], synchronous=True)
    elif kind == "artifact":
        client.log_artifact(run_id, *payload)
    elif kind == "artifacts":
        client.log_artifacts(run_id, *payload)
    elif kind == "figure":
        client.log_figure(run_id, *payload)
    elif kind == "terminate":
        client.set_terminated(run_id, payload[0])
    else:
        raise ValueError(f"unknown tracking call {kind!r}")


def log(kind: str, *payload: Any, fallback) -> None:
    """Send one tracking call for the active run through the outbox; with no active run, `fallback()`
    (mlflow's fluent call, which starts a run of its own)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        fallback()
        return
    OUTBOX.send(run.info.run_id, kind, *payload)


class at_start:
    """Around the calls that open a run: any failure there becomes one TrackingUnavailable line
    (nothing has been trained yet, so failing now loses nothing)."""

    def __init__(self, uri: str):
        self.uri = uri

    def __enter__(self):
        return self

    def __exit__(self, typ, err, tb):
        if err is None or isinstance(err, TrackingUnavailable) or not isinstance(err, Exception):
            return False
        why = _why(err)
        if _is_server(self.uri) and any(s in why for s in ("Connection", "Max retries", "refused", "timed out")):
            raise unavailable(self.uri, why) from None
        raise TrackingUnavailable(f"MLflow tracking at {self.uri} failed while opening the run ({why}); "
                                  f"nothing was run") from None


def end_run(status: str) -> None:
    """`mlflow.end_run(status)` that never raises: a failed status update is queued like a metric
    (mlflow pops its run stack before the request, but then skips stopping the system-metrics thread)."""
    import mlflow
    from mlflow.tracking import fluent

    run = mlflow.active_run()
    if run is None:
        return
    rid = run.info.run_id
    if not OUTBOX.pending.get(rid):
        try:
            mlflow.end_run(status=status)
            return
        except Exception as err:  # noqa: BLE001
            OUTBOX._went_down(err)
    else:  # the server is known to be down: queue the status behind the rest, do what end_run would
        fluent._active_run_stack.get().pop()
        os.environ.pop("MLFLOW_RUN_ID", None)
    monitor = getattr(fluent, "run_id_to_system_metrics_monitor", {}).pop(rid, None)
    if monitor is not None:
        try:
            monitor.finish()
        except Exception:  # noqa: BLE001
            pass
    OUTBOX.pending[rid].append(("terminate", time.time(), status))
