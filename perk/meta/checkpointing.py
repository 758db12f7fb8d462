"""Gradient checkpointing per decoder layer that is correct with fast (functional) LoRA weights.

Transformers' own checkpointing recomputes a layer in the backward pass by calling it again; by
then `functional_call` has put the module's own parameters back, so the recomputation would use
the LoRA init instead of the fast weights and the gradients would be silently wrong. Here each
layer's fast tensors are passed to `torch.utils.checkpoint` as explicit inputs and put into the
layer again inside the recomputed function. The non-reentrant variant is used: it supports
`torch.autograd.grad(create_graph=True)`, which the second-order inner steps need.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.nn.utils.stateless import _reparametrize_module  # what torch.func.functional_call uses
from torch.utils.checkpoint import checkpoint


def decoder_layers(backbone: nn.Module) -> tuple[str, nn.ModuleList]:
    """The backbone's list of decoder blocks (Qwen2/Llama: `layers`, GPT-2: `h`)."""
    for name in ("layers", "h"):
        mods = getattr(backbone, name, None)
        if isinstance(mods, nn.ModuleList):
            return name, mods
    raise ValueError(f"gradient checkpointing: no decoder layer list ('layers' or 'h') in {type(backbone).__name__}")


@contextmanager
def checkpointed(backbone: nn.Module, local_names: list[str], fast: list[torch.Tensor]):
    """While active, every decoder layer of `backbone` runs under checkpoint with its fast tensors.

    `local_names` are the fast tensors' names relative to `backbone` (as given to functional_call).
    """
    list_name, layers = decoder_layers(backbone)
    per_layer: list[dict[str, torch.Tensor]] = [{} for _ in layers]
    for name, t in zip(local_names, fast):
        head, idx, rest = (name.split(".", 2) + ["", ""])[:3]
        if head == list_name and idx.isdigit():
            per_layer[int(idx)][rest] = t
    patched = []
    for layer, own in zip(layers, per_layer):
        plain = type(layer).forward.__get__(layer)
        names = list(own)

        def forward(*args, _plain=plain, _layer=layer, _names=names, _own=own, **kwargs):
            def run(*tensors):
                with _reparametrize_module(_layer, dict(zip(_names, tensors))):
                    return _plain(*args, **kwargs)
            return checkpoint(run, *_own.values(), use_reentrant=False)

        layer.forward = forward  # an instance attribute shadows the class's forward
        patched.append(layer)
    try:
        yield
    finally:
        for layer in patched:
            del layer.forward
