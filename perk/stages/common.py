"""Artifact paths and loaders that several stages share (what one stage writes, the next reads)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..config import Params


def device():
    """cuda when there is a GPU, else cpu."""
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rows(p: Params, task: str, split: str) -> list[dict]:
    """Rows of `family/subtask` from the synth output; fails clearly on a file of another task."""
    from ..data.io import DataError, read_rows
    from ..data.imports.tasks import imported_rows, is_imported

    if is_imported(task):  # an imports.datasets entry: {imports.out_dir}/{family}/{subset}/{split}.parquet
        return imported_rows(p, task, split)
    family, _, sub = task.partition("/")
    path = Path(p.synth.out_dir) / family / f"{split}.parquet"
    spec = getattr(p.synth.tasks, family)
    if not spec.enabled:
        raise DataError(f"{path}: task {task!r} needs family {family!r}, but synth.tasks.{family}.enabled is false")
    if sub not in spec.subtasks:
        raise DataError(f"{path}: task {task!r} is not synthesized: synth.tasks.{family}.subtasks is {spec.subtasks}")
    all_rows = read_rows(path)
    size = {"train": "n_train", "val": "n_val", "test": "n_test"}[split]
    if not all_rows:  # an empty split says nothing about its task: name the size that made it empty
        raise DataError(f"{path}: no rows at all in split {split!r} (synth.tasks.{family}.{size} is "
                        f"{getattr(spec, size)}); raise it and rerun `perk synth`")
    held = sorted({r["task"] for r in all_rows})
    if held != [family]:
        raise DataError(f"{path}: expected task {family!r}, file holds {held}")
    found = [r for r in all_rows if r["subtask"] == sub]
    if not found:
        raise DataError(f"{path}: no {sub!r} rows in split {split!r} ({len(all_rows)} rows of "
                        f"{sorted({r['subtask'] for r in all_rows})}; synth.tasks.{family}.{size} is spread over "
                        f"subtasks x lengths: raise it, or rerun `perk synth` if the file is stale)")
    return found


def tokenizer(p: Params):
    from ..tokenizer import load_tokenizer
    return load_tokenizer(p.tokenizer.out_dir)


def tokenizer_file(p: Params) -> Path:
    return Path(p.tokenizer.out_dir) / "tokenizer.json"


def base_path(p: Params) -> Path:
    return Path(p.pretrain.out_dir) / "base.safetensors"


def net_path(p: Params) -> Path:
    """The weighting net pretrained with the base (when pretrain.lr_weight_net > 0)."""
    return Path(p.pretrain.out_dir) / "weight_net.safetensors"


def perk_path(p: Params) -> Path:
    return Path(p.meta_train.out_dir) / "perk.safetensors"


def baseline_path(p: Params) -> Path:
    return Path(p.baseline.out_dir) / "model.safetensors"


def fingerprint(p: Params, *sections: str, files: tuple[Path, ...] = (), extra: dict | None = None) -> str:
    """Hash of the given params sections and input files' bytes: what a checkpoint or cached cell
    was made from. Paths themselves are not hashed, so a moved run directory still resumes."""
    tree = _without_dirs(p.model_dump(mode="json"))
    h = hashlib.sha256(json.dumps({s: tree[s] for s in sections}, sort_keys=True).encode())
    if extra:
        h.update(json.dumps(extra, sort_keys=True).encode())
    for f in files:
        h.update(Path(f).read_bytes() if Path(f).exists() else b"-")
    return h.hexdigest()[:16]


def _without_dirs(tree):
    """Params minus every `out_dir`: where a run writes is not what it computes."""
    if isinstance(tree, dict):
        return {k: _without_dirs(v) for k, v in tree.items() if k != "out_dir"}
    return tree


def write_json(path: Path, obj) -> Path:
    from ..data.io import atomic_write_json
    return atomic_write_json(path, obj)


def run_id(out_dir: str) -> str | None:
    """The MLflow run that produced a stage's outputs (its run.json)."""
    from ..guarded import read_json
    f = Path(out_dir) / "run.json"
    return read_json(f).get("mlflow_run_id") if f.exists() else None
