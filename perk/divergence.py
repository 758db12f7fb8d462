"""Stop a training run that has diverged, naming the step, instead of training on to a useless model.

Two signs: a non-finite loss (or gradient norm), and a loss far above where this run started
(`factor` x its starting loss; 0 turns that check off). The starting loss is the mean of the
first `WINDOW` steps' losses, not the first step's alone: meta-training has one episode per
step, whose losses spread over an order of magnitude (0.1-1.8 on babilong), so one lucky first
episode set a reference that ordinary later episodes exceeded 10x (experiments/REASONING.md run
Q2_4). The ratio check starts once the window is full (a blow-up inside it shows as a non-finite
loss, or is caught at the first step after it). The window is saved in every checkpoint, so a
resumed run judges against the same reference as an uninterrupted one.
"""
from __future__ import annotations

import math

WINDOW = 10


class TrainingDiverged(ValueError):
    """A ValueError: deterministic given the params, so the CLI exits 2 and the flow does not retry it."""


class DivergenceGuard:
    def __init__(self, desc: str, factor: float, window: int = WINDOW):
        self.desc, self.factor, self.window = desc, factor, window
        self.first: list[float] = []  # the first `window` losses of the run

    @property
    def start(self) -> float | None:
        return sum(self.first) / len(self.first) if self.first else None

    def state(self) -> list[float]:
        return list(self.first)

    def restore(self, saved: list[float] | float | None) -> None:
        """From a checkpoint; a float is an older checkpoint's first-step loss, kept as the whole window."""
        if saved is None:
            self.first = []
        elif isinstance(saved, (int, float)):
            self.first = [float(saved)] * self.window
        else:
            self.first = [float(v) for v in saved][: self.window]

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
        loss = float(loss)
        if len(self.first) < self.window:
            self.first.append(loss)
            return
        start = self.start
        if self.factor > 0 and start > 0 and loss > self.factor * start:
            raise TrainingDiverged(
                f"{self.desc}: loss {loss:.4g} at step {step + 1} is over {self.factor:g}x its start "
                f"({start:.4g}, the mean of the first {len(self.first)} steps' losses): training diverged; "
                f"lower the learning rates (or raise divergence_factor, 0: off)")

    def grad_norm(self, name: str, norm: float, step: int) -> None:
        if not math.isfinite(float(norm)):
            raise TrainingDiverged(f"{self.desc}: non-finite gradient norm of {name} at step {step + 1}: "
                                   f"training diverged; lower the learning rates")
