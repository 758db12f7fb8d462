"""`perk report`: the README's results tables, in markdown, from the outputs of one pipeline run
(data/eval/metrics.json and benchmark.json, data/meta_train/metrics.json, data/baseline/metrics.json,
data/profile/points.csv, data/capacity/capacity.json), so the figures quoted are the figures measured."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .config import Params
from .data.imports.tasks import train_length as trained_length

LABELS = {"perk": "PERK", "baseline": "FT-ICR baseline", "perk_no_inner": "control: PERK, no encode (LoRA init)",
          "perk_wrong_context": "control: PERK, another example's context encoded"}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def accuracy_table(metrics: dict, task_key: str, train_length: int) -> list[str]:
    methods = [m for m in LABELS if task_key in metrics.get(m, {})]
    lengths = sorted({int(k[3:]) for m in methods for k in metrics[m][task_key]
                      if k.startswith("em_") and not k.endswith("_ci")})
    head = "| method | " + " | ".join(f"{L} ({L // train_length}x)" if train_length and L % train_length == 0 else str(L)
                                      for L in lengths) + " |"
    lines = [head, "|---" * (len(lengths) + 1) + "|"]
    for m in methods:
        t = metrics[m][task_key]
        cells = []
        for L in lengths:
            em, ci = t.get(f"em_{L}"), t.get(f"em_{L}_ci")
            cell = _pct(em) + (f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]" if ci and em is not None else "")
            if t.get(f"out_of_range_{L}"):
                cell += f" ({t[f'out_of_range_{L}']} out of range)"
            cells.append(cell)
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    if "perk" in methods:
        t = metrics["perk"][task_key]
        lines.append("| PERK wrong answers that are another value of the context (distractor) | " +
                     " | ".join(_pct(t.get(f"distractor_{L}")) for L in lengths) + " |")
    chance = metrics.get("chance", {}).get(task_key)
    if chance:
        lines.append(f"\nChance: {100 * chance:.2f}% (1 / {round(1 / chance)} value words).")
    return lines


def benchmark_table(bench: dict, task: str) -> list[str]:
    """The benchmark's own metric (benchmark.json: RULER string_match_all, BABILong label accuracy)
    per method and length, for a task that has one; [] otherwise."""
    methods = [m for m in LABELS if task in bench.get(m, {})]
    if not methods:
        return []
    lengths = sorted({int(L) for m in methods for L in bench[m][task]})
    metric = next(c["metric"] for m in methods for c in bench[m][task].values())
    lines = [f"| method ({metric}) | " + " | ".join(str(L) for L in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for m in methods:
        cells = []
        for L in lengths:
            c = bench[m][task].get(str(L))
            cells.append("-" if not c or c["score"] is None else f"{c['score']:.1f}% [{c['ci'][0]:.0f}, {c['ci'][1]:.0f}]")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return lines


def profile_table(points_csv: Path) -> list[str]:
    rows = list(csv.DictReader(points_csv.open()))
    lengths = sorted({int(r["length"]) for r in rows})
    lines = ["| method | " + " | ".join(str(L) for L in lengths) + " | growth |", "|---" * (len(lengths) + 2) + "|"]
    for m in sorted({r["method"] for r in rows}):
        pts = {int(r["length"]): r for r in rows if r["method"] == m}
        vals = [float(pts[L]["peak_mib"]) if L in pts and pts[L]["status"] == "ok" else None for L in lengths]
        ok = [v for v in vals if v is not None]
        growth = f"{ok[-1] / ok[0]:.2f}x" if len(ok) >= 2 and ok[0] > 0 else "n/a"
        lines.append(f"| {m} | " + " | ".join(f"{v:.0f} MiB" if v is not None else pts.get(L, {}).get("status", "-")
                                              for v, L in zip(vals, lengths)) + f" | {growth} |")
    return lines


def capacity_table(report: dict) -> list[str]:
    """Recall per method (rows) and facts per context (columns), with where it falls below 90%."""
    pts = report["points"]
    facts = sorted({r["facts"] for r in pts})
    lines = ["| method | " + " | ".join(f"{f} facts" for f in facts) + " |", "|---" * (len(facts) + 1) + "|"]
    for m in sorted({r["method"] for r in pts}):
        by = {r["facts"]: r for r in pts if r["method"] == m}
        cells = [f"{_pct(by[f]['em'])} [{100 * by[f]['em_lo']:.0f}, {100 * by[f]['em_hi']:.0f}] (n={by[f]['n']})"
                 if f in by and by[f]["em"] is not None else "-" for f in facts]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    below = report.get("falls_below", {})
    lines.append("\nFirst point below 90%: " + ", ".join(f"{m} {f if f is not None else 'none on this grid'}"
                                                       for m, f in below.items()) + ".")
    return lines


def _chain(p: Params, title: str = "") -> list[str]:
    """The accuracy tables of one chain's evaluate, and its training metrics."""
    out = []
    ev = Path(p.evaluate.out_dir) / "metrics.json"
    if ev.exists():
        metrics = json.loads(ev.read_text())
        for task in p.evaluate.tasks:
            out += [f"### {title}{task} (test, exact match, 95% Wilson intervals)", ""]
            # an imported task without a train split has no train length: lengths are then shown bare
            out += accuracy_table(metrics, task.replace("/", "_"), trained_length(p, task) or 0) + [""]
        bench_file = ev.with_name("benchmark.json")
        bench = json.loads(bench_file.read_text()) if bench_file.exists() else {}
        for task in p.evaluate.tasks:
            table = benchmark_table(bench, task)
            if table:
                out += [f"### {title}{task} (test, the benchmark's own metric, 95% Wilson intervals)", ""] + table + [""]
    for name, d in (("meta-train", p.meta_train.out_dir), ("baseline", p.baseline.out_dir)):
        f = Path(d) / "metrics.json"
        if f.exists():
            m = json.loads(f.read_text())
            shown = (_pct(v) if "em" in k else f"{v:.4g}" if isinstance(v, float) else v for k, v in sorted(m.items()))
            out.append(f"- {name}: " + ", ".join(f"{k} {s}" for k, s in zip(sorted(m), shown)))
    return out


def report(p: Params) -> str:
    from .matrix import apply_cell
    from .config import validate_params

    out = _chain(p)
    for name in p.matrix:  # the task matrix: each cell's own chain (perk/matrix.py)
        tree = apply_cell(p.model_dump(mode="json"), name, p, "params")
        out += [""] + _chain(validate_params(tree, f"cell {name}"), f"cell {name}: ")
    prof = Path(p.profile.out_dir) / "points.csv"
    if prof.exists():
        out += ["", "### Profile: peak memory above the loaded model", ""] + profile_table(prof)
    cap = Path(p.capacity.out_dir) / "capacity.json"
    if cap.exists():
        c = json.loads(cap.read_text())
        out += ["", f"### Capacity: recall vs facts per context at {c['length']} tokens (every key asked)", ""]
        out += capacity_table(c)
    if not out:
        raise FileNotFoundError(f"no outputs to report: {ev} is missing (run `dvc repro` first)")
    return "\n".join(out) + "\n"
