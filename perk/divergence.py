"""Stop a training run that has diverged, naming the step, instead of training on to a useless model.

Two signs: a non-finite loss (or gradient norm), and a loss that stays far above where this run
started (`factor` x its starting loss; 0 turns that check off). Both sides of the ratio are means
over `WINDOW` steps. The start is the mean of the first WINDOW losses, not the first step's alone:
meta-training has one episode per step, whose losses spread over an order of magnitude (0.1-1.8 on
babilong), so one lucky first episode set a reference that ordinary later episodes exceeded 10x
(experiments/REASONING.md run Q2_4). The current loss is the mean of the last WINDOW losses, not
one episode's: a run continued from a trained model starts near 0.1, and one hard episode at 1.45
stopped a healthy run at step 1,568 (experiments/FAMILIES.md run MVS5); a run that diverges stays
high, so the mean passes the bound within a few steps. The ratio check starts once the window is
full (a blow-up inside it shows as a non-finite loss). Both windows are saved in every checkpoint,
so a resumed run makes the decisions an uninterrupted one would.
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
        self.recent: list[float] = []  # the last `window` losses

    @property
    def start(self) -> float | None:
        return sum(self.first) / len(self.first) if self.first else None

    def state(self) -> dict[str, list[float]]:
        return {"first": list(self.first), "recent": list(self.recent)}

    def restore(self, saved: dict | list[float] | float | None) -> None:
        """From a checkpoint; older checkpoints saved the first window alone (a list), or before
        that the first step's loss (a float, kept as the whole window)."""
        if isinstance(saved, dict):
            self.first = [float(v) for v in saved.get("first", [])][: self.window]
            self.recent = [float(v) for v in saved.get("recent", [])][-self.window:]
        elif saved is None:
            self.first, self.recent = [], []
        elif isinstance(saved, (int, float)):
            self.first, self.recent = [float(saved)] * self.window, []
        else:
            self.first, self.recent = [float(v) for v in saved][: self.window], []

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
        self.recent = (self.recent + [loss])[-self.window:]
        if len(self.first) < self.window:
            self.first.append(loss)
            return
        start, now = self.start, sum(self.recent) / len(self.recent)
        if self.factor > 0 and start > 0 and len(self.recent) == self.window and now > self.factor * start:
            raise TrainingDiverged(
                f"{self.desc}: loss {now:.4g} (the mean of steps {step + 2 - self.window}-{step + 1}) is over "
                f"{self.factor:g}x its start ({start:.4g}, the mean of the first {len(self.first)} steps' losses): "
                f"training diverged; lower the learning rates (or raise divergence_factor, 0: off)")

    def grad_norm(self, name: str, norm: float, step: int) -> None:
        if not math.isfinite(float(norm)):
            raise TrainingDiverged(f"{self.desc}: non-finite gradient norm of {name} at step {step + 1}: "
                                   f"training diverged; lower the learning rates")
