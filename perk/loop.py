"""The outer training loop shared by meta-training and the baseline.

AdamW (per-group learning rates), linear warmup + cosine decay, gradient clipping, progress
bar, periodic validation, and checkpoints that make a killed run resume to the same result:
each step's batch is drawn from a generator seeded by (seed, step), so the data order does not
depend on where a run started, and model/optimizer/scheduler/RNG state is restored exactly.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from . import checkpoint, distributed, progress as progress_
from .config import TrainLoopConfig
from .divergence import DivergenceGuard


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int,
                  min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then cosine decay from lr to min_ratio * lr at `total` steps."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _clip(value: float | None) -> float:
    return math.inf if value is None else value


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n, (batch_size,), generator=g).tolist()


def run(modules: dict[str, torch.nn.Module], param_groups: list[dict], cfg: TrainLoopConfig,
        step_fn: Callable[[int], dict[str, float]], ckpt_dir: str | Path,
        eval_fn: Callable[[], dict[str, float]] | None = None,
        log_fn: Callable[[dict[str, float], int], None] = lambda m, s: None,
        after_step: Callable[[], None] = lambda: None, desc: str = "train",
        progress: bool = True, fingerprint: str = "") -> dict[str, float]:
    """Train until cfg.steps; `step_fn(step)` computes the loss, calls backward, returns metrics.

    `fingerprint` identifies the run's inputs (params, data); checkpoints written under another
    fingerprint are discarded instead of resumed.
    """
    opt = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
    start, last = 0, {}
    found, state = checkpoint.newest_intact(ckpt_dir, fingerprint, desc, writer=distributed.is_main())
    guard = DivergenceGuard(desc, cfg.divergence_factor)
    if found is not None:
        guard.restore(state.get("loss_start"))
        for name, mod in modules.items():
            mod.load_state_dict(state["modules"][name])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        checkpoint.set_rng_state(state["rng"])
        start, last = state["step"], state.get("last", {})
        print(f"{desc}: resuming from {found} (step {start}/{cfg.steps})")
    distributed.barrier()  # torchrun: every rank has resumed before rank 0 may write a checkpoint
    main = distributed.is_main()
    bar = progress_.bar(range(start, cfg.steps), total=cfg.steps, initial=start, desc=desc, enabled=progress and main)
    for step in bar:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        metrics = step_fn(step)
        if distributed.world_size() == 1:
            # a loss is per rank: one rank raising alone would leave the others waiting in the
            # all-reduce; under torchrun a diverged loss shows as the (averaged) gradient norm below
            guard.check(metrics, step)
        distributed.average_gradients(param_groups)  # torchrun: mean over ranks (no-op on one process)
        # Clip per group: meta-gradients of step sizes are orders of magnitude larger than the
        # model's and would otherwise shrink every model update. A group may set its own
        # "grad_clip" (None: measured and checked, not clipped).
        norms = {g.get("name", f"group{i}"): torch.nn.utils.clip_grad_norm_(
                     g["params"], _clip(g.get("grad_clip", cfg.grad_clip)))
                 for i, g in enumerate(param_groups)}
        for name, gn in norms.items():
            guard.grad_norm(name, gn, step)
        opt.step()
        sched.step()
        after_step()
        metrics = {**metrics, **{f"grad_norm/{n}": float(v) for n, v in norms.items()},
                   "lr": sched.get_last_lr()[0],
                   "step_time_s": time.perf_counter() - t0}
        done = step + 1
        if main and eval_fn is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            metrics.update(eval_fn())
            shown = {k: v for k, v in metrics.items() if k in ("loss", "train_em", "aux_bce", "val_em")}
            progress_.write(f"{desc} step {done}/{cfg.steps}: " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        if main:
            log_fn(metrics, done)
        last = {k: float(v) for k, v in metrics.items()}
        bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k in ("loss", "val_em")})
        if main and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            checkpoint.save(checkpoint.step_dir(ckpt_dir, done), {
                "step": done, "modules": {n: m.state_dict() for n, m in modules.items()},
                "optim": opt.state_dict(), "sched": sched.state_dict(),
                "rng": checkpoint.rng_state(), "last": last, "fingerprint": fingerprint,
                "loss_start": guard.state()})
            checkpoint.prune(ckpt_dir, keep=2)
    return last
