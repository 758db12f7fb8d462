"""The benchmarks' own metrics over an evaluation's predictions (beside EM).

`benchmark_scores(preds, rows)` scores each prediction with its row's `metric` column (imported
rows carry one; synthesized needle rows get RULER's, `with_benchmark_metric`) and `summarize_benchmark` gives per method / task /
length the benchmark's figure (mean x 100, rounded to 2, as RULER and BABILong report it) with
its 95% Wilson interval. `report` writes them beside the evaluate stage's metrics.json (benchmark.json);
`from_predictions(p, path)` recomputes them from a finished run's predictions.parquet.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .benchmark_metrics import benchmark_score, score_prediction
from .data.needle import LIST_SEPARATOR
from .scoring import wilson_interval


# Synthesized families that are a public benchmark's task, scored by that benchmark's metric:
# needle is RULER's NIAH (its single / multikey / multivalue / multiquery / passkey), which RULER scores
# with string_match_all over the gold values (order-free: a list answer's values found in any order).
RULER_FAMILIES = ("needle",)


def with_benchmark_metric(row: dict) -> dict:
    """The row with its benchmark metric: imported rows keep their own; a synthesized row of a
    RULER family gets `string_match_all` over its answer's values; any other row is returned as is."""
    if row.get("metric") or row.get("task") not in RULER_FAMILIES:
        return row
    return {**row, "metric": "string_match_all", "outputs": row["answer"].split(LIST_SEPARATOR)}


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
    """Benchmark figures of an evaluate run (its predictions.parquet) on imported and RULER-family tasks."""
    import pyarrow.parquet as pq

    from .stages.common import rows as task_rows  # the evaluate stage's own reader of a task's test rows

    preds = pq.read_table(predictions).to_pylist()
    rows = {r["id"]: with_benchmark_metric(r) for task in sorted({pr["task"] for pr in preds})
            for r in task_rows(p, task, "test")}
    return summarize_benchmark(benchmark_scores(preds, rows))


def report(out_dir: str | Path, preds: list[dict], rows: dict[str, list[dict]], log_metrics=None) -> Path:
    """Write {out_dir}/benchmark.json (and log `<method>/<task>/<metric>` per length): the evaluated
    tasks that have a benchmark metric (imported, or a RULER family's); `{}` when none has (a DVC
    metrics file must exist whatever the tasks)."""
    import json

    from .data.io import atomic_write_bytes

    scored = (with_benchmark_metric(r) for rs in rows.values() for r in rs)
    by_id = {r["id"]: r for r in scored if r.get("metric")}
    summary = summarize_benchmark(benchmark_scores(preds, by_id))
    path = Path(out_dir) / "benchmark.json"
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n"))
    for method, tasks in summary.items():
        for task, cells in tasks.items():
            for length, cell in cells.items():
                if log_metrics and cell["score"] is not None:
                    log_metrics({f"{method}/{task.replace('/', '_')}/{cell['metric']}": cell["score"]}, int(length))
    return path
