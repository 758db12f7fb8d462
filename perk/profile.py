"""Peak memory and latency against context length: PERK encode + answer vs prompt-based inference.

Points run in a spawned process: its memory is not polluted by the parent, a point that runs out
of memory or past its time limit is recorded as `oom` / `timeout`, and the stage goes on. One
process measures a series of lengths of one method (`run_series`): it builds the model once,
which is most of a point's cost for a large model on a GPU. On CPU `run_point` keeps one process
per point, since freed host memory is not handed back and would blur the next point's peak.
The workloads themselves are in perk/profile_calls.py.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import resource
import statistics
import time
import traceback

import torch

from .profile_calls import METHOD_META_STEP, METHOD_PROMPT, make_call, perk_method

__all__ = ["METHOD_META_STEP", "METHOD_PROMPT", "growth_ratios", "perk_method", "run_point", "run_series"]


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
    with torch.device(device):  # build in place: a 0.5B model initialised on the host takes long
        bundle = PerkBundle(p, tok)
    if spec.get("artifacts"):
        bundle.load(spec["artifacts"])
    bundle.to(device).eval()
    attn = spec.get("attn", "eager")
    if attn != "eager":  # inference only: fused kernels have no double backward (meta_step stays eager)
        bundle.lm.get_base_model().set_attn_implementation(attn)
    return bundle, device, rss_mib()


def _measure(bundle, spec: dict, length: int, device, base_mib: float) -> dict:
    """Warm up, then measure the repeats of one length."""
    from .memory import MemoryTrace, _status_kib, peak_memory

    run = make_call(bundle, spec, length, device)
    if spec.get("memory_limit_mb"):  # address space the measured runs may add to what is mapped now
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_status_kib("VmSize") * 1024 + int(spec["memory_limit_mb"]) * 2**20, hard))
    for _ in range(spec["warmup"]):
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


def _child(spec: dict, out: mp.Queue) -> None:
    """Runs in a fresh process: build the model once, then report each length as it is measured."""
    limit = resource.getrlimit(resource.RLIMIT_AS)
    try:
        bundle, device, base_mib = _build(spec)
    except Exception as err:  # noqa: BLE001 - reported as the first point's status
        out.put({"phase": "build", **_status_of(err)})
        return
    out.put({"phase": "ready"})
    for length in spec["lengths"]:
        try:
            result = _measure(bundle, spec, length, device, base_mib)
        except Exception as err:  # noqa: BLE001 - this point's status; the series goes on
            resource.setrlimit(resource.RLIMIT_AS, limit)  # reporting needs memory (a queue thread)
            result = _status_of(err)
        resource.setrlimit(resource.RLIMIT_AS, limit)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # an OOM leaves cached blocks the next length needs
        out.put({"phase": "point", "length": length, **result})


def run_series(spec: dict, timeout_s: float, deadline: float | None = None) -> list[dict]:
    """Measure `spec["lengths"]` of one method in one spawned process; never raises for
    OOM/timeouts/crashes. The build and each point get `timeout_s`, all of it ends by `deadline`
    (a time.monotonic() value, for a caller with a total budget). After a timeout or a dead
    process the longer lengths are not tried (status `skipped`): they would only take longer."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(spec, q), daemon=True)
    proc.start()
    lengths, results, failed = list(spec["lengths"]), [], None

    def phase_end() -> float:
        end = time.monotonic() + timeout_s
        return min(end, deadline) if deadline is not None else end

    end, building = phase_end(), True
    while len(results) < len(lengths) and failed is None:
        try:
            msg = q.get(timeout=max(0.01, min(0.2, end - time.monotonic())))
        except queue.Empty:
            if time.monotonic() >= end:
                why = "total budget" if deadline is not None and end >= deadline else f"{timeout_s:.0f} s"
                failed = {"status": "timeout", "error": f"exceeded {why}" + (" (model build)" if building else "")}
            elif not proc.is_alive():  # died without reporting (e.g. the kernel's OOM killer)
                try:
                    msg = q.get(timeout=0.5)
                except queue.Empty:
                    code = proc.exitcode
                    failed = {"status": "oom" if code == -9 else "error", "error": f"process exited with code {code}"}
                    continue
            else:
                continue
        if failed is not None:
            break
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
    if failed is not None:
        first = len(results)
        results.append({"length": lengths[first], **failed})
        results += [{"length": L, "status": "skipped", "error": f"not run after {failed['status']} at {lengths[first]}"}
                    for L in lengths[first + 1:]]
    extra = {k: spec[k] for k in ("attn", "grad_checkpointing") if k in spec}
    return [{"method": spec["method"], **extra, **r} for r in results]


def run_point(spec: dict, timeout_s: float) -> dict:
    """One (method, length) point in its own process; never raises for OOM/timeouts/crashes."""
    return run_series({**spec, "lengths": [spec["length"]]}, timeout_s)[0]


def growth_ratios(points: list[dict], key: str = "peak_mib") -> dict[str, float | None]:
    """Per method: value at the longest successful length / value at the shortest."""
    out = {}
    for m in sorted({p["method"] for p in points}):
        ok = sorted((p for p in points if p["method"] == m and p["status"] == "ok"), key=lambda p: p["length"])
        out[m] = (ok[-1][key] / ok[0][key]) if len(ok) >= 2 and ok[0][key] > 0 else None
    return out
