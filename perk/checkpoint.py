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
from safetensors.torch import save_file

from .data.io import atomic_dir
from .guarded import ArtifactError, load_safetensors, read_json

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
        skeleton = read_json(directory / "state.json")
        tensors = load_safetensors(directory / "tensors.safetensors")
        return _unflatten(skeleton, tensors)
    except (ArtifactError, KeyError) as err:  # KeyError: the skeleton points at a tensor that is not there
        raise ArtifactError(f"checkpoint {directory} is unreadable: {err}") from None


def peek(directory: str | Path, key: str):
    """A top-level JSON value of a checkpoint, without loading its tensors."""
    return read_json(Path(directory) / "state.json").get(key)


def complete(root: str | Path) -> list[Path]:
    """Complete `step-*` checkpoints under `root`, newest first (temp dirs from a kill are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.glob("step-*") if (p / "state.json").exists()), reverse=True)


def latest(root: str | Path) -> Path | None:
    """The newest complete `step-*` checkpoint under `root`."""
    done = complete(root)
    return done[0] if done else None


def newest_intact(root: str | Path, fingerprint: str, desc: str, writer: bool = True) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that loads and its state, or (None, None): start fresh.

    An unreadable checkpoint (a disk error, a copy cut short) is reported and skipped, so a resume
    falls back to the next older one rather than stopping or starting over. The `writer` process
    deletes the unreadable ones (`prune(keep=2)` would otherwise keep them over intact ones) and,
    when the newest readable one was made from other inputs, all of them: none can be resumed.
    """
    skipped: list[Path] = []
    for d in complete(root):
        try:
            if (peek(d, "fingerprint") or "") != fingerprint:
                print(f"{desc}: checkpoints in {root} come from other params/data; starting fresh")
                if writer:
                    prune(root, keep=0)
                return None, None
            state = load(d)
        except ArtifactError as err:
            print(f"{desc}: skipping an unreadable checkpoint: {err}")
            skipped.append(d)
            continue
        if skipped:
            print(f"{desc}: fell back to the newest intact checkpoint {d.name} "
                  f"(unreadable: {', '.join(s.name for s in skipped)})")
        if writer:
            for s in skipped:
                shutil.rmtree(s, ignore_errors=True)
        return d, state
    if skipped:
        print(f"{desc}: no intact checkpoint in {root}; starting fresh")
        if writer:
            for s in skipped:
                shutil.rmtree(s, ignore_errors=True)
    return None, None


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
