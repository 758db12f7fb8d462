"""Exposure: plain LM text that teaches a from-scratch base every answer word.

A pretrained LM knows every word; a tiny model trained from scratch only knows the words its
training answers contain, and the answer loss keeps pushing all other words down. Exposure text
stands in for that knowledge: needle-format sentences with *random* (key, value) pairs, keys from
the training pool (or every pool, when asked) and values from the whole lexicon. The pairs are
random, so nothing about any evaluation context can be learned from it.
"""
from __future__ import annotations

import random

import torch

from ..data import needle
from ..data.lexicon import pool
from .inner import token_losses


class Exposure:
    def __init__(self, tokenizer, keys: str = "train", seed: int = 0, rows: int = 2, per_row: int = 5):
        if keys not in ("train", "all"):
            raise ValueError(f"exposure keys must be 'train' or 'all', got {keys!r}")
        self.tok = tokenizer
        self.keys = pool("key", "train") if keys == "train" else pool("key")
        self.values = pool("value")
        self.seed, self.rows, self.per_row = seed, rows, per_row

    def texts(self, step: int) -> list[str]:
        # a function of (seed, step): a resumed run sees the same text as an uninterrupted one
        rng = random.Random(self.seed * 1_000_003 + step)
        return [" ".join(needle.NEEDLE.format(key=rng.choice(self.keys), value=rng.choice(self.values))
                         for _ in range(self.per_row)) for _ in range(self.rows)]

    def loss(self, lm: torch.nn.Module, step: int) -> torch.Tensor:
        """Mean next-token loss of `lm` on this step's exposure text."""
        # padded by hand: a fast tokenizer called with padding=True keeps padding switched on in its
        # backend, and later token counts (haystack fitting) would then include the pads
        seqs = self.tok(self.texts(step), add_special_tokens=False)["input_ids"]
        n = max(map(len, seqs))
        dev = next(lm.parameters()).device
        ids = torch.tensor([s + [self.tok.pad_token_id] * (n - len(s)) for s in seqs], device=dev)
        real = torch.tensor([[1.0] * (len(s) - 1) + [0.0] * (n - len(s)) for s in seqs], device=dev)
        # right-padded and causal: no attention mask, as everywhere else (see meta.inner.encode)
        out = lm(input_ids=ids, attention_mask=None)
        return (token_losses(out.logits, ids) * real).sum() / real.sum()
