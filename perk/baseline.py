"""The prompt-based long-context baseline ("FT-ICR"): fine-tune the same base model on
context-in-prompt -> answer, on the same data, for the same number of examples as PERK."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from . import loop
from .config import BaselineConfig
from .prompts import answer_loss, answer_target, context_prompt, greedy_answer, qa_batch
from .scoring import exact_match


def evaluate_em(model, tokenizer, rows: list[dict], device="cpu") -> float:
    model.eval()
    hits = [exact_match(greedy_answer(model, tokenizer, context_prompt(r), device=device), r["answer"]) for r in rows]
    model.train()
    return sum(hits) / max(1, len(hits))


def train(cfg: BaselineConfig, model: torch.nn.Module, tokenizer, train_rows: list[dict], val_rows: list[dict],
          seed: int, log_fn: Callable[[dict, int], None] = lambda m, s: None, progress: bool = True,
          device="cpu", fingerprint: str = "") -> dict[str, float]:
    """Fine-tune all weights of `model` in place; checkpoints under cfg.out_dir/checkpoints."""
    if not train_rows:
        raise ValueError(f"baseline: no training rows for task {cfg.task!r}")
    model.to(device).train()
    val = val_rows[:cfg.eval_examples]
    use_bf16 = torch.device(device).type == "cuda"

    def step_fn(step: int) -> dict[str, float]:
        rows = [train_rows[i] for i in loop.batch_indices(seed, step, len(train_rows), cfg.batch_size)]
        batch = qa_batch(tokenizer, [context_prompt(r) for r in rows], [answer_target(r) for r in rows], device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            # right-padded + causal: real tokens never see padding, so no mask (see meta.inner.encode)
            logits = model(input_ids=batch["input_ids"]).logits
        loss = answer_loss(logits, batch["labels"])
        loss.backward()
        return {"loss": float(loss.detach()), "tokens": float(batch["attention_mask"].sum())}

    params = [p for p in model.parameters() if p.requires_grad]
    return loop.run({"model": model}, [{"params": params, "lr": cfg.lr, "name": "model"}], cfg, step_fn,
                    Path(cfg.out_dir) / "checkpoints",
                    eval_fn=(lambda: {"val_em": evaluate_em(model, tokenizer, val, device)}) if val else None,
                    log_fn=log_fn, desc="baseline", progress=progress, fingerprint=fingerprint)
