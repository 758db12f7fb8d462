"""The trained PERK system as one module: base LM with the LoRA memory (its init is meta-learned),
learned inner step sizes and the token-weighting net; built from params, saved as safetensors."""
from __future__ import annotations

from pathlib import Path

import torch

from .artifacts import load_modules, save_modules
from .config import Params


class PerkBundle(torch.nn.Module):
    def __init__(self, p: Params, tokenizer, base: torch.nn.Module | None = None):
        super().__init__()
        from .meta import LearnedStepSizes
        from .model import TokenWeightNet, add_lora, load_model, lora_parameters

        base = base if base is not None else load_model(p.model, tokenizer)
        if p.model.frozen_base:  # a pretrained (or shape-only) base stays frozen; only the tiny one is meta-trained
            base.requires_grad_(False)
        self.lm = add_lora(base, p.lora)
        n = len(lora_parameters(self.lm))
        i = p.inner
        self.step_sizes = LearnedStepSizes(n, i.steps, i.lr_init, i.lr_min, i.lr_max)
        self.weight_net = TokenWeightNet(self.lm.config.hidden_size if hasattr(self.lm.config, "hidden_size")
                                         else self.lm.config.n_embd, recency=i.recency)
        self.inner = i

    @property
    def hidden_size(self) -> int:
        return self.weight_net.fc1.in_features

    def encode(self, chunks: dict[str, torch.Tensor], train: bool = False, example_id=None,
               return_weight_logits: bool = False, **inner):
        """Write one context's chunks into fast LoRA weights with this system's own step sizes,
        weighting net and inner-loop engine (perk.meta.inner.encode). `inner` overrides InnerConfig
        keys for this call, e.g. `micro_batch=16` at test time."""
        from .meta.inner import encode

        cfg = self.inner.model_copy(update=inner) if inner else self.inner
        net = self.weight_net if cfg.weighting == "net" else None
        return encode(self.lm, chunks, cfg, self.step_sizes, net, engine=cfg.engine, train=train,
                      example_id=example_id, return_weight_logits=return_weight_logits)

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        # a named pretrained base is frozen: store only what training changed
        return save_modules(path, {"perk": self}, trainable_only=True, metadata=metadata)

    def load(self, path: str | Path) -> dict:
        return load_modules(path, {"perk": self})
