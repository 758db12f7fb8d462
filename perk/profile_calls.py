"""The workloads `perk profile` measures, each built once and returned as a `run()` closure.

Token content does not change cost, so inputs are random ids of exactly the requested shape.
On CUDA every workload runs under bf16 autocast (the paper's setup); on CPU in the model's dtype.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch

METHOD_PROMPT = "prompt"
METHOD_META_STEP = "meta_step"


def perk_method(micro_batch: int) -> str:
    return f"perk_mb{micro_batch}"


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _vocab(bundle) -> int:
    return bundle.lm.get_input_embeddings().weight.shape[0]


def perk_call(bundle, length: int, chunk_tokens: int, micro_batch: int, new_tokens: int, device):
    """Test-time PERK: encode the context (first-order, micro-batched), then answer without it."""
    from .evaluate import adapted

    n_chunks = math.ceil(length / chunk_tokens)
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(3, _vocab(bundle), (n_chunks, chunk_tokens), generator=g).to(device)
    ones = torch.ones_like(ids)
    question = torch.randint(3, _vocab(bundle), (1, 24), generator=g).to(device)

    def run():
        with _autocast(device):
            enc = bundle.encode({"input_ids": ids, "attention_mask": ones, "loss_mask": ones}, train=False,
                                micro_batch=micro_batch)
            with adapted(bundle.lm, {n: t.detach() for n, t in enc.as_dict().items()}), torch.no_grad():
                bundle.lm.generate(question, attention_mask=torch.ones_like(question), max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False, use_cache=True)
    return run


def prompt_call(bundle, length: int, new_tokens: int, device):
    """Prompt-based inference (FT-ICR at test time): prefill the whole context, then answer."""
    ids = torch.randint(3, _vocab(bundle), (1, length + 24), generator=torch.Generator().manual_seed(length)).to(device)

    def run():
        with _autocast(device), torch.no_grad(), bundle.lm.disable_adapter():
            bundle.lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, use_cache=True)
    return run


def meta_step_call(bundle, length: int, chunk_tokens: int, device):
    """One meta-training step: K inner steps (the last `differentiate_last` second-order) on all
    chunks at once, the outer answer loss and its backward. Parameters are not updated (the
    optimizer step is a small fixed cost next to this)."""
    from .bench import _synthetic_episode
    from .meta.trainer import episode_forward

    ep = _synthetic_episode(_vocab(bundle), max(1, length // chunk_tokens), chunk_tokens)

    def run():
        with _autocast(device):
            loss, _, bce, _ = episode_forward(bundle, ep, train=True, aux=True)
        (loss + (bce if bce is not None else 0.0)).backward()
        bundle.zero_grad(set_to_none=True)
    return run


def make_call(bundle, spec: dict, length: int, device):
    m = spec["method"]
    if m == METHOD_PROMPT:
        return prompt_call(bundle, length, spec["new_tokens"], device)
    if m == METHOD_META_STEP:
        return meta_step_call(bundle, length, spec["chunk_tokens"], device)
    if m.startswith("perk_mb"):
        return perk_call(bundle, length, spec["chunk_tokens"], int(m.removeprefix("perk_mb")),
                         spec["new_tokens"], device)
    raise ValueError(f"unknown profile method {m!r}: 'prompt', 'meta_step' or 'perk_mb<micro-batch>'")
