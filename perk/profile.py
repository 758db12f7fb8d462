"""Peak memory and latency against context length: PERK encode + answer vs prompt-based inference.

Each (method, length) point runs in its own spawned process: its memory is not polluted by the
points before it, a point that runs out of memory or past its time limit is killed and recorded
as `oom` / `timeout`, and the stage goes on. Token content does not change cost, so contexts are
random token ids of exactly the requested length (PERK: chunks of `chunk_tokens`).
"""
from __future__ import annotations

import math
import multiprocessing as mp
import queue
import resource
import statistics
import time
import traceback

import torch

METHOD_PROMPT = "prompt"


def perk_method(micro_batch: int) -> str:
    return f"perk_mb{micro_batch}"


def _perk_call(bundle, length: int, chunk_tokens: int, micro_batch: int, new_tokens: int, device):
    from .evaluate import adapted
    from .meta import encode

    vocab = bundle.lm.get_input_embeddings().weight.shape[0]
    n_chunks = math.ceil(length / chunk_tokens)
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(3, vocab, (n_chunks, chunk_tokens), generator=g).to(device)
    ones = torch.ones_like(ids)
    cfg = bundle.inner.model_copy(update={"micro_batch": micro_batch})
    question = torch.randint(3, vocab, (1, 24), generator=g).to(device)

    def run():
        enc = encode(bundle.lm, {"input_ids": ids, "attention_mask": ones, "loss_mask": ones}, cfg,
                     bundle.step_sizes, bundle.weight_net, engine=cfg.engine, train=False)
        with adapted(bundle.lm, {n: t.detach() for n, t in enc.as_dict().items()}), torch.no_grad():
            bundle.lm.generate(question, attention_mask=torch.ones_like(question), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, use_cache=True)
    return run


def _prompt_call(bundle, length: int, new_tokens: int, device):
    vocab = bundle.lm.get_input_embeddings().weight.shape[0]
    ids = torch.randint(3, vocab, (1, length + 24), generator=torch.Generator().manual_seed(length)).to(device)

    def run():
        with torch.no_grad(), bundle.lm.disable_adapter():
            bundle.lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, use_cache=True)
    return run


def _child(spec: dict, out: mp.Queue, measure=None) -> None:
    """Runs in a fresh process: build the model, warm up, measure repeats, report."""
    limit = resource.getrlimit(resource.RLIMIT_AS)
    try:
        result = (measure or _measure)(spec)
        resource.setrlimit(resource.RLIMIT_AS, limit)
        out.put(result)
    except (MemoryError, torch.OutOfMemoryError) as err:
        resource.setrlimit(resource.RLIMIT_AS, limit)  # reporting needs memory (a queue thread)
        out.put({"status": "oom", "error": str(err)[:300]})
    except RuntimeError as err:
        resource.setrlimit(resource.RLIMIT_AS, limit)
        oom = "alloc" in str(err).lower() or "out of memory" in str(err).lower()
        out.put({"status": "oom" if oom else "error", "error": str(err)[:300]})
    except Exception as err:  # noqa: BLE001 - reported as this point's status, the stage goes on
        resource.setrlimit(resource.RLIMIT_AS, limit)
        out.put({"status": "error", "error": f"{type(err).__name__}: {err}"[:300],
                 "traceback": traceback.format_exc()[-2000:]})


def _measure(spec: dict) -> dict:
    """Build the model, warm up, measure the repeats (in the spawned process)."""
    torch.set_num_threads(spec.get("threads", 2))
    from .bundle import PerkBundle
    from .config import Params
    from .memory import MemoryTrace, peak_memory, rss_mib
    from .tokenizer import load_tokenizer

    p = Params.model_validate(spec["params"])
    device = torch.device(spec["device"])
    tok = load_tokenizer(spec["tokenizer"])
    bundle = PerkBundle(p, tok)
    if spec.get("artifacts"):
        bundle.load(spec["artifacts"])
    bundle.to(device).eval()
    base_mib = rss_mib()  # after the model is loaded, before any run (see memory.peak_memory)
    m = spec["method"]
    if m == METHOD_PROMPT:
        run = _prompt_call(bundle, spec["length"], spec["new_tokens"], device)
    else:
        run = _perk_call(bundle, spec["length"], spec["chunk_tokens"], int(m.removeprefix("perk_mb")),
                         spec["new_tokens"], device)
    if spec.get("memory_limit_mb"):  # address space the measured runs may add to what is mapped now
        from .memory import _status_kib
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
        peaks.append(peak.mib)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    trace = None
    if spec.get("trace"):
        tr = MemoryTrace(device=str(device))
        with tr.record():
            run()
        trace = tr.points
    return {"status": "ok", "seconds": statistics.median(times), "seconds_min": min(times),
            "seconds_max": max(times), "peak_mib": statistics.median(peaks), "peak_mib_max": max(peaks),
            "memory_method": peak.method, "trace": trace}


def run_point(spec: dict, timeout_s: float, measure=None) -> dict:
    """Measure one point in a spawned process; never raises for OOM/timeouts/crashes.

    `measure(spec) -> dict` (a module-level function, default: this module's PERK/prompt
    inference) runs in the child; `perk bench meta-step` passes its outer-step measurement."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(spec, q, measure), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    result = None
    deadline = t0 + timeout_s
    while result is None and time.perf_counter() < deadline:
        try:
            result = q.get(timeout=0.2)
        except queue.Empty:
            if not proc.is_alive():  # died without reporting (e.g. the kernel's OOM killer)
                try:
                    result = q.get(timeout=0.5)
                except queue.Empty:
                    break
    proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result is None:
        if time.perf_counter() < deadline:
            code = proc.exitcode
            result = {"status": "oom" if code == -9 else "error", "error": f"process exited with code {code}"}
        else:
            result = {"status": "timeout", "error": f"exceeded {timeout_s:.0f} s"}
    return {"method": spec["method"], "length": spec["length"], **result}


def growth_ratios(points: list[dict], key: str = "peak_mib") -> dict[str, float | None]:
    """Per method: value at the longest successful length / value at the shortest."""
    out = {}
    for m in sorted({p["method"] for p in points}):
        ok = sorted((p for p in points if p["method"] == m and p["status"] == "ok"), key=lambda p: p["length"])
        out[m] = (ok[-1][key] / ok[0][key]) if len(ok) >= 2 and ok[0][key] > 0 else None
    return out
