"""Data parallelism for `perk train` under `torchrun --nproc_per_node N` (DDP semantics).

The inner loop is functional (torch.func), so the model is not wrapped in DDP; instead:

- every rank runs its own episodes: each step's batch is `batch_size` episodes *per rank*, rank r
  taking the slice r::world of `loop.batch_indices(seed, step, n, batch_size * world)`, so ranks
  see distinct episodes and one process with batch_size*world sees exactly the same ones;
- after backward, every parameter group's gradients are all-reduced and averaged (before the
  per-group clipping), so all ranks take the same optimizer step and stay identical;
- only rank 0 writes checkpoints, artifacts and MLflow runs; all ranks meet at a barrier at the end.

Launched without torchrun (WORLD_SIZE unset or 1) every function here is a no-op: rank 0 of 1.
Backend: nccl on CUDA (one GPU per rank, cuda:LOCAL_RANK), gloo on CPU.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init() -> bool:
    """Join the process group torchrun describes in the environment; False when not launched so."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def device() -> torch.device:
    """This rank's device: cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return torch.device("cpu")


def shard_indices(indices: list[int]) -> list[int]:
    """This rank's slice of a step's global batch (the whole batch on one process)."""
    return indices[rank()::world_size()]


def average_gradients(param_groups: list[dict]) -> None:
    """All-reduce-mean every parameter's gradient across ranks (one flat buffer per group).

    A parameter without a gradient on this rank contributes zeros, so every rank issues the same
    collectives and ends with the same gradients.
    """
    world = world_size()
    if world == 1:
        return
    for g in param_groups:
        params = [p for p in g["params"] if p.requires_grad]
        if not params:
            continue
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([t.reshape(-1) for t in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        off = 0
        for p in params:
            n = p.numel()
            p.grad = flat[off:off + n].view_as(p).to(p.dtype, copy=True)
            off += n


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def finish() -> None:
    """Barrier, then leave the process group (no-op on one process)."""
    if world_size() > 1:
        dist.barrier()
        dist.destroy_process_group()
