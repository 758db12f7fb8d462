"""Meta-training: the outer loop that teaches the model to answer from the adapter.

One episode = one context and every question asked about it. The inner loop encodes the
context's chunks into fast LoRA weights; the outer loss is the answer loss of the adapted model
on the questions with NO context in the prompt. Meta-gradients reach the LoRA init, the learned
step sizes, the token-weighting net and (tiny profile) the base model. The weighting net also
gets an auxiliary loss against the supporting-fact spans the training data records, so at test
time it picks the facts out of the haystack with no labels.
"""
from __future__ import annotations

import random

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .. import distributed, loop
from ..prompts import answer_target, group_by_context, ordered_questions, question_prompt, qa_batch
from .inner import chunk_batch


@dataclass
class Episode:
    id: str
    chunks: dict[str, torch.Tensor]  # chunk_batch output, with support_mask
    questions: dict[str, torch.Tensor]  # qa_batch output: all questions about this context


SPAN_COLUMN = {"answer": "answer_spans", "sentence": "fact_spans"}


def support_spans(row: dict, mode: str) -> list[tuple[int, int, int]]:
    """(chunk, start, end) character spans the weighting net should mark, as the generator recorded
    them: the text the answer is read from (`answer`) or the whole supporting facts (`sentence`).
    Never a search of the text: "no" would be found inside "Knox", a grade inside an ID."""
    if mode not in SPAN_COLUMN:
        raise ValueError(f"meta_train.support_span must be one of {sorted(SPAN_COLUMN)}, got {mode!r}")
    col = SPAN_COLUMN[mode]
    if col not in row:
        raise ValueError(f"row {row.get('id')!r} has no {col!r}: it was synthesized before answer spans were "
                         f"recorded; regenerate the data with `perk synth` (or `dvc repro synth`)")
    out = []
    for sp in row[col]:
        c, a, b = sp["chunk"], sp["start"], sp["end"]
        if not (0 <= c < len(row["context"]) and 0 <= a < b <= len(row["context"][c])):
            raise ValueError(f"row {row.get('id')!r}: {col} entry {sp} lies outside its chunk")
        out.append((c, a, b))
    return out


def make_episodes(rows: list[dict], tokenizer, span_mode: str = "answer", max_questions: int = 0,
                  spans_of: str = "asked", order: str = "file", shuffle_index: bool = False) -> list[Episode]:
    """Group rows by context: one encode serves every question about the same context. The
    weighting net's spans are the asked questions' (spans_of "asked") or every recorded question's
    of the context ("context"), whatever max_questions keeps (the first ones in `order`).
    `shuffle_index`: the chunks' "Document i:" indices are a permutation of 1..n drawn per context
    (seeded by its first row's id, so a resumed run builds the same episodes)."""
    episodes = []
    for ctx, rs in group_by_context(rows).items():
        asked = ordered_questions(rs, order)[:max_questions] if max_questions else rs
        indices = random.Random(f"shuffle_index:{rs[0]['id']}").sample(range(1, len(ctx) + 1), len(ctx)) \
            if shuffle_index else None
        spans: list[list[tuple[int, int]]] = [[] for _ in ctx]
        for r in (rs if spans_of == "context" else asked):
            for c, a, b in support_spans(r, span_mode):
                spans[c].append((a, b))
        episodes.append(Episode(
            id=asked[0]["id"], chunks=chunk_batch(tokenizer, list(ctx), supports=spans, indices=indices),
            questions=qa_batch(tokenizer, [question_prompt(r) for r in asked], [answer_target(r) for r in asked])))
    return episodes


def answer_loss_em(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CE over answer tokens and per-question exact match of the greedy answer (teacher-forced
    argmax over every answer token and the closing eos: equal to greedy decoding's answer)."""
    lg, lb = logits[:, :-1], labels[:, 1:]
    loss = F.cross_entropy(lg.flatten(0, 1).float(), lb.flatten(), ignore_index=-100)
    ok = (lg.argmax(-1) == lb) | (lb == -100)
    return loss, ok.all(-1).float()


def on_device(ep: Episode, dev: torch.device) -> Episode:
    if ep.questions["input_ids"].device == dev:
        return ep
    return Episode(ep.id, {k: v.to(dev) for k, v in ep.chunks.items()}, {k: v.to(dev) for k, v in ep.questions.items()})


def episode_forward(bundle, ep: Episode, train: bool, aux: bool = False, pos_weight: float = 1.0):
    """Encode, then answer. Returns (answer loss, per-question EM, aux BCE or None, inner losses)."""
    ep = on_device(ep, next(bundle.parameters()).device)
    with_net = bundle.inner.weighting == "net"
    enc = bundle.encode(ep.chunks, train=train, example_id=ep.id, return_weight_logits=train and aux and with_net)
    q = ep.questions
    with torch.set_grad_enabled(train):
        out = enc.forward(input_ids=q["input_ids"], attention_mask=None)  # right-padded: see inner.encode
        loss, em = answer_loss_em(out.logits, q["labels"])
    bce = support_bce(enc.weight_logits, ep.chunks, pos_weight) if enc.weight_logits is not None else None
    return loss, em, bce, enc.inner_losses


@torch.no_grad()
def evaluate_em(bundle, episodes: list[Episode], with_inner: bool = True) -> float:
    """Validation EM; `with_inner=False` answers with the LoRA init (no context at all): chance level
    proves the knowledge comes from the adapter, not the base."""
    bundle.eval()
    ems = []
    for ep in episodes:
        if with_inner:
            _, em, _, _ = episode_forward(bundle, ep, train=False)
        else:
            q = on_device(ep, next(bundle.parameters()).device).questions
            out = bundle.lm(input_ids=q["input_ids"], attention_mask=None)
            em = answer_loss_em(out.logits, q["labels"])[1]
        ems.append(em)
    bundle.train()
    return float(torch.cat(ems).mean()) if ems else 0.0


def support_bce(weight_logits: torch.Tensor, chunks: dict[str, torch.Tensor], pos_weight: float) -> torch.Tensor:
    """BCE of the weighting net's logits against the recorded supporting spans, over real tokens."""
    mask = (chunks["loss_mask"][:, 1:] * chunks["attention_mask"][:, 1:]).float()
    target = chunks["support_mask"][:, 1:].float()
    pw = torch.tensor(pos_weight, device=weight_logits.device)
    per_tok = F.binary_cross_entropy_with_logits(weight_logits.float(), target, reduction="none", pos_weight=pw)
    return (per_tok * mask).sum() / mask.sum().clamp_min(1.0)


def outer_loop(bundle, cfg, train_eps: list[Episode], val_eps: list[Episode], seed: int,
               log_fn: Callable[[dict, int], None] = lambda m, s: None, progress: bool = True,
               ckpt_dir=None, fingerprint: str = "", exposure=None) -> dict[str, float]:
    """Outer loop (cfg: MetaTrainConfig). Checkpoints in ckpt_dir; a rerun resumes exactly.
    `exposure` (perk.meta.exposure.Exposure) adds its LM loss, weighted by cfg.exposure_weight."""
    if not train_eps:
        raise ValueError(f"meta-train: no training episodes for task {cfg.task!r}")
    use_aux = cfg.aux_weight > 0 and bundle.inner.weighting == "net"
    model_params = [p for p in bundle.lm.parameters() if p.requires_grad]
    groups = [{"params": model_params, "lr": cfg.lr, "name": "model"},
              {"params": list(bundle.step_sizes.parameters()), "lr": cfg.lr_step_sizes, "name": "step_sizes"},
              {"params": list(bundle.weight_net.parameters()), "lr": cfg.lr_weight_net, "name": "weight_net"}]
    val = val_eps[:cfg.eval_examples]
    world = distributed.world_size()  # torchrun: batch_size episodes per rank, distinct across ranks
    bf16 = next(bundle.parameters()).device.type == "cuda"  # CUDA: bf16 autocast (paper setup)

    def step_fn(step: int) -> dict[str, float]:
        tot = {"loss": 0.0, "train_em": 0.0, "aux_bce": 0.0, "inner_loss_first": 0.0, "inner_loss_last": 0.0}
        for i in distributed.shard_indices(loop.batch_indices(seed, step, len(train_eps), cfg.batch_size * world)):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss, em, bce, inner = episode_forward(bundle, train_eps[i], train=True, aux=use_aux,
                                                       pos_weight=cfg.aux_pos_weight)
            obj = loss + (cfg.aux_weight * bce if bce is not None else 0.0)
            (obj / cfg.batch_size).backward()
            n = cfg.batch_size
            tot["loss"] += float(loss.detach()) / n
            tot["train_em"] += float(em.mean()) / n
            tot["aux_bce"] += (float(bce.detach()) if bce is not None else 0.0) / n
            tot["inner_loss_first"] += inner[0] / n
            tot["inner_loss_last"] += inner[-1] / n
        if exposure is not None and cfg.exposure_weight > 0:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                ex = exposure.loss(bundle.lm, step)
            (cfg.exposure_weight * ex).backward()
            tot["exposure_loss"] = float(ex.detach())
        lrs = bundle.step_sizes.log_lr.detach().exp()
        tot.update({"inner_lr_median": float(lrs.median()), "inner_lr_max": float(lrs.max())})
        return tot

    def eval_fn() -> dict[str, float]:
        return {"val_em": evaluate_em(bundle, val)}

    return loop.run({"bundle": bundle}, groups, cfg, step_fn, ckpt_dir, eval_fn=eval_fn if val else None,
                    log_fn=log_fn, after_step=bundle.step_sizes.project_, desc="meta-train", progress=progress,
                    fingerprint=fingerprint)
