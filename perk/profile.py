"""Peak memory and latency against context length: PERK encode + answer vs prompt-based inference.

Points run in a spawned process: its memory is not polluted by the parent, a point that runs out
of memory or past its time limit is recorded as `oom` / `timeout`, and the stage goes on.
`run_points` measures many points in one process that builds the model once (most of a point's
cost for a 0.5B model with a rank-256 LoRA on a GPU, where per-point peaks stay exact after
`empty_cache` + `reset_peak_memory_stats`); a point that times out or kills its process is
recorded, the longer lengths of its series are skipped, and a fresh process takes the rest.
`run_point` keeps one process per point for the CPU stage, since freed host memory is not handed
back and would blur the next point's peak. The workloads are in perk/profile_calls.py.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import resource
import statistics
import sys
import time
import traceback

import torch

from .profile_calls import METHOD_META_STEP, METHOD_PROMPT, make_call, perk_method

__all__ = ["METHOD_META_STEP", "METHOD_PROMPT", "growth_ratios", "perk_method", "run_point", "run_points"]


def _status_of(err: BaseException) -> dict:
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return {"status": "oom", "error": str(err)[:300]}
    if isinstance(err, RuntimeError):
        oom = "alloc" in str(err).lower() or "out of memory" in str(err).lower()
        return {"status": "oom" if oom else "error", "error": str(err)[:300]}
    return {"status": "error", "error": f"{type(err).__name__}: {err}"[:300],
            "traceback": traceback.format_exc()[-2000:]}


def _build(spec: dict):
    """The bundle on its device, and resident memory after loading (see memory.peak_memory)."""
    torch.set_num_threads(spec.get("threads", 2))
    from .bundle import PerkBundle
    from .config import Params
    from .memory import rss_mib
    from .tokenizer import load_tokenizer

    p = Params.model_validate(spec["params"])
    device = torch.device(spec["device"])
    tok = load_tokenizer(spec["tokenizer"])
    torch.manual_seed(0)
    try:
        with torch.device(device):  # build in place: a 0.5B model initialised on the host takes long
            bundle = PerkBundle(p, tok)
    except (RuntimeError, TypeError, ValueError) as err:  # not seen; the GPU run is one shot, so go on
        if device.type == "cpu" or isinstance(err, torch.OutOfMemoryError):
            raise
        print(f"profile: building on {device} failed ({type(err).__name__}: {err}); building on the host",
              file=sys.stderr, flush=True)
        bundle = PerkBundle(p, tok)
    if spec.get("artifacts"):
        bundle.load(spec["artifacts"])
    bundle.to(device).eval()
    return bundle, device, rss_mib()


def _measure(bundle, spec: dict, length: int, device, base_mib: float, warmup: int) -> dict:
    """Warm up, then measure the repeats of one length (`spec` holds the job's method etc.)."""
    from .memory import MemoryTrace, _status_kib, peak_memory

    run = make_call(bundle, spec, length, device)
    if spec.get("memory_limit_mb"):  # address space the measured runs may add to what is mapped now
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_status_kib("VmSize") * 1024 + int(spec["memory_limit_mb"]) * 2**20, hard))
    for _ in range(warmup):
        run()
    times, peaks = [], []
    for _ in range(spec["repeats"]):
        with peak_memory(device, None if device.type == "cuda" else base_mib) as peak:
            t0 = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        peaks.append(peak)
    trace = None
    if spec.get("trace"):
        tr = MemoryTrace(device=str(device))
        with tr.record():
            run()
        trace = tr.points
    mib = [q.mib for q in peaks]
    out = {"status": "ok", "seconds": statistics.median(times), "seconds_min": min(times),
           "seconds_max": max(times), "peak_mib": statistics.median(mib), "peak_mib_max": max(mib),
           "memory_method": peak.method, "trace": trace}
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = max(q.allocated_mib for q in peaks)
        out["cuda_max_reserved_mib"] = max(q.reserved_mib for q in peaks)
    return out


def series_key(job: dict) -> tuple:
    """Points of one series share everything but the length."""
    return job["method"], job.get("attn", "eager"), bool(job.get("grad_checkpointing", False))


def _configure(bundle, job: dict, current: dict) -> None:
    """Switch attention kernels, checkpointing and train/eval mode for the next job (same model)."""
    bundle.train(job["method"] == METHOD_META_STEP)
    attn = job.get("attn", "eager")
    if attn != current.get("attn", "eager"):  # fused kernels have no double backward: meta_step stays eager
        bundle.lm.get_base_model().set_attn_implementation(attn)
        current["attn"] = attn
    gc = bool(job.get("grad_checkpointing", bundle.inner.grad_checkpointing))
    if gc != bundle.inner.grad_checkpointing:
        bundle.inner = bundle.inner.model_copy(update={"grad_checkpointing": gc})


def _child(spec: dict, jobs: list[dict], out: mp.Queue) -> None:
    """Runs in a fresh process: build the model once, then report each job as it is measured."""
    limit = resource.getrlimit(resource.RLIMIT_AS)
    try:
        bundle, device, base_mib = _build(spec)
    except Exception as err:  # noqa: BLE001 - reported for the jobs this process was given
        out.put({"phase": "build", **_status_of(err)})
        return
    out.put({"phase": "ready"})
    current, last_key = {}, None
    for job in jobs:
        # warmup_first_only: later lengths of a series reuse its warmed kernels (PERK's chunk shapes
        # do not change with the length); every series still gets its own warm-up
        first = series_key(job) != last_key
        last_key = series_key(job)
        warmup = spec["warmup"] if first or not spec.get("warmup_first_only") else 0
        try:
            _configure(bundle, job, current)
            result = _measure(bundle, {**spec, **job}, job["length"], device, base_mib, warmup)
        except Exception as err:  # noqa: BLE001 - this point's status; the series goes on
            resource.setrlimit(resource.RLIMIT_AS, limit)  # reporting needs memory (a queue thread)
            result = _status_of(err)
        resource.setrlimit(resource.RLIMIT_AS, limit)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # an OOM leaves cached blocks the next point needs
        out.put({"phase": "point", **result})


def _run_process(spec: dict, jobs: list[dict], timeout_s: float, deadline: float | None) -> tuple[list[dict], dict | None]:
    """Results of the jobs one process finished, and the failure that stopped it (None if none)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(spec, jobs, q), daemon=True)
    proc.start()
    results, failed, building = [], None, True

    def phase_end() -> float:  # the model build and each point get timeout_s, all within deadline
        end = time.monotonic() + timeout_s
        return min(end, deadline) if deadline is not None else end

    end = phase_end()
    while len(results) < len(jobs) and failed is None:
        try:
            msg = q.get(timeout=max(0.01, min(0.2, end - time.monotonic())))
        except queue.Empty:
            if time.monotonic() >= end:
                why = "the total budget" if deadline is not None and end >= deadline else f"{timeout_s:.0f} s"
                failed = {"status": "timeout", "error": f"exceeded {why}" + (" (model build)" if building else "")}
                continue
            if proc.is_alive():
                continue
            try:  # died: a last message may still be in the pipe
                msg = q.get(timeout=0.5)
            except queue.Empty:  # e.g. the kernel's OOM killer
                code = proc.exitcode
                failed = {"status": "oom" if code == -9 else "error", "error": f"process exited with code {code}"}
                continue
        if msg["phase"] == "build":
            failed = {k: v for k, v in msg.items() if k != "phase"}
        elif msg["phase"] == "ready":
            building = False
        else:
            results.append({k: v for k, v in msg.items() if k != "phase"})
        end = phase_end()
    proc.join(timeout=0 if failed else 5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if failed is not None and building:
        failed["build"] = True
    return results, failed


def run_points(spec: dict, jobs: list[dict], timeout_s: float, deadline: float | None = None,
               on_result=None) -> list[dict]:
    """Measure `jobs` ({method, length[, attn, grad_checkpointing]}, each series in ascending
    length) with the model of `spec`; never raises for OOM/timeouts/crashes. The model build and
    each point get `timeout_s`; everything ends by `deadline` (a time.monotonic() value). After a
    point times out or kills its process, the longer lengths of its series are `skipped` (they
    would only take longer) and a new process goes on with the other series. `on_result(row)` is
    called as each row is known."""
    rows, todo = [], list(jobs)

    def emit(job, result):
        row = {**job, **result}
        rows.append(row)
        if on_result:
            on_result(row)
    while todo:
        if deadline is not None and time.monotonic() >= deadline:
            for job in todo:
                emit(job, {"status": "skipped", "error": "total budget spent"})
            break
        results, failed = _run_process(spec, todo, timeout_s, deadline)
        for job, result in zip(todo, results):
            emit(job, result)
        todo = todo[len(results):]
        if failed is None:
            continue
        if failed.pop("build", False):  # the same build would fail (or time out) again for every job
            emit(todo[0], failed)
            for job in todo[1:]:
                emit(job, {"status": "skipped", "error": f"not run: the model build ended in {failed['status']}"})
            break
        bad, todo = todo[0], todo[1:]
        emit(bad, failed)
        for job in [j for j in todo if series_key(j) == series_key(bad)]:
            emit(job, {"status": "skipped", "error": f"not run after {failed['status']} at {bad['length']}"})
        todo = [j for j in todo if series_key(j) != series_key(bad)]
    return rows


def run_point(spec: dict, timeout_s: float) -> dict:
    """One (method, length) point in its own process; never raises for OOM/timeouts/crashes."""
    job = {k: spec[k] for k in ("method", "length", "attn", "grad_checkpointing") if k in spec}
    return run_points(spec, [job], timeout_s)[0]


def growth_ratios(points: list[dict], key: str = "peak_mib") -> dict[str, float | None]:
    """Per method: value at the longest successful length / value at the shortest."""
    out = {}
    for m in sorted({p["method"] for p in points}):
        ok = sorted((p for p in points if p["method"] == m and p["status"] == "ok"), key=lambda p: p["length"])
        out[m] = (ok[-1][key] / ok[0][key]) if len(ok) >= 2 and ok[0][key] > 0 else None
    return out
