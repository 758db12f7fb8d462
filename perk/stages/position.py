"""Stage `position`: the position-bias matrix of one protocol (`perk position --protocol NAME`):
train position x test position EM, PERK and the baseline, from the protocol's four matrix cells."""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, Params
from . import Stage


def _protocols(p: Params) -> list[str]:
    """The protocol `--protocol NAME` chose, else every one in params.yaml `position:`."""
    if p.position_protocol is None:
        return list(p.position)
    if p.position_protocol not in p.position:
        valid = ", ".join(p.position) or "none (the `position:` section of the params file is empty)"
        raise ConfigError(f"--protocol {p.position_protocol!r}: no such position protocol; protocols: {valid}")
    return [p.position_protocol]


def position(p: Params, progress: bool = True) -> dict[str, Path]:
    """matrix.json / matrix.md / heatmaps of each chosen protocol under position_dir/NAME."""
    names = _protocols(p)
    if not names:
        print("position: no protocol in params.yaml `position:` (train-position cells of the task matrix); "
              "nothing to do")
    return {f"position@{name}": _one(p, name) for name in names}


def _one(p: Params, name: str) -> Path:
    from .. import tracking
    from ..data.io import DataError
    from ..guarded import read_json
    from ..position import POSITIONS, matrix, write

    proto = p.position[name]
    family = _family_of(p, name)
    length = proto.length or getattr(p.synth.tasks, family).train_lengths[0]
    summaries, where = {}, {}
    for pos in POSITIONS:
        cell = getattr(proto, pos)
        path = Path(p.matrix_dir) / cell / "eval" / "summary.json"
        if not path.exists():
            raise DataError(f"{path}: missing; cell {cell!r} (trained at {pos}) is not evaluated yet: run "
                            f"`perk evaluate --cell {cell}` or `dvc repro matrix-evaluate@{cell}`")
        summaries[pos], where[pos] = read_json(path), str(path)
    m = matrix(summaries, family, length, where)
    m["cells"] = {pos: getattr(proto, pos) for pos in POSITIONS}
    files = write(Path(p.position_dir) / name, m)
    for method, g in m["methods"].items():
        tracking.log_metrics({f"{name}/{method}/spread_{t}": s for t, s in g["spread"].items()}
                             | {f"{name}/{method}/max_spread": g["max_spread"]})
    for f in files:
        tracking.log_artifact(f, f"position/{name}")
    print(f"position {name}: spread across test positions, per train position: " + "; ".join(
        f"{method} " + ", ".join(f"{t} {100 * s:.0f}" for t, s in g["spread"].items()) for method, g in m["methods"].items()))
    return files[0]


def _family_of(p: Params, name: str) -> str:
    """The task family a protocol's cells train on (config validation made it one family)."""
    return p.matrix[p.position[name].first].task.partition("/")[0]


def _family(p: Params) -> str | None:
    names = _protocols(p)
    return _family_of(p, names[0]) if names else None


STAGE = Stage("position", position, family=_family,
              run_name=lambda p: f"position@{p.position_protocol}" if p.position_protocol else "position")
