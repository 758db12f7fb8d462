"""`python -m perk.gpucheck`: the paper's efficiency table on a Qwen2.5-0.5B-shaped model, time-boxed.

Measures on one GPU (random weights of the published shape: memory and latency depend on the
shape only): PERK's test-time encode + answer (K=4, micro-batches of 16 and 1 chunks of 256
tokens, bf16 autocast) and prompt-based inference (FT-ICR at test time; eager attention like the
project's model, and fused SDPA) at 8K..128K tokens, then one meta-training step at 8K tokens
(K=4, last 2 second-order) with and without gradient checkpointing. Writes gpu_check.csv and
gpu_check.md to --out (default $OUT, else data/gpu_check), rewritten after every series, so a
run cut short still leaves what it measured. Every series runs in its own process with a
per-point timeout and all of it inside --budget-s; what does not fit is recorded, not waited for.
`--dry` runs the same code at CPU sizes (a 1-layer, narrow shape of the same architecture).
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "qwen2.5-0.5b.yaml"
SHAPE = "qwen2.5-0.5b"
K = 1024
FULL_LENGTHS = [8 * K, 16 * K, 32 * K, 64 * K, 128 * K]
DRY_LENGTHS = [256, 512]
DRY_SHAPE = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
             "num_key_value_heads": 1, "vocab_size": 2048}
# The paper (arXiv 2507.06415), one H100, Qwen2.5-0.5B, inference: (GB, seconds); None = out of memory.
PAPER = {64 * K: {"ft_icr": (55.7, 32.6), "perk_acc16": (19.6, 11.4)},
         128 * K: {"ft_icr": None, "perk_acc16": (35.2, 20.9)}}
H100_BYTES = 80e9  # the paper's GPU: a peak above this is an OOM there even where an H200 fits it
FIELDS = ["method", "attn", "grad_checkpointing", "length", "status", "seconds", "cuda_max_allocated_mib",
          "cuda_max_reserved_mib", "peak_mib", "memory_method", "error"]


def plan(dry: bool) -> list[dict]:
    """The points in priority order: the paper's table first, the slow micro-batch-1 encode last."""
    lengths = DRY_LENGTHS if dry else FULL_LENGTHS
    meta_len = DRY_LENGTHS[-1] if dry else 8 * K
    series = [("perk_mb16", "eager", None, lengths), ("prompt", "eager", None, lengths),
              ("prompt", "sdpa", None, lengths), ("meta_step", "eager", False, [meta_len]),
              ("meta_step", "eager", True, [meta_len]), ("perk_mb1", "eager", None, lengths)]
    return [{"method": m, "attn": a, "grad_checkpointing": gc, "length": L}
            for m, a, gc, ls in series for L in ls]


def params(dry: bool):
    from .config import load_params

    over = ["model.name=tiny", f"model.shape={SHAPE}"]  # the paper's LoRA/inner settings, random weights
    if dry:
        over += [f"model.shape_overrides={DRY_SHAPE}", "lora.rank=4"]
    return load_params(PROFILE, over)


def tokens(n: int) -> str:
    return f"{n // K}K" if n % K == 0 else str(n)


def gib(mib) -> str:
    return f"{float(mib) / 1024:.1f}" if mib not in (None, "") else "-"


def _cell(rows: list[dict], method: str, attn: str, length: int, gc=None) -> str:
    for r in rows:
        if (r["method"], r.get("attn"), r["length"]) == (method, attn, length) and r.get("grad_checkpointing") == gc:
            if r["status"] != "ok":
                return r["status"].upper()
            mem = r.get("cuda_max_allocated_mib") or r.get("peak_mib")
            over = " (>H100)" if r.get("cuda_max_allocated_mib") and float(mem) * 2**20 > H100_BYTES else ""
            return f"{gib(mem)} GiB / {float(r['seconds']):.1f} s{over}"
    return "not run"


def markdown(rows: list[dict], info: dict) -> str:
    lines = [f"# GPU check: {info['shape']} shape, random weights", "",
             " ".join(f"{k}: {v}." for k, v in info.items() if k not in ("shape", "cpu")), "",
             ("Peak memory (CPU dry run): resident-memory peak above the loaded model (VmHWM)" if info.get("cpu") else
              "Peak memory is torch.cuda.max_memory_allocated (model and LoRA weights included; reserved in "
              "gpu_check.csv)") + ", GiB = 2^30 bytes; latency = encode/prefill + 8 answer tokens, after one "
             "warm-up per series. (>H100): more than the paper's 80 GB GPU holds.",
             "", "## Inference: peak memory / latency", "",
             "| tokens | PERK mb16 | PERK mb1 | prompt (eager) | prompt (sdpa) | paper PERK acc-16 | paper FT-ICR |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for L in sorted({r["length"] for r in rows if r["method"] != "meta_step"}):
        paper = PAPER.get(L, {})

        def fmt(v):
            return "OOM" if v is None else f"{v[0]} GB / {v[1]} s"
        lines.append(f"| {tokens(L)} | {_cell(rows, 'perk_mb16', 'eager', L)} | {_cell(rows, 'perk_mb1', 'eager', L)} | "
                     f"{_cell(rows, 'prompt', 'eager', L)} | {_cell(rows, 'prompt', 'sdpa', L)} | "
                     f"{fmt(paper['perk_acc16']) if paper else ''} | {fmt(paper['ft_icr']) if 'ft_icr' in paper else ''} |")
    lines += ["", "Ratios prompt / PERK mb16 at 64K (paper FT-ICR / PERK: memory 2.84x, latency 2.86x):", ""]
    for attn in ("eager", "sdpa"):
        lines.append(f"- prompt ({attn}): {ratios(rows, attn, 64 * K)}")
    lines += ["", "## One meta-training step (K=4, last 2 second-order, all chunks at once)", "",
              "| tokens | gradient checkpointing | peak memory / time |", "| --- | --- | --- |"]
    for r in rows:
        if r["method"] == "meta_step":
            lines.append(f"| {tokens(r['length'])} | {'on' if r['grad_checkpointing'] else 'off'} | "
                         f"{_cell(rows, 'meta_step', 'eager', r['length'], r['grad_checkpointing'])} |")
    bad = [r for r in rows if r["status"] not in ("ok", "skipped")]
    if bad:
        lines += ["", "## Points that did not finish", ""]
        lines += [f"- {r['method']} {r.get('attn', '')} {r['length']}: {r['status']}: {r.get('error', '')}" for r in bad]
    return "\n".join(lines) + "\n"


def ratios(rows: list[dict], attn: str, length: int) -> str:
    def get(method, a):
        return next((r for r in rows if (r["method"], r.get("attn"), r["length"], r["status"]) == (method, a, length, "ok")), None)
    p, q = get("prompt", attn), get("perk_mb16", "eager")
    if not p or not q:
        return "n/a (" + ("prompt " + (p or {}).get("status", "not run") if not p else "PERK not ok") + ")"
    mem = lambda r: float(r.get("cuda_max_allocated_mib") or r["peak_mib"])  # noqa: E731
    return f"memory {mem(p) / mem(q):.2f}x, latency {float(p['seconds']) / float(q['seconds']):.2f}x"


def write(out: Path, rows: list[dict], info: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu_check.csv.tmp", "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(out / "gpu_check.csv.tmp", out / "gpu_check.csv")
    (out / "gpu_check.md.tmp").write_text(markdown(rows, info))
    os.replace(out / "gpu_check.md.tmp", out / "gpu_check.md")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perk.gpucheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU-sized run of the same code (seconds)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "data/gpu_check", help="output dir (default: $OUT)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="all series end by then (default: %(default)s)")
    ap.add_argument("--point-timeout-s", type=float, default=100.0, help="per point and per model build")
    ap.add_argument("--only", default="", help="comma-separated methods to run (e.g. perk_mb16,meta_step)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from .profile import run_points
    from .tokenizer import byte_tokenizer

    cuda = torch.cuda.is_available() and not args.dry
    p = params(args.dry)
    tok_dir = Path(tempfile.mkdtemp(prefix="perk-gpucheck-")) / "tokenizer"
    byte_tokenizer(tok_dir)  # ids fit any vocab; nothing to download
    info = {"shape": SHAPE + (" (dry: 1 narrow layer)" if args.dry else ""),
            "device": torch.cuda.get_device_name() if cuda else f"cpu ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "LoRA": f"rank {p.lora.rank}, rsLoRA, all projections",
            "inner": f"K={p.inner.steps} Adam, last {p.inner.differentiate_last} second-order in meta_step",
            "dtype": "bf16 autocast" if cuda else p.model.dtype, "cpu": not cuda}
    base = {"params": p.model_dump(mode="json"), "device": "cuda" if cuda else "cpu", "tokenizer": str(tok_dir),
            "artifacts": None, "chunk_tokens": 256, "new_tokens": p.profile.new_tokens, "warmup": 1, "repeats": 1,
            "warmup_first_only": True, "threads": 4 if cuda else 1}
    only = set(filter(None, args.only.split(",")))
    jobs = [j for j in plan(args.dry) if not only or j["method"] in only]
    rows: list[dict] = []

    def report(r: dict) -> None:  # print and rewrite both files as each point is known
        r.pop("trace", None)
        rows.append(r)
        label = f"{r['method']} ({r['attn']}{', ckpt' if r['grad_checkpointing'] else ''})"
        ok = r["status"] == "ok"
        mem = (gib(r.get("cuda_max_allocated_mib")) + " GiB") if cuda else f"{r.get('peak_mib') or 0:.0f} MiB"
        print(f"{label:<26} {r['length']:>7} {r['status']:<8} "
              f"{(format(r['seconds'], '.2f') + ' s') if ok else r.get('error', '')[:70]:<10} {mem if ok else ''}",
              flush=True)
        if r.get("traceback"):  # the GPU run is one shot: the log must be enough to fix an error
            print(r["traceback"], flush=True)
        info["wall"] = f"{time.monotonic() - t0:.0f} s"
        write(Path(args.out), rows, info)
    run_points(base, jobs, args.point_timeout_s, deadline=t0 + args.budget_s, on_result=report)
    print(f"wrote {Path(args.out) / 'gpu_check.csv'} and gpu_check.md in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
