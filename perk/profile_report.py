"""What `profile` writes from its points: points.csv, metrics.json (growth ratios) and the plots."""
from __future__ import annotations

import csv
from pathlib import Path

from .data.io import atomic_write_bytes, atomic_write_json
from .profile import growth_ratios

FIELDS = ["method", "length", "status", "peak_mib", "peak_mib_max", "seconds", "seconds_min", "seconds_max",
          "cuda_max_allocated_mib", "cuda_max_reserved_mib", "memory_method", "attn", "error"]


def write(out: Path, points: list[dict], device: str, lengths: list[int]) -> tuple[dict, list[Path]]:
    """All profile outputs under `out`; returns (metrics, plot files)."""
    from . import plots

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(points)
    atomic_write_bytes(out / "points.csv", write_csv)
    mem, lat = growth_ratios(points, "peak_mib"), growth_ratios(points, "seconds")
    metrics = {"device": device, "lengths": [min(lengths), max(lengths)], "memory_growth": mem, "latency_growth": lat,
               "failed_points": {f"{q['method']}@{q['length']}": q["status"] for q in points if q["status"] != "ok"}}
    atomic_write_json(out / "metrics.json", metrics)
    figs = [plots.scaling(points, "peak_mib", out / "plots" / "memory_vs_length.png",
                          "peak memory vs context length", "peak memory above model (MiB)"),
            plots.scaling(points, "seconds", out / "plots" / "latency_vs_length.png",
                          "latency vs context length (encode/prefill + answer)", "seconds")]
    return metrics, figs
