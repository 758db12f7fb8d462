"""What `evaluate` writes from its predictions: metrics.json (flat, for `dvc metrics`), summary.json,
predictions.parquet, accuracy.csv (for `dvc plots`) and the plots, all atomically."""
from __future__ import annotations

import csv
from pathlib import Path

from .data.io import atomic_write_bytes, atomic_write_json

CURVE_FIELDS = ["method", "task", "length", "acc", "lo", "hi"]


def flat_metrics(summary: dict) -> tuple[dict, list[dict]]:
    """metrics[method][task_key] = {em_<L>, em_<L>_ci, out_of_range_<L>, max_depth_spread}, and the
    accuracy curve rows (method, task, length, acc, lo, hi)."""
    metrics, curve = {}, []
    for method, tasks in summary.items():
        for task, t in tasks.items():
            m = metrics.setdefault(method, {}).setdefault(task.replace("/", "_"), {})
            for L, cell in sorted(t["by_length"].items(), key=lambda kv: int(kv[0])):
                m[f"em_{L}"] = cell["em"]
                m[f"em_{L}_ci"] = [round(cell["em_lo"], 4), round(cell["em_hi"], 4)]
                if cell["out_of_range"]:
                    m[f"out_of_range_{L}"] = cell["out_of_range"]
                if cell.get("skipped"):
                    m[f"skipped_{L}"] = cell["skipped"]
                if method == "perk" and cell.get("distractor") is not None:
                    m[f"distractor_{L}"] = cell["distractor"]
                if cell["em"] is not None:
                    curve.append({"method": method, "task": task, "length": int(L), "acc": cell["em"],
                                  "lo": cell["em_lo"], "hi": cell["em_hi"]})
            m["max_depth_spread"] = t["max_depth_spread"]
            if "expected" in t:  # no_inner: its exact expectation over every test key (perk/controls.py)
                m["expected"] = t["expected"]
    from .controls import chance
    for task in {t for tasks in summary.values() for t in tasks}:
        if chance(task) is not None:
            metrics.setdefault("chance", {})[task.replace("/", "_")] = chance(task)
    return metrics, curve


def _depth_grid(t: dict) -> tuple[list[list], list[float], list[int]]:
    """EM by (depth, length); depths that are not numbers (a randomly placed document) are left out."""
    lengths = sorted(int(L) for L in t["by_length"])
    keys = {d for c in t["by_length"].values() for d in c.get("by_depth", {})}
    depths = sorted(float(d) for d in keys if d not in ("None", "nan"))
    grid = [[t["by_length"][str(L)].get("by_depth", {}).get(str(d), {}).get("em") for L in lengths] for d in depths]
    return grid, depths, lengths


def write(out: Path, preds: list[dict], summary: dict, train_length: dict[str, int]) -> tuple[dict, list[dict], list[Path]]:
    """All evaluate outputs under `out`; returns (metrics, accuracy curve rows, plot files). `train_length[task]` marks
    the trained length on each accuracy plot."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import plots
    from .controls import chance
    from .evaluate import PRED_SCHEMA

    table = pa.Table.from_pylist(preds, schema=PRED_SCHEMA)
    atomic_write_bytes(out / "predictions.parquet", lambda tmp: pq.write_table(table, tmp))
    metrics, curve = flat_metrics(summary)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "summary.json", summary)

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, CURVE_FIELDS)
            w.writeheader()
            w.writerows(curve)
    atomic_write_bytes(out / "accuracy.csv", write_csv)
    figs = []
    for task, trained in train_length.items():
        key = task.replace("/", "_")
        figs.append(plots.accuracy_vs_length([r for r in curve if r["task"] == task], out / "plots" / f"{key}_accuracy.png",
                                             f"{task}: exact match vs context length", trained, chance(task)))
        for method, tasks in summary.items():
            if task in tasks and method in ("perk", "baseline"):
                grid, depths, lengths = _depth_grid(tasks[task])
                if depths:
                    figs.append(plots.heatmap(grid, depths, lengths, out / "plots" / f"{key}_{method}_heatmap.png",
                                              f"{method}: {task} exact match by length x depth"))
    return metrics, curve, figs
