"""The adapter's capacity: recall as the number of facts in one context grows at a fixed length.

Each point is needle multikey with `facts` needles in a context of `capacity.length` tokens, and
every key of a context is asked (so one PERK encode answers `facts` questions, and the baseline
reads the same contexts in its prompt). Keys come from the held-out pool (val + test words, never
in training: the test split alone holds 62 keys, fewer than the 64 facts of the last point).
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

from .config import Params
from .data.io import atomic_write_bytes, atomic_write_json
from .scoring import wilson_interval

THRESHOLD = 0.9  # "recall falls below 90%": the README's and the plot's line


def contexts(p: Params, tokenizer) -> list[dict]:
    """Rows of every point, each with its `facts` count; ceil(questions / facts) contexts per point
    (at least min_contexts), every key asked."""
    from .data import needle

    cfg = p.capacity
    spec = p.synth.tasks.needle.model_copy(update={"subtasks": ["multikey"]})
    rows = []
    for f in cfg.facts:
        n = max(cfg.min_contexts, math.ceil(cfg.questions / f))
        exs = needle.generate(spec.model_copy(update={"num_keys": f}), "test", n, cfg.length, None,
                              cfg.seed + f, tokenizer, subtask="multikey", key_split="heldout")
        for e in exs:
            rows += [dict(x.row(), id=f"capacity/f{f}/{x.id}", facts=f) for x in needle.ask_every_key(e)]
    return rows


def table(preds: list[dict]) -> list[dict]:
    """One row per (method, facts): questions, contexts, correct, EM and its 95% Wilson interval."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in preds:
        groups[(r["method"], r["facts"])].append(r)
    out = []
    for (method, facts), ps in sorted(groups.items()):
        scored = [r for r in ps if r["status"] == "ok"]
        k, n = sum(r["em"] for r in scored), len(scored)
        lo, hi = wilson_interval(k, n)
        out.append({"method": method, "facts": facts, "n": n, "contexts": len({_context_id(r["id"]) for r in ps}),
                    "correct": int(k), "em": k / n if n else None, "em_lo": lo, "em_hi": hi,
                    "not_ok": len(ps) - n})
    return out


def _context_id(row_id: str) -> str:
    return row_id.split("/k")[0]  # ask_every_key names the siblings <context id>/k<i>


def falls_below(points: list[dict], threshold: float = THRESHOLD) -> dict[str, int | None]:
    """Per method: the fewest facts at which EM is below the threshold (None: never, on this grid)."""
    out: dict[str, int | None] = {}
    for r in sorted(points, key=lambda r: r["facts"]):
        out.setdefault(r["method"], None)
        if out[r["method"]] is None and r["em"] is not None and r["em"] < threshold:
            out[r["method"]] = r["facts"]
    return out


def write(out: Path, preds: list[dict], length: int) -> tuple[dict, list[Path]]:
    """capacity.json (points + where each method falls below 90%), capacity.csv, predictions.parquet
    and the plot; returns (the json's content, the files written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .plots import recall_vs_facts

    points = table(preds)
    report = {"length": length, "threshold": THRESHOLD, "falls_below": falls_below(points), "points": points}
    files = [atomic_write_json(out / "capacity.json", report)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(points[0]) if points else ["method"], lineterminator="\n")
    w.writeheader()
    w.writerows(points)
    atomic_write_bytes(out / "capacity.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))
    atomic_write_bytes(out / "predictions.parquet", lambda tmp: pq.write_table(pa.Table.from_pylist(preds), tmp))
    files += [out / "capacity.csv", out / "predictions.parquet"]
    files.append(recall_vs_facts(points, out / "plots" / "capacity.png", THRESHOLD,
                                 f"needle multikey recall at {length} tokens, every key asked"))
    return report, files
