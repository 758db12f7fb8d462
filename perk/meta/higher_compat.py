"""Make higher 0.2.1 work on peft-wrapped, transformers-5 models, without editing site-packages.

Two incompatibilities (DESIGN.md section 5):
1. higher's patch base is `class _MonkeyPatchBase(abc.ABC, nn.Module)`; peft's LoRA layers list
   `nn.Module` before `ABC`, so `class MonkeyPatched(LoraLinear, _MonkeyPatchBase)` has no
   consistent MRO. We swap in an equivalent base that is a plain nn.Module (the ABC was only
   there to forbid instantiating the base directly).
2. transformers-5 decoders iterate `self.layers[: n]`; ModuleList slicing calls
   `self.__class__(modules)`, and a patched class's __init__ needs (original_params, root).
   After patching, every patched ModuleList class returns a plain list for a slice.
"""
from __future__ import annotations

import torch.nn as nn

_applied = False


def _plain_patch_base(orig: type) -> type:
    body = {k: v for k, v in vars(orig).items() if k not in ("__dict__", "__weakref__", "_abc_impl", "__abstractmethods__")}
    base = type("_MonkeyPatchBase", (nn.Module,), body)
    base.__init__ = getattr(orig.__init__, "__wrapped__", orig.__init__)
    return base


def apply() -> None:
    """Idempotent: replace higher.patch._MonkeyPatchBase by a non-ABC equivalent."""
    global _applied
    if _applied:
        return
    import higher.patch as hp

    hp._MonkeyPatchBase = _plain_patch_base(hp._MonkeyPatchBase)
    _applied = True


def _slice_to_list(self, idx):
    if isinstance(idx, slice):
        return list(self._modules.values())[idx]
    return nn.ModuleList.__getitem__(self, idx)


def monkeypatch(model: nn.Module):
    """higher.monkeypatch with both fixes; initial weights are not copied (meta-grads reach them)."""
    apply()
    import higher

    fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
    for m in fmodel.modules():
        if isinstance(m, nn.ModuleList):
            type(m).__getitem__ = _slice_to_list  # the class is private to this patched instance
    return fmodel
