"""Figures people would rather look at than read: accuracy vs length, length x depth heatmaps,
memory/latency vs context length. Matplotlib with the Agg backend; PNGs written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .data.io import atomic_write_bytes  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def _em_axes(fig, ax, xlabel: str, title: str):
    """Exact match (%) against a log2 x axis: the accuracy and capacity plots alike."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def accuracy_vs_length(rows: Iterable[dict], path: str | Path, title: str, train_length: int | None = None,
                       chance: float | None = None) -> Path:
    """rows: {method, length, acc, lo, hi}; one line per method with a 95% CI band; controls
    (methods named perk_<control>) dashed."""
    rows = list(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["length"])
        xs = [r["length"] for r in pts]
        ax.plot(xs, [100 * r["acc"] for r in pts], marker="o", label=method, ls="--" if "_" in method else "-")
        ax.fill_between(xs, [100 * r["lo"] for r in pts], [100 * r["hi"] for r in pts], alpha=0.2)
    if train_length:
        ax.axvline(train_length, color="grey", ls=":", label="train length")
    if chance:
        ax.axhline(100 * chance, color="black", ls=":", lw=0.8, label=f"chance ({100 * chance:.1f}%)")
    return _save(_em_axes(fig, ax, "context length (tokens)", title), path)


def heatmap(matrix: list[list[float | None]], rows: list, cols: list, path: str | Path, title: str,
            xlabel: str = "context length (tokens)", ylabel: str = "needle depth") -> Path:
    """matrix[i][j] in [0,1] (None: not evaluated); annotated cells, 0-100 colour scale."""
    import numpy as np

    data = np.array([[np.nan if v is None else 100 * v for v in r] for r in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2, 0.6 * len(rows) + 1.5))
    im = ax.imshow(data, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    for i in range(len(rows)):
        for j in range(len(cols)):
            txt = "n/a" if np.isnan(data[i, j]) else f"{data[i, j]:.0f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="exact match (%)")
    return _save(fig, path)


def _natural(name: str) -> tuple:
    """perk_mb4 before perk_mb16: digit runs compare as numbers."""
    import re
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def scaling(rows: Iterable[dict], y: str, path: str | Path, title: str, ylabel: str) -> Path:
    """rows: {method, length, <y>, status}; log-log lines per method, failed points marked x."""
    rows = list(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in rows}, key=_natural):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["length"])
        ok = [r for r in pts if r["status"] == "ok"]
        line, = ax.plot([r["length"] for r in ok], [r[y] for r in ok], marker="o", label=method)
        bad = [r for r in pts if r["status"] != "ok"]
        if bad:
            top = max([r[y] for r in ok] or [1.0])
            ax.scatter([r["length"] for r in bad], [top] * len(bad), marker="x", color=line.get_color(),
                       label=f"{method}: " + "/".join(sorted({r['status'] for r in bad})))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def series(points: list[tuple[float, float]], path: str | Path, title: str,
           xlabel: str = "time (s)", ylabel: str = "memory (MiB)") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([p[0] for p in points], [p[1] for p in points])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def recall_vs_facts(points: Iterable[dict], path: str | Path, threshold: float, title: str) -> Path:
    """points: {method, facts, em, em_lo, em_hi}; one line per method (PERK per LoRA rank, the
    baseline) with its 95% Wilson band, and the recall threshold the README reads off."""
    points = [r for r in points if r["em"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in points}, key=_natural):
        pts = sorted((r for r in points if r["method"] == method), key=lambda r: r["facts"])
        xs = [r["facts"] for r in pts]
        ax.plot(xs, [100 * r["em"] for r in pts], marker="o", label=method)
        ax.fill_between(xs, [100 * r["em_lo"] for r in pts], [100 * r["em_hi"] for r in pts], alpha=0.2)
    ax.axhline(100 * threshold, color="grey", ls=":", label=f"{100 * threshold:.0f}%")
    _em_axes(fig, ax, "facts per context (every key asked)", title)
    ax.set_xticks(sorted({r["facts"] for r in points}), [str(f) for f in sorted({r["facts"] for r in points})])
    return _save(fig, path)
