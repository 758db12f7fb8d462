"""Stage `profile`: peak memory and latency against context length, PERK vs prompt-based."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import Stage, common


def _log_trace(trace, method: str, length: int, out: Path) -> None:
    from .. import plots, tracking

    for i, (_, mib) in enumerate(trace):
        tracking.log_metrics({f"memory_trace/{method}_L{length}_mib": mib}, i)
    tracking.log_artifact(plots.series(trace, out / "plots" / "memory_trace.png",
                                       f"{method} encode+answer at {length} tokens: memory over time"), "plots")


def profile(p: Params, progress: bool = True) -> Path:
    """Each (method, length) point in its own process; points.csv, metrics.json, plots."""
    from .. import profile_report, progress as progress_, tracking
    from ..profile import METHOD_PROMPT, perk_method, run_point

    cfg, out, dev = p.profile, Path(p.profile.out_dir), common.device()
    artifacts = common.perk_path(p)
    spec_task = getattr(p.synth.tasks, p.meta_train.task.split("/")[0])
    base = {"params": p.model_dump(mode="json"), "device": str(dev), "tokenizer": p.tokenizer.out_dir,
            "artifacts": str(artifacts) if artifacts.exists() else None, "chunk_tokens": spec_task.chunk_tokens,
            "new_tokens": cfg.new_tokens, "warmup": cfg.warmup, "repeats": cfg.repeats,
            "memory_limit_mb": cfg.memory_limit_mb, "attn": cfg.attn_implementation}
    methods = [perk_method(m) for m in cfg.micro_batches] + ([METHOD_PROMPT] if cfg.prompt else [])
    trace_method = perk_method(cfg.micro_batches[len(cfg.micro_batches) // 2])
    points = []
    for m, L in progress_.bar([(m, L) for m in methods for L in cfg.lengths], desc="profile", enabled=progress):
        pt = run_point({**base, "method": m, "length": L, "trace": m == trace_method and L == max(cfg.lengths)},
                       cfg.timeout_s)
        trace = pt.pop("trace", None)
        if trace:
            _log_trace(trace, m, L, out)
        points.append(pt)
        if pt["status"] == "ok":
            tracking.log_metrics({f"{m}/peak_mib": pt["peak_mib"], f"{m}/seconds": pt["seconds"]}, L)
    metrics, figs = profile_report.write(out, points, dev.type, cfg.lengths)
    for f in figs:
        tracking.log_artifact(f, "plots")
    tracking.log_artifact(out / "points.csv")
    tracking.log_metrics({f"memory_growth/{k}": v for k, v in metrics["memory_growth"].items() if v is not None})
    return out / "metrics.json"


STAGE = Stage("profile", profile, family=lambda p: p.meta_train.task.split("/")[0],
              run_name=lambda p: f"profile-{common.device().type}")
