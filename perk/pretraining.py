"""LM pretraining of the tiny base (PERK assumes a pretrained base; the baseline starts from it too).

It runs in the shared outer loop (perk/loop.py), so it checkpoints and resumes exactly like
meta-training. The recipe (experiments/RECIPE.md) is a constant learning rate, AdamW with torch's
default betas, the LM's gradients clipped at 1.0 and the weighting net's not clipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from . import loop
from .config import PretrainConfig, TrainLoopConfig
from .meta.inner import token_losses
from .meta.trainer import Episode, on_device, support_bce


def loop_config(cfg: PretrainConfig) -> TrainLoopConfig:
    """The outer-loop settings pretraining uses: constant lr (warmup 0, cosine floor 1)."""
    return TrainLoopConfig(steps=cfg.steps, lr=cfg.lr, warmup=0, min_lr_ratio=1.0, betas=(0.9, 0.999),
                           weight_decay=0.0, grad_clip=1.0, checkpoint_every=cfg.checkpoint_every,
                           eval_every=cfg.steps, out_dir=cfg.out_dir)


def pretrain_base(model, episodes: list[Episode], cfg: PretrainConfig, seed: int, ckpt_dir: str | Path,
                  fingerprint: str = "", log_fn: Callable[[dict, int], None] = lambda m, s: None,
                  progress: bool = True, weight_net: torch.nn.Module | None = None, pos_weight: float = 1.0,
                  exposure=None, recall=None) -> dict[str, float]:
    """LM loss on the haystack chunks of one episode per step (+ the exposure text's LM loss).

    With `weight_net`, the token-weighting net learns at the same time (BCE against the recorded
    supporting spans, on the base's last hidden states), so meta-training starts with a net that
    already finds the facts. With `recall` (perk.meta.recall_text.RecallText), full-length
    in-context recall text is added too: the base learns to retrieve from its prompt, as a
    pretrained LM can (what the prompt-based baseline needs).
    """
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr, "name": "model"}]
    modules = {"base": model}
    if weight_net is not None and cfg.lr_weight_net > 0:
        groups.append({"params": list(weight_net.parameters()), "lr": cfg.lr_weight_net, "name": "weight_net",
                       "grad_clip": None})
        modules["weight_net"] = weight_net
    else:
        weight_net = None
    dev = next(model.parameters()).device

    def step_fn(step: int) -> dict[str, float]:
        ch = on_device(episodes[loop.batch_indices(seed + 7, step, len(episodes), 1)[0]], dev).chunks
        out = model(input_ids=ch["input_ids"], attention_mask=None,  # right-padded, causal
                    output_hidden_states=weight_net is not None)
        mask = (ch["loss_mask"][:, 1:] * ch["attention_mask"][:, 1:]).float()
        loss = (token_losses(out.logits, ch["input_ids"]) * mask).sum() / mask.sum()
        metrics = {"loss": float(loss.detach())}
        total = cfg.context_lm * loss
        if weight_net is not None:
            _, logits = weight_net(out.hidden_states[-1][:, :-1])
            bce = support_bce(logits, ch, pos_weight)
            total = total + bce
            metrics["net_bce"] = float(bce.detach())
        if exposure is not None:
            ex = exposure.loss(model, step)
            total = total + ex
            metrics["exposure_loss"] = float(ex.detach())
        if recall is not None:
            rl, rm = recall.loss(model, step)
            total = total + rl
            metrics.update(rm)
        total.backward()
        return metrics

    return loop.run(modules, groups, loop_config(cfg), step_fn, ckpt_dir, log_fn=log_fn, desc="pretrain",
                    progress=progress, fingerprint=fingerprint)
