"""Two ways to run the model with fast LoRA weights and to take a differentiable inner step.

Both expose the same interface, so `encode` does not care which one it drives:
  start(init)                     -> per-encode state (optimizer state, patched model)
  forward(fast, **model_kwargs)   -> model output with the LoRA tensors replaced by `fast`
  step(fast, grads, lrs)          -> new fast tensors (a graph to the old ones is kept)

`torch_func` (default) uses torch.func.functional_call and our own optimizer maths;
`higher` uses higher's monkey-patched model and its differentiable optimizers. Gradients are
always computed by the caller, so micro-batch accumulation and first-order truncation are
identical in both.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.func import functional_call

from perk.meta.optim import make_inner_optimizer

ENGINES = ("torch_func", "higher")


def split_lm(model: nn.Module) -> tuple[str, str]:
    """Paths of the decoder backbone and the LM head inside `model` (peft-wrapped or not).

    We run them separately instead of asking for output_hidden_states: transformers-5 collects
    hidden states with hooks on the original modules, which higher's patched copies do not carry.
    """
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(causal, causal.base_model_prefix)
    head = causal.get_output_embeddings()
    ids = {id(m): n for n, m in model.named_modules()}
    return ids[id(backbone)], ids[id(head)]


@dataclass
class LMOutput:
    logits: torch.Tensor
    hidden: torch.Tensor  # last hidden state (after the final norm), input of the LM head


class TorchFuncEngine:
    name = "torch_func"

    def __init__(self, model: nn.Module, names: list[str], optimizer: str, betas, grad_checkpointing: bool = False):
        self.model, self.names = model, names
        self.grad_checkpointing = grad_checkpointing
        self.opt = make_inner_optimizer(optimizer, betas)
        self.state = None
        bb, head = split_lm(model)
        self.backbone, self.head = model.get_submodule(bb), model.get_submodule(head)
        if not all(n.startswith(bb + ".") for n in names):
            raise ValueError(f"LoRA tensors outside the decoder {bb!r} are not supported")
        self.local = [n[len(bb) + 1:] for n in names]

    def start(self, init: list[torch.Tensor]) -> None:
        self.state = self.opt.init_state(init)

    def forward(self, fast: list[torch.Tensor], input_ids, attention_mask=None) -> LMOutput:
        ckpt = nullcontext()
        if self.grad_checkpointing and torch.is_grad_enabled():
            from perk.meta.checkpointing import checkpointed
            ckpt = checkpointed(self.backbone, self.local, fast)
        with ckpt:
            h = functional_call(self.backbone, dict(zip(self.local, fast)), args=(),
                                kwargs=dict(input_ids=input_ids, attention_mask=attention_mask), strict=False)
        h = h.last_hidden_state
        return LMOutput(self.head(h), h)

    def step(self, fast, grads, lrs):
        new, self.state = self.opt.step(fast, grads, lrs, self.state)
        return new


class HigherEngine:
    name = "higher"

    def __init__(self, model: nn.Module, names: list[str], optimizer: str, betas):
        self.model, self.names = model, names
        self.optimizer, self.betas = optimizer, tuple(betas)
        all_names = [n for n, _ in model.named_parameters()]
        self._slot = {n: all_names.index(n) for n in names}  # position in higher's param list
        self.fmodel = self.diffopt = None
        self.paths = split_lm(model)

    def start(self, init: list[torch.Tensor]) -> None:
        import higher

        from perk.meta.higher_compat import monkeypatch

        # A fresh patched model per context: higher keeps a history of every param list it saw.
        self.fmodel = monkeypatch(self.model)
        # The LM head's input is the last hidden state; a hook on the patched head records it.
        self._head_input = []
        self.fmodel.get_submodule(self.paths[1]).register_forward_hook(
            lambda mod, args, out: self._head_input.append(args[0]))
        # One param group per LoRA tensor, so each gets its own learned lr via `override`.
        groups = [{"params": [p]} for p in init]
        if self.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=1.0, betas=self.betas, eps=1e-8)
        elif self.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=1.0)
        else:
            raise ValueError(f"unknown inner optimizer {self.optimizer!r}; choose 'sgd' or 'adam'")
        self.diffopt = higher.get_diff_optim(opt, init, fmodel=None, track_higher_grads=True)

    def forward(self, fast: list[torch.Tensor], input_ids, attention_mask=None) -> LMOutput:
        if self.fmodel is None:
            self.start(fast)
        params = list(self.model.parameters())
        for n, t in zip(self.names, fast):
            params[self._slot[n]] = t
        # Always call the patched root: a direct call of a patched submodule leaves higher's shared
        # params box filled, and the next direct call would silently reuse stale weights.
        logits = self.fmodel(input_ids=input_ids, attention_mask=attention_mask, params=params).logits
        return LMOutput(logits, self._head_input.pop())

    def step(self, fast, grads, lrs):
        # higher wants a loss to differentiate; we already have the (accumulated) grads, so give
        # it a free surrogate and hand the real grads over through grad_callback.
        surrogate = sum((p.sum() * 0.0) for p in fast)
        return self.diffopt.step(surrogate, params=list(fast), override={"lr": list(lrs.unbind(0))},
                                 grad_callback=lambda _: list(grads))


def make_engine(name: str, model: nn.Module, names: list[str], optimizer: str = "adam", betas=(0.9, 0.95),
                grad_checkpointing: bool = False):
    if name == "torch_func":
        return TorchFuncEngine(model, names, optimizer, betas, grad_checkpointing)
    if grad_checkpointing:
        raise ValueError(f"inner.grad_checkpointing is implemented for engine 'torch_func' only, not {name!r}")
    if name == "higher":
        return HigherEngine(model, names, optimizer, betas)
    raise ValueError(f"unknown inner-loop engine {name!r}; choose one of {ENGINES}")
