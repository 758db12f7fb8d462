"""The task matrix: a cell is one task's own chain (pretrain -> meta-train -> baseline -> evaluate),
declared in params.yaml under `matrix:` and run as `perk <stage> --cell NAME` (dvc.yaml: the
foreach stages matrix-<stage>@NAME; `dvc repro matrix-evaluate@NAME` runs only that chain).

A cell changes nothing but what it names: the task every stage reads (meta_train.task,
baseline.task, evaluate.tasks), where each stage writes ({matrix_dir}/NAME/<stage>), and its own
`set` overrides. The base is per cell because pretraining is per family (its exposure text is in
the family's format, and the weighting net learns that family's supporting spans).
"""
from __future__ import annotations

import copy
from typing import Any

from .config import ConfigError, Params, _set_dotted

MATRIX_STAGES = ("pretrain", "meta-train", "baseline", "evaluate")  # the chain a cell repeats (CLI --cell, dvc.yaml)
STAGE_DIRS = {"pretrain": "pretrain", "meta_train": "meta_train", "baseline": "baseline", "evaluate": "eval"}
# Sections whose stage runs once for every cell: a cell's value would enter its fingerprints but not
# its data (one synth for all cells), a silent no-op, so it is refused.
SHARED = ("tokenizer", "synth", "imports", "profile", "capacity", "position", "position_dir")


def cell_overrides(p: Params, name: str) -> dict[str, Any]:
    """Dotted key -> value that make `p` run as cell `name` (its `set` applied last, so it wins)."""
    if name not in p.matrix:
        valid = ", ".join(p.matrix) or "none (the `matrix:` section of the params file is empty)"
        raise ConfigError(f"--cell {name!r}: no such cell; cells: {valid}")
    cell = p.matrix[name]
    root = f"{p.matrix_dir}/{name}"
    out: dict[str, Any] = {f"{section}.out_dir": f"{root}/{d}" for section, d in STAGE_DIRS.items()}
    out.update({"meta_train.task": cell.task, "baseline.task": cell.task, "evaluate.tasks": [cell.task], "cell": name})
    for key, value in cell.set.items():
        if key.split(".")[0] in ("matrix", "cell", "matrix_dir") or key.endswith(".out_dir"):
            raise ConfigError(f"matrix.{name}.set: {key!r} cannot be set per cell (the cell decides it)")
        if key.split(".")[0] in SHARED:
            raise ConfigError(f"matrix.{name}.set: {key!r} cannot be set per cell: the {key.split('.')[0]} stage "
                              "runs once for every cell; set it at the top level (or in a profile of its own)")
        out[key] = value
    return out


def apply_cell(tree: dict, name: str, p: Params, source: str) -> dict:
    """The raw parameter tree of cell `name`; `p` is `tree` validated (its defaults filled in)."""
    tree = copy.deepcopy(tree)
    for key, value in cell_overrides(p, name).items():
        try:
            _set_dotted(tree, key, value)
        except ConfigError as err:
            raise ConfigError(f"{source}: matrix.{name}.set: {err}") from None
    return tree
