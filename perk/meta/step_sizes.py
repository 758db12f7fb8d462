"""Learned inner-loop step sizes: one log learning rate per LoRA tensor per inner step (MAML++).

Log-parameterised so the outer optimiser moves them multiplicatively; clamped to
[lr_min, lr_max] in the forward pass (safety) and projected back after each outer update
(`project_`) so the stored value never sits outside the range where its gradient is zero.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class LearnedStepSizes(nn.Module):
    def __init__(self, num_tensors: int, steps: int, lr_init: float, lr_min: float, lr_max: float):
        super().__init__()
        if steps < 1:
            raise ValueError(f"inner steps must be >= 1, got {steps}")
        if not 0 < lr_min <= lr_init <= lr_max:
            raise ValueError(f"need 0 < lr_min <= lr_init <= lr_max, got {lr_min}, {lr_init}, {lr_max}")
        self.log_min, self.log_max = math.log(lr_min), math.log(lr_max)
        self.log_lr = nn.Parameter(torch.full((steps, num_tensors), math.log(lr_init)))

    @property
    def steps(self) -> int:
        return self.log_lr.shape[0]

    def forward(self, step: int) -> torch.Tensor:
        """Learning rates (one per LoRA tensor) for inner step `step`."""
        return self.log_lr[step].clamp(self.log_min, self.log_max).exp()

    @torch.no_grad()
    def project_(self) -> None:
        self.log_lr.clamp_(self.log_min, self.log_max)
