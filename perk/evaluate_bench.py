"""The benchmarks' own metrics over an evaluation's predictions (beside EM).

`benchmark_scores(preds, rows)` scores each prediction with its row's `metric` column (imported
rows only; synthesized rows have none) and `summarize_benchmark` gives per method / task /
length the benchmark's figure (mean x 100, rounded to 2, as RULER and BABILong report it) with
its 95% Wilson interval. `from_predictions(p, path)` does both for a finished evaluate stage's
predictions.parquet, so the figures need no change to how predictions are made.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .benchmark_metrics import benchmark_score, score_prediction
from .scoring import wilson_interval


def benchmark_scores(preds: list[dict], rows: dict[str, dict]) -> list[dict]:
    """Each prediction dict plus `metric` and `bench` (0..1, None when unscored or not imported)."""
    out = []
    for pr in preds:
        row = rows.get(pr["id"])
        ok = pr.get("status", "ok") == "ok"
        metric = row.get("metric") if row else None
        score = score_prediction(row, pr["prediction"] if ok else None) if row else None
        out.append({**pr, "metric": metric, "bench": score})
    return out


def summarize_benchmark(scored: list[dict]) -> dict:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in scored:
        if s["metric"]:
            groups[(s["method"], s["task"], s["length"], s["metric"])].append(s)
    out: dict = {}
    for (method, task, length, metric), ss in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        vals = [s["bench"] for s in ss if s["bench"] is not None]
        lo, hi = wilson_interval(sum(vals), len(vals)) if vals else (None, None)
        out.setdefault(method, {}).setdefault(task, {})[str(length)] = {
            "metric": metric, "score": benchmark_score(vals) if vals else None, "n": len(vals),
            "unscored": len(ss) - len(vals), "ci": [round(100 * lo, 2), round(100 * hi, 2)] if vals else None}
    return out


def from_predictions(p, predictions: str | Path) -> dict:
    """Benchmark figures of an evaluate run (its predictions.parquet) on imported tasks."""
    import pyarrow.parquet as pq

    from .data.imports.tasks import imported_rows, is_imported

    preds = pq.read_table(predictions).to_pylist()
    rows: dict[str, dict] = {}
    for task in sorted({pr["task"] for pr in preds if is_imported(pr["task"])}):
        rows.update({r["id"]: r for r in imported_rows(p, task, "test")})
    return summarize_benchmark(benchmark_scores(preds, rows))
