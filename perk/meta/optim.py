"""Differentiable inner optimisers over a list of fast tensors.

Pure functions of (params, grads, lrs, state): nothing is updated in place, so the outer
loop can differentiate through every step. The Adam formula is the one `higher` uses
(eps added to the un-corrected sqrt(v), bias corrections folded into the step size), so both
engines compute the same numbers.
"""
from __future__ import annotations

import math

import torch


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    # sqrt'(0) is infinite; where v == 0 (e.g. grads of LoRA A while B is still zero) the
    # value is 0 and the gradient is masked to 0, as in higher.
    nz = v > 0
    return torch.where(nz, v, torch.ones_like(v)).sqrt() * nz


class InnerSGD:
    def init_state(self, params: list[torch.Tensor]) -> dict:
        return {}

    def step(self, params, grads, lrs, state):
        return [p - lrs[i] * g for i, (p, g) in enumerate(zip(params, grads))], state


class InnerAdam:
    def __init__(self, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8):
        self.beta1, self.beta2 = betas
        self.eps = eps

    def init_state(self, params: list[torch.Tensor]) -> dict:
        return {"t": 0, "m": [torch.zeros_like(p) for p in params], "v": [torch.zeros_like(p) for p in params]}

    def step(self, params, grads, lrs, state):
        t = state["t"] + 1
        b1, b2 = self.beta1, self.beta2
        scale = math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        new_p, new_m, new_v = [], [], []
        for i, (p, g, m, v) in enumerate(zip(params, grads, state["m"], state["v"])):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            new_p.append(p - (lrs[i] * scale) * m / (_safe_sqrt(v) + self.eps))
            new_m.append(m)
            new_v.append(v)
        return new_p, {"t": t, "m": new_m, "v": new_v}


def make_inner_optimizer(name: str, betas=(0.9, 0.95)):
    if name == "sgd":
        return InnerSGD()
    if name == "adam":
        return InnerAdam(tuple(betas))
    raise ValueError(f"unknown inner optimizer {name!r}; choose 'sgd' or 'adam'")
