"""The inner loop: write a context into LoRA weights with K differentiable optimiser steps.

The context arrives as a batch of chunks (C, T) that do not attend to each other; each chunk
already carries its "Document {i}:" prefix (see `chunk_batch`). The inner loss is the causal-LM
loss on the chunk tokens, optionally weighted per token by a learned net. Only the last
`differentiate_last` steps are second-order; in earlier steps the gradient is treated as a
constant (first-order MAML), so the path fast <- init and the learned step sizes still receive
meta-gradients, only the Hessian terms are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from perk.config import InnerConfig
from perk.meta.bounded import MicroBatched, inner_grad
from perk.meta.engines import make_engine
from perk.meta.step_sizes import LearnedStepSizes
from perk.model import lora_parameters


class InnerLoopError(RuntimeError):
    """Non-finite inner loss or gradient; the message names the step and the example."""


@dataclass
class Encoded:
    names: list[str]
    fast: list[torch.Tensor]
    engine: object
    inner_losses: list[float] = field(default_factory=list)
    weight_logits: torch.Tensor | None = None  # (C, T-1) from step 0, for an auxiliary loss

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.fast))

    def forward(self, **kwargs):
        """Run the adapted model (e.g. on the question, with no context)."""
        return self.engine.forward(self.fast, **kwargs)


def chunk_batch(tokenizer, chunks: list[str], supports: list[list[tuple[int, int]]] | None = None,
                prefix: str = "Document {i}:", chunk_len: int | None = None,
                indices: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Tokenise chunks as "Document {i}: <text>" (i = 1, 2, ... or the given `indices`), pad right.
    loss_mask excludes prefix and padding.

    `supports` (optional, per chunk) are character spans of supporting facts in the chunk text;
    they become `support_mask` (1 on target tokens inside a span) for the weighting net's
    auxiliary loss.
    """
    rows, lmask, smask = [], [], []
    for i, text in enumerate(chunks):
        head = tokenizer(prefix.format(i=indices[i] if indices else i + 1), add_special_tokens=False)["input_ids"]
        enc = tokenizer(" " + text, add_special_tokens=False, return_offsets_mapping=supports is not None)
        body = enc["input_ids"]
        rows.append(head + body)
        lmask.append([0] * len(head) + [1] * len(body))
        if supports is not None:
            spans = supports[i]
            # offsets are into " " + text; a token is supporting if it overlaps a span
            inside = [int(any(max(a - 1, s) < min(b - 1, e) for s, e in spans)) for a, b in enc["offset_mapping"]]
            smask.append([0] * len(head) + inside)
    T = chunk_len or max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def padded(seqs, v):
        return torch.tensor([s[:T] + [v] * (T - len(s[:T])) for s in seqs])

    out = {"input_ids": padded(rows, pad), "attention_mask": padded([[1] * len(r) for r in rows], 0),
           "loss_mask": padded(lmask, 0)}
    if supports is not None:
        out["support_mask"] = padded(smask, 0)
    return out


def token_losses(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-position next-token CE, shape (C, T-1)."""
    lg = logits[:, :-1].flatten(0, 1)
    if lg.dtype in (torch.float16, torch.bfloat16):  # CE in low precision is too coarse for inner steps
        lg = lg.float()
    return F.cross_entropy(lg, input_ids[:, 1:].flatten(), reduction="none").view(input_ids.shape[0], -1).to(logits.dtype)


def _check_finite(x: torch.Tensor, what: str, step: int, example_id) -> None:
    if not torch.isfinite(x).all():
        raise InnerLoopError(f"non-finite inner {what} at inner step {step} for example {example_id!r}")


def encode(model: nn.Module, chunks: dict[str, torch.Tensor], cfg: InnerConfig,
           step_sizes: LearnedStepSizes, weight_net: nn.Module | None = None,
           engine: str = "torch_func", train: bool = True, example_id=None,
           return_weight_logits: bool = False) -> Encoded:
    """K inner steps on one context's chunks; returns the fast LoRA weights.

    train=False (test time): every step first-order, fast weights detached after each step, and
    chunks processed in micro-batches of `cfg.micro_batch` with gradient accumulation, so memory
    is bounded by one micro-batch's activations. `cfg.steps` may then exceed the learned steps:
    steps past them use the last learned step size.

    train=True with cfg.bounded_memory (torch_func only): the same meta-gradients, but no step
    keeps a graph over the chunks; the outer backward recomputes them one micro-batch at a time
    (perk/meta/bounded.py), so training memory too is bounded by one micro-batch.
    """
    if cfg.steps < 1:
        raise ValueError(f"inner steps must be >= 1, got {cfg.steps}")
    if train and step_sizes.steps < cfg.steps:
        raise ValueError(f"step_sizes has {step_sizes.steps} steps, config asks for {cfg.steps}")
    if cfg.bounded_memory and engine != "torch_func":
        raise ValueError(f"inner.bounded_memory: true is implemented for inner.engine: torch_func only, got {engine!r}")
    lora = lora_parameters(model)
    names, init = list(lora), list(lora.values())
    eng = make_engine(engine, model, names, cfg.optimizer, cfg.betas, cfg.grad_checkpointing)
    use_net = cfg.weighting == "net" and weight_net is not None

    with torch.enable_grad():
        fast = init if train else [p.detach().requires_grad_() for p in init]
        eng.start(fast)
        ids, att, lmask = chunks["input_ids"], chunks["attention_mask"], chunks["loss_mask"]
        tmask = (lmask[:, 1:] * att[:, 1:]).to(init[0].dtype)
        n_tok = tmask.sum().clamp_min(1.0)
        C = ids.shape[0]
        mb = cfg.micro_batch or C

        def micro_loss(fast, sl):
            """Inner loss of the chunks in `sl` (normalised by the whole context's token count)."""
            # No padding mask: chunks are right-padded and attention is causal, so real tokens
            # never see padding; masking pads would leave pad rows of a sliding-window layer
            # with nothing to attend to (NaN), and pad losses are masked out below anyway.
            res = eng.forward(fast, input_ids=ids[sl], attention_mask=None)
            ce = token_losses(res.logits, ids[sl])
            w, logits = tmask[sl], None
            if use_net:
                weights, logits = weight_net(res.hidden[:, :-1])
                if cfg.weight_gate > 0:  # below the gate: not written at all (the weights' gradient is kept above it)
                    weights = weights * (weights.detach() >= cfg.weight_gate)
                w = w * weights
                rec = weight_net.recency_factor(sl.start or 0, ids[sl].shape[0], C, ids.shape[1]) \
                    if hasattr(weight_net, "recency_factor") else None
                if rec is not None:
                    w = w * rec.to(w.dtype)
            return (w * ce).sum() / n_tok, logits

        bounded = None
        if train and cfg.bounded_memory:
            names_set = set(names)
            params = [p for n, p in model.named_parameters() if n not in names_set and p.requires_grad]
            if use_net:
                params += [p for p in weight_net.parameters() if p.requires_grad]
            bounded = MicroBatched(micro_loss, C, cfg.micro_batch, params, ids.device,
                                   lambda x, what, step: _check_finite(x, what, step, example_id))
        out = Encoded(names=names, fast=fast, engine=eng)
        for k in range(cfg.steps):
            second = train and not cfg.first_order and k >= cfg.steps - cfg.differentiate_last
            keep_step0 = return_weight_logits and k == 0 and train and use_net
            if bounded is not None:
                grads, logits = inner_grad(bounded, fast, k, want_logits=keep_step0)
                if keep_step0:
                    out.weight_logits = logits
                total = bounded.last_loss
            else:
                grads, total, logit_parts = full_graph_grad(micro_loss, fast, C, mb, k, second, keep_step0, example_id)
                if logit_parts:
                    out.weight_logits = torch.cat(logit_parts)
            _check_finite(torch.stack([g.detach().sum() for g in grads]), "gradient", k, example_id)
            if not second:
                grads = [g.detach() for g in grads]
            # test time may run more steps than were meta-learned: the extra ones repeat the last
            # learned step size (evaluate.inner_steps; more writing for a longer context)
            lrs = step_sizes(min(k, step_sizes.steps - 1))
            if not train:
                lrs = lrs.detach()
            fast = eng.step(fast, grads, lrs)
            if not train:
                fast = [p.detach().requires_grad_() for p in fast]
            out.inner_losses.append(total)
        out.fast = fast
    return out


def full_graph_grad(micro_loss, fast, C: int, mb: int, k: int, second: bool, keep_step0: bool, example_id):
    """Accumulate the micro-batch gradients; second-order steps keep every micro-batch's graph."""
    grads = [torch.zeros_like(p) for p in fast]
    total, logit_parts = 0.0, []
    for s in range(0, C, mb):
        loss, logits = micro_loss(fast, slice(s, s + mb))
        if keep_step0:
            logit_parts.append(logits)
        _check_finite(loss.detach(), "loss", k, example_id)
        g = torch.autograd.grad(loss, fast, create_graph=second, retain_graph=second or keep_step0,
                                allow_unused=True)
        grads = [a + (b if b is not None else 0) for a, b in zip(grads, g)]
        total += float(loss.detach())
    return grads, total, logit_parts
