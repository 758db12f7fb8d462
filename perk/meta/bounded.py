"""Memory-bounded second-order inner steps (`inner.bounded_memory`), torch_func engine.

The inner gradient of one step is a sum over chunk micro-batches, g = sum_b dL_b/dfast. Given the
outer backward's cotangent v for g (LoRA-sized), its meta-gradient is

    d<g, v>/d(fast, base, net) = sum_b d<dL_b/dfast, v>/d(fast, base, net),

one Hessian-vector product per micro-batch. The full-graph path gets it by keeping the
create_graph=True graph of every micro-batch of every differentiated step alive until the outer
backward, so memory grows with the context. `InnerGrad` instead computes g in its forward with no
graph at all and, in the outer backward, recomputes one micro-batch at a time, takes its HVP and
frees it before the next one. Between the inner loop and the outer backward each step keeps only
its fast weights, its gradient and the optimiser state: LoRA-sized, independent of the context.
The price is one extra forward + backward per micro-batch and differentiated step.

The step-0 weighting-net logits (the auxiliary support loss) get the same treatment: they are an
optional extra output of step 0, one float per token, whose backward also recomputes per micro-batch.

Only what goes into the loss of a micro-batch is recomputed; the optimiser step (SGD/Adam) stays
in ordinary autograd outside, so every inner optimiser works unchanged.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def _rng_state(device: torch.device):
    # Recomputation must see the same dropout masks as the forward (as torch.utils.checkpoint does).
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


class MicroBatched:
    """The inner loss of one context as a sum over chunk micro-batches, recomputable on demand.

    `micro_loss(fast, slice) -> (loss, weighting-net logits or None)` is the loss of one
    micro-batch, the same function the full-graph path in `inner.encode` differentiates.
    `params` are the tensors other than the fast weights that the loss depends on and that need
    meta-gradients (trainable base weights, weighting net); the outer backward reaches them
    through `InnerGrad.backward`.
    """

    def __init__(self, micro_loss, n_chunks: int, micro_batch: int, params: list[torch.Tensor],
                 device: torch.device, check_finite=lambda x, what, step: None):
        if micro_batch < 1:
            raise ValueError("inner.bounded_memory needs inner.micro_batch >= 1 (chunks recomputed at a time), "
                             f"got inner.micro_batch={micro_batch}")
        self.micro_loss, self.params, self.device = micro_loss, params, device
        self.slices = [slice(s, s + micro_batch) for s in range(0, n_chunks, micro_batch)]
        self.check_finite = check_finite
        self.last_loss = 0.0

    def gradient(self, fast: list[torch.Tensor], step: int, want_logits: bool):
        """g = sum_b dL_b/dfast with no graph kept; the RNG state of each micro-batch for replay."""
        leaves = [f.detach().requires_grad_() for f in fast]
        grads = [torch.zeros_like(f) for f in leaves]
        logits, rng, total = [], [], 0.0
        with torch.enable_grad():
            for sl in self.slices:
                rng.append(_rng_state(self.device))
                loss, lg = self.micro_loss(leaves, sl)
                self.check_finite(loss.detach(), "loss", step)
                g = torch.autograd.grad(loss, leaves, allow_unused=True)
                grads = [a + b if b is not None else a for a, b in zip(grads, g)]
                total += float(loss.detach())
                if want_logits:
                    logits.append(lg.detach())
        self.last_loss = total
        return grads, (torch.cat(logits) if want_logits else None), rng

    def vjp(self, fast, v, u, rng, autocast):
        """sum_b d(<dL_b/dfast, v> + <logits_b, u_b>)/d(fast, params), one micro-batch at a time."""
        leaves = [f.detach().requires_grad_() for f in fast]
        inputs = leaves + list(self.params)
        acc: list[torch.Tensor | None] = [None] * len(inputs)
        pairs = [(i, x) for i, x in enumerate(v) if x is not None]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.enable_grad(), torch.autocast(**autocast), torch.random.fork_rng(devices=devices):
            for sl, (cpu_state, cuda_state) in zip(self.slices, rng):
                torch.set_rng_state(cpu_state)
                if cuda_state is not None:
                    torch.cuda.set_rng_state(cuda_state, self.device)
                loss, lg = self.micro_loss(leaves, sl)
                terms = []
                if pairs:
                    g = torch.autograd.grad(loss, [leaves[i] for i, _ in pairs], create_graph=True,
                                            allow_unused=True)
                    terms += [(a * x).sum() for a, (_, x) in zip(g, pairs) if a is not None and a.requires_grad]
                if u is not None:
                    terms.append((lg * u[sl].to(lg.dtype)).sum())
                if not terms:
                    continue
                d = torch.autograd.grad(sum(terms), inputs, allow_unused=True)
                acc = [a if b is None else (b if a is None else a + b) for a, b in zip(acc, d)]
        n = len(leaves)
        return acc[:n], acc[n:]


class InnerGrad(torch.autograd.Function):
    """(fast..., params...) -> (g..., [step-0 logits]) computed by `MicroBatched`; see module doc."""

    @staticmethod
    def forward(ctx, run: MicroBatched, step: int, want_logits: bool, n_fast: int, *tensors):
        fast = list(tensors[:n_fast])  # tensors[n_fast:] are run.params: inputs only so autograd routes their grads
        ctx.set_materialize_grads(False)  # a detached output (first-order step) sends None: skip its HVP
        ctx.run, ctx.n_fast, ctx.want_logits = run, n_fast, want_logits
        dev = run.device.type
        ctx.autocast = dict(device_type=dev, enabled=torch.is_autocast_enabled(dev),
                            dtype=torch.get_autocast_dtype(dev))
        ctx.save_for_backward(*fast)
        grads, logits, ctx.rng = run.gradient(fast, step, want_logits)
        return (*grads, logits) if want_logits else tuple(grads)

    @staticmethod
    @once_differentiable
    def backward(ctx, *cotangents):
        n = ctx.n_fast
        u = cotangents[n] if ctx.want_logits else None
        d_fast, d_params = ctx.run.vjp(list(ctx.saved_tensors), cotangents[:n], u, ctx.rng, ctx.autocast)
        # ctx.run's closure reaches this node's graph again (an autograd cycle Python's gc cannot
        # collect): without dropping it every outer step leaked ~1.5 MB at 2048 tokens
        ctx.run = ctx.rng = None
        return (None, None, None, None, *d_fast, *d_params)


def inner_grad(run: MicroBatched, fast: list[torch.Tensor], step: int, want_logits: bool = False):
    """The step's accumulated gradient (and step-0 logits), differentiable at bounded memory."""
    out = InnerGrad.apply(run, step, want_logits, len(fast), *fast, *run.params)
    return (list(out[:len(fast)]), out[len(fast)] if want_logits else None)
