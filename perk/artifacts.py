"""Save and load trained modules as one safetensors file (never pickle), written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .data.io import atomic_write_bytes
from .guarded import open_safetensors, require


def save_modules(path: str | Path, modules: dict[str, torch.nn.Module], trainable_only: bool = False,
                 metadata: dict | None = None) -> Path:
    """Tensors are stored as '<module>.<param name>'; `trainable_only` skips frozen base weights."""
    tensors = {}
    for mname, mod in modules.items():
        grads = {n: p.requires_grad for n, p in mod.named_parameters()}
        for n, t in mod.state_dict().items():
            if trainable_only and not grads.get(n, False):
                continue
            tensors[f"{mname}.{n}"] = t.detach().cpu().contiguous()
    meta = {"perk": json.dumps(metadata or {})}
    # tied weights share storage; safetensors refuses shared tensors, so store copies
    tensors = {k: v.clone() for k, v in tensors.items()}
    atomic_write_bytes(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return Path(path)


def load_modules(path: str | Path, modules: dict[str, torch.nn.Module]) -> dict:
    """Load tensors saved by `save_modules` into `modules`; returns the stored metadata."""
    path = require(path, "trained artifacts (a safetensors file)")
    by_module: dict[str, dict[str, torch.Tensor]] = {m: {} for m in modules}
    with open_safetensors(path) as f:
        meta = json.loads((f.metadata() or {}).get("perk", "{}"))
        for key in f.keys():
            mname, _, pname = key.partition(".")
            if mname not in by_module:
                raise ValueError(f"{path}: holds tensors for module {mname!r}, expected {sorted(modules)}")
            by_module[mname][pname] = f.get_tensor(key)
    for mname, mod in modules.items():
        own = mod.state_dict()
        unknown = sorted(set(by_module[mname]) - set(own))
        if unknown:
            raise ValueError(f"{path}: {len(unknown)} tensors do not fit the {mname} built from params "
                             f"(e.g. {unknown[:3]}); were these artifacts trained with other model/lora params?")
        for n, t in by_module[mname].items():
            if own[n].shape != t.shape:
                raise ValueError(f"{path}: {mname}.{n} has shape {tuple(t.shape)}, the model built from "
                                 f"params expects {tuple(own[n].shape)}")
        mod.load_state_dict(by_module[mname], strict=False)
    return meta
