"""The paper's position-bias protocol (issue #14): models trained with the gold document at one
position, each tested at every position. A protocol names four task-matrix cells, one per train
position (`position:` in params.yaml), each evaluated on all four `<family>/<position>` test tasks;
this module turns their evaluate summaries into the train-position x test-position matrix per
method, with the spread across test positions of each row (the robustness figure: FT-ICR is
expected to overfit to its trained position, PERK not).
"""
from __future__ import annotations

from pathlib import Path

from .config import POSITIONS
METHODS = ("perk", "baseline")


def matrix(summaries: dict[str, dict], family: str, length: int, where: dict[str, str]) -> dict:
    """summaries[train position] = that cell's evaluate summary.json; EM at `length` tokens.
    `where[train position]` names the summary file in errors. Returns per method: em / lo / hi / n
    grids (rows = train positions, cols = test positions) and each row's spread (max - min EM)."""
    from .data.io import DataError

    out: dict = {"family": family, "length": length, "rows": list(POSITIONS), "cols": list(POSITIONS), "methods": {}}
    for method in METHODS:
        grids = {k: [] for k in ("em", "lo", "hi", "n")}
        for train in POSITIONS:
            tasks = summaries[train].get(method)
            if tasks is None:
                raise DataError(f"{where[train]}: no {method!r} results; evaluate.methods must include {method}")
            rows = {k: [] for k in grids}
            for test in POSITIONS:
                task = f"{family}/{test}"
                cell = tasks.get(task, {}).get("by_length", {}).get(str(length))
                if cell is None or cell.get("em") is None:
                    have = sorted(f"{t}@{L}" for t, v in tasks.items() for L in v.get("by_length", {}))
                    raise DataError(f"{where[train]}: no {method} EM for {task} at {length} tokens (has {have}); "
                                    f"the cell's evaluate.tasks must list every {family}/<position> and its "
                                    f"eval_lengths {length}")
                for k, key in (("em", "em"), ("lo", "em_lo"), ("hi", "em_hi"), ("n", "n")):
                    rows[k].append(cell[key])
            for k in grids:
                grids[k].append(rows[k])
        spread = {train: round(max(r) - min(r), 4) for train, r in zip(POSITIONS, grids["em"])}
        out["methods"][method] = {**grids, "spread": spread, "max_spread": max(spread.values())}
    return out


def markdown(m: dict) -> str:
    """One table per method: EM (%) with 95% CI, rows = train position, plus each row's spread."""
    lines = []
    for method, g in m["methods"].items():
        label = {"perk": "PERK", "baseline": "FT-ICR baseline"}[method]
        lines += [f"**{label}** ({m['family']}, {m['length']} tokens; rows: trained with the gold document at, "
                  f"columns: tested at)", "",
                  "| trained \\ tested | " + " | ".join(m["cols"]) + " | spread |",
                  "|---" * (len(m["cols"]) + 2) + "|"]
        for i, train in enumerate(m["rows"]):
            cells = [f"{100 * g['em'][i][j]:.0f} [{100 * g['lo'][i][j]:.0f}, {100 * g['hi'][i][j]:.0f}]"
                     for j in range(len(m["cols"]))]
            lines.append(f"| {train} | " + " | ".join(cells) + f" | {100 * g['spread'][train]:.0f} |")
        lines.append("")
    return "\n".join(lines)


def write(out: Path, m: dict) -> list[Path]:
    """matrix.json, matrix.md and one heatmap per method under `out` (each written atomically)."""
    from . import plots
    from .data.io import atomic_write_bytes, atomic_write_json

    atomic_write_json(out / "matrix.json", m)
    atomic_write_bytes(out / "matrix.md", lambda tmp: Path(tmp).write_text(markdown(m)))
    files = [out / "matrix.json", out / "matrix.md"]
    for method, g in m["methods"].items():
        files.append(plots.heatmap(g["em"], m["rows"], m["cols"], out / f"{method}.png",
                                   f"{method}: EM by gold-document position ({m['family']}, {m['length']} tokens)",
                                   xlabel="tested at", ylabel="trained at"))
    return files
