"""Stop a training run that has diverged, naming the step, instead of training on to a useless model.

Two signs: a non-finite loss (or gradient norm), and a loss far above where this run started
(`factor` x the first step's loss; 0 turns that check off). The start value is saved in every
checkpoint, so a resumed run judges against the same reference as an uninterrupted one.
"""
from __future__ import annotations

import math


class TrainingDiverged(ValueError):
    """A ValueError: deterministic given the params, so the CLI exits 2 and the flow does not retry it."""


class DivergenceGuard:
    def __init__(self, desc: str, factor: float, start: float | None = None):
        self.desc, self.factor, self.start = desc, factor, start

    def check(self, metrics: dict[str, float], step: int) -> None:
        """`step` is 0-based like the loop's; messages count steps from 1 as the progress bar does."""
        for key, value in metrics.items():
            if "loss" in key and not math.isfinite(float(value)):
                raise TrainingDiverged(
                    f"{self.desc}: {key} is {float(value)} at step {step + 1}: training diverged; "
                    f"lower the learning rates (lr, and the inner step-size bounds for meta-training)")
        loss = metrics.get("loss")
        if loss is None:
            return
        if self.start is None:
            self.start = float(loss)
            return
        if self.factor > 0 and self.start > 0 and loss > self.factor * self.start:
            raise TrainingDiverged(
                f"{self.desc}: loss {loss:.4g} at step {step + 1} is over {self.factor:g}x its start "
                f"({self.start:.4g}): training diverged; lower the learning rates "
                f"(or raise divergence_factor, 0: off)")

    def grad_norm(self, name: str, norm: float, step: int) -> None:
        if not math.isfinite(float(norm)):
            raise TrainingDiverged(f"{self.desc}: non-finite gradient norm of {name} at step {step + 1}: "
                                   f"training diverged; lower the learning rates")
