"""Checkpoints: tensors in safetensors, everything else in JSON; atomic writes; exact resume.

A checkpoint is a directory `step-000123/` holding `tensors.safetensors` and `state.json`.
Any nested state (model/optimizer/scheduler state dicts, RNG states) is split into its tensors
and a JSON skeleton that points at them, so nothing is ever unpickled on load.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .data.io import atomic_dir

_TENSOR = "__tensor__"
_INTKEYS = "__intkeys__"


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().cpu().clone()  # tied weights share storage; safetensors needs copies
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        int_keys = all(isinstance(k, int) for k in obj) and bool(obj)
        tree = {str(k): _flatten(v, f"{prefix}.{k}", out) for k, v in obj.items()}
        return {_INTKEYS: tree} if int_keys else tree
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    raise TypeError(f"checkpoint: cannot store {type(obj).__name__} at {prefix!r}")


def _unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if _TENSOR in tree:
            return tensors[tree[_TENSOR]]
        if _INTKEYS in tree:
            return {int(k): _unflatten(v, tensors) for k, v in tree[_INTKEYS].items()}
        return {k: _unflatten(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unflatten(v, tensors) for v in tree]
    return tree


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def save(directory: str | Path, state: dict) -> Path:
    """Write `state` (nested dicts/lists of tensors and JSON scalars) as a checkpoint directory."""
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "s", tensors)
    with atomic_dir(directory) as tmp:  # a killed save leaves only a `.step-*` temp dir
        save_file(tensors, tmp / "tensors.safetensors")
        (tmp / "state.json").write_text(json.dumps(skeleton))
    return directory


def load(directory: str | Path) -> dict:
    directory = Path(directory)
    try:
        skeleton = json.loads((directory / "state.json").read_text())
        tensors = load_file(directory / "tensors.safetensors")
    except (OSError, ValueError, SafetensorError) as err:
        raise ValueError(f"checkpoint {directory} is unreadable: {err}") from None
    return _unflatten(skeleton, tensors)


def peek(directory: str | Path, key: str):
    """A top-level JSON value of a checkpoint, without loading its tensors."""
    return json.loads((Path(directory) / "state.json").read_text()).get(key)


def latest(root: str | Path) -> Path | None:
    """The newest complete `step-*` checkpoint under `root` (temp dirs from a kill are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:07d}"


def prune(root: str | Path, keep: int = 2) -> None:
    """Keep the newest `keep` checkpoints; also drop temp dirs left by a killed save."""
    root = Path(root)
    for p in root.glob(".step-*"):
        shutil.rmtree(p, ignore_errors=True)
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").exists())
    for p in (done[:-keep] if keep else done):
        shutil.rmtree(p, ignore_errors=True)
