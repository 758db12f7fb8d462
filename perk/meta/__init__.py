"""PERK meta-learning: differentiable inner loop (encode a context into LoRA weights)."""
from perk.meta.engines import ENGINES, make_engine
from perk.meta.inner import Encoded, InnerLoopError, chunk_batch, encode, token_losses
from perk.meta.optim import InnerAdam, InnerSGD, make_inner_optimizer
from perk.meta.step_sizes import LearnedStepSizes

__all__ = ["ENGINES", "Encoded", "InnerAdam", "InnerLoopError", "InnerSGD", "LearnedStepSizes",
           "chunk_batch", "encode", "make_engine", "make_inner_optimizer", "token_losses"]
