"""Meta-train PERK on multi-key needle recall, tiny model from scratch, CPU.

Written so that `meta_train` can be lifted into perk/meta/trainer.py: it takes rows in the
project's schema (context chunks, question, answer_prefix, answer, supporting_facts,
supporting_chunks), groups them by context (all questions about one context are asked after one
encode) and returns the trained modules and a history.

  nice -n 5 .venv/bin/python experiments/meta_needle.py --name r1 --steps 600 > experiments/logs/r1.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from perk.config import InnerConfig, LoraConfig, ModelConfig  # noqa: E402
from perk.meta import LearnedStepSizes, chunk_batch, encode, token_losses  # noqa: E402
from perk.model import TokenWeightNet, add_lora, build_tiny_model, lora_parameters  # noqa: E402


# ------------------------------------------------------------------ episodes

@dataclass
class Episode:
    chunks: dict          # chunk_batch output (input_ids, attention_mask, loss_mask, support_mask)
    q_ids: torch.Tensor   # (Q, L) prompt + answer tokens, right-padded
    q_att: torch.Tensor
    q_labels: torch.Tensor  # -100 except answer tokens
    id: str


def _support_spans(chunk_text: str, fact: str, answer: str, mode: str) -> list[tuple[int, int]]:
    s = chunk_text.find(fact)
    if s < 0:
        return []
    if mode == "sentence":
        return [(s, s + len(fact))]
    a = fact.rfind(answer)  # "answer": only the answer inside the supporting fact
    return [(s + a, s + a + len(answer))] if a >= 0 else [(s, s + len(fact))]


def make_episodes(rows: list[dict], tok, span_mode: str = "answer", max_q: int = 0) -> list[Episode]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r["context"]), []).append(r)
    eps = []
    for ctx, rs in groups.items():
        rs = rs[:max_q] if max_q else rs
        spans = [[] for _ in ctx]
        for r in rs:
            for fact, ci in zip(r["supporting_facts"], r["supporting_chunks"]):
                spans[ci] += _support_spans(ctx[ci], fact, r["answer"], span_mode)
        chunks = chunk_batch(tok, list(ctx), supports=spans)
        seqs, labs = [], []
        for r in rs:
            p = tok(r["question"] + " " + r["answer_prefix"], add_special_tokens=False)["input_ids"]
            a = tok(" " + r["answer"], add_special_tokens=False)["input_ids"]
            seqs.append(p + a)
            labs.append([-100] * len(p) + a)
        L = max(map(len, seqs))
        pad = tok.pad_token_id
        q_ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
        q_att = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
        q_lab = torch.tensor([s + [-100] * (L - len(s)) for s in labs])
        eps.append(Episode(chunks, q_ids, q_att, q_lab, rs[0]["id"]))
    return eps


def answer_loss_em(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CE over answer tokens, and per-question exact match (all answer tokens greedy-correct)."""
    lg, lb = logits[:, :-1], labels[:, 1:]
    loss = F.cross_entropy(lg.flatten(0, 1).float(), lb.flatten(), ignore_index=-100)
    ok = (lg.argmax(-1) == lb) | (lb == -100)
    return loss, ok.all(-1).float()


# ------------------------------------------------------------------ model bundle

class Perk(torch.nn.Module):
    """Base LM with LoRA (init = the memory's starting point), step sizes and the weighting net."""

    def __init__(self, model_cfg, lora_cfg, inner_cfg, vocab, pad_id, lr_init, frozen_input_std=0.0):
        super().__init__()
        base = build_tiny_model(model_cfg, vocab, pad_id)
        if frozen_input_std > 0:
            # Untie: the input embeddings become a fixed random code (every word, seen in training
            # or not, is drawn from the same distribution); the output head is trained.
            base.config.tie_word_embeddings = False
            emb = base.get_input_embeddings()
            base.lm_head.weight = torch.nn.Parameter(emb.weight.detach().clone())
            emb.weight = torch.nn.Parameter(torch.randn_like(emb.weight) * frozen_input_std, requires_grad=False)
        self.lm = add_lora(base, lora_cfg)
        n = len(lora_parameters(self.lm))
        self.step_sizes = LearnedStepSizes(n, inner_cfg.steps, lr_init, inner_cfg.lr_min, inner_cfg.lr_max)
        self.weight_net = TokenWeightNet(model_cfg.n_embd)
        self.pos_weight = 1.0


def episode_forward(perk: Perk, ep: Episode, icfg: InnerConfig, weighting: str, train: bool, engine="torch_func"):
    """Encode the episode's context and answer its questions. Returns (loss, em, aux_bce)."""
    ch = dict(ep.chunks)
    net = None
    if weighting == "oracle":  # the supporting spans as hard weights: an upper bound, not deployable
        ch["loss_mask"] = ch["loss_mask"] * ch["support_mask"]
    elif weighting == "net":
        net = perk.weight_net
    enc = encode(perk.lm, ch, icfg.model_copy(update={"weighting": "net" if net else "none"}),
                 perk.step_sizes, net, engine=engine, train=train, example_id=ep.id,
                 return_weight_logits=train and net is not None)
    with torch.set_grad_enabled(train):
        out = enc.forward(input_ids=ep.q_ids, attention_mask=ep.q_att)
        loss, em = answer_loss_em(out.logits, ep.q_labels)
    aux = None
    if enc.weight_logits is not None:
        tm = (ch["loss_mask"][:, 1:] * ch["attention_mask"][:, 1:]).float()
        y = ch["support_mask"][:, 1:].float()
        pw = torch.tensor(perk.pos_weight, dtype=enc.weight_logits.dtype)
        bce = F.binary_cross_entropy_with_logits(enc.weight_logits, y, reduction="none", pos_weight=pw)
        aux = (bce * tm).sum() / tm.sum()
    return loss, em, aux


@torch.no_grad()
def no_inner_em(perk: Perk, eps: list[Episode]) -> float:
    ems = []
    for ep in eps:
        out = perk.lm(input_ids=ep.q_ids, attention_mask=ep.q_att)
        ems.append(answer_loss_em(out.logits, ep.q_labels)[1])
    return float(torch.cat(ems).mean())


def evaluate(perk: Perk, eps: list[Episode], icfg: InnerConfig, weighting: str) -> tuple[float, float]:
    ems, losses = [], []
    for ep in eps:
        loss, em, _ = episode_forward(perk, ep, icfg, weighting, train=False)
        ems.append(em)
        losses.append(float(loss))
    return float(torch.cat(ems).mean()), sum(losses) / len(losses)


# ------------------------------------------------------------------ training

class Exposure:
    """Needle-format sentences with train keys and values from *every* split, as plain LM text.

    A model trained from scratch has never seen held-out value words, and softmax training pushes
    unseen tokens down; a pretrained LM knows every word. This stands in for that knowledge: the
    key-value pairs are random, so nothing about any evaluation context is learned.
    """

    def __init__(self, tok, keys, values, seed=0, rows=2, per_row=5):
        import random
        self.tok, self.keys, self.values = tok, list(keys), list(values)
        self.rng, self.rows, self.per_row = random.Random(seed), rows, per_row

    def batch(self):
        texts = [" ".join(f"One of the special magic words for {self.rng.choice(self.keys)} is "
                          f"{self.rng.choice(self.values)}." for _ in range(self.per_row)) for _ in range(self.rows)]
        enc = self.tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def loss(self, lm):
        ids, att = self.batch()
        out = lm(input_ids=ids, attention_mask=att)
        tm = att[:, 1:].float()
        return (token_losses(out.logits, ids) * tm).sum() / tm.sum()



def pretrain_lm(perk: Perk, eps: list[Episode], steps: int, lr: float, net_lr: float, log, expo=None) -> None:
    """Plain LM pretraining of the base (LoRA at init) on the haystack chunks; at the same time the
    weighting net learns (BCE) to pick out the supporting spans from the base's hidden states, so
    meta-training starts with a net that already weights the facts."""
    if steps <= 0:
        return
    groups = [{"params": [p for n, p in perk.lm.named_parameters() if "lora_" not in n and p.requires_grad], "lr": lr}]
    if net_lr > 0:
        groups.append({"params": list(perk.weight_net.parameters()), "lr": net_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    t0 = time.time()
    for s in range(steps):
        ep = eps[s % len(eps)]
        ids, att = ep.chunks["input_ids"], ep.chunks["attention_mask"]
        out = perk.lm(input_ids=ids, attention_mask=att, output_hidden_states=net_lr > 0)
        tm = (ep.chunks["loss_mask"][:, 1:] * att[:, 1:]).float()
        loss = (token_losses(out.logits, ids) * tm).sum() / tm.sum()
        aux = torch.zeros(())
        if net_lr > 0:
            _, logits = perk.weight_net(out.hidden_states[-1][:, :-1])
            y = ep.chunks["support_mask"][:, 1:].float()
            bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none",
                                                     pos_weight=torch.tensor(perk.pos_weight))
            aux = (bce * tm).sum() / tm.sum()
        ex = expo.loss(perk.lm) if expo is not None else torch.zeros(())
        opt.zero_grad()
        (loss + aux + ex).backward()
        torch.nn.utils.clip_grad_norm_(perk.lm.parameters(), 1.0)
        opt.step()
        if s % 50 == 0:
            log(f"pretrain {s} lm_loss {loss.item():.3f} aux {aux.item():.4f} expo {ex.item():.3f} t {time.time() - t0:.0f}s")


class _WithLocal:
    def __init__(self, cfg, window, local):
        self._cfg, self.sliding_window, self.local_layers = cfg, window, local

    def __getattr__(self, k):
        return getattr(self._cfg, k)


def meta_train(args, train_eps, val_eps, vocab, pad_id, log, expo=None):
    torch.manual_seed(args.seed)
    mcfg = ModelConfig(arch=args.arch, n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head)
    if args.local_layers:  # until ModelConfig has these fields, pass them as plain attributes
        mcfg = _WithLocal(mcfg, args.sliding_window, args.local_layers)
    lcfg = LoraConfig(rank=args.rank, alpha=args.alpha, rslora=args.rslora)
    icfg = InnerConfig(steps=args.inner_steps, lr_init=args.lr_init, lr_min=math.exp(-9), lr_max=math.exp(-1),
                       differentiate_last=args.diff_last, optimizer=args.inner_opt, first_order=args.first_order)
    perk = Perk(mcfg, lcfg, icfg, vocab, pad_id, args.lr_init, args.frozen_input_std)
    perk.pos_weight = args.pos_weight
    if args.freeze_emb_init:  # random embeddings never trained: held-out keys look like trained ones
        perk.lm.get_input_embeddings().weight.requires_grad_(False)
    log(f"params: {sum(p.numel() for p in perk.parameters())}")
    t_start = time.time()
    pretrain_lm(perk, train_eps, args.pretrain_steps, args.pretrain_lr, args.pretrain_net_lr, log,
                getattr(args, "expo_pretrain", None) or expo)

    if args.freeze_emb:
        # The (tied) word embeddings keep what pretraining+exposure gave every word: otherwise the
        # answer loss, which only ever has train-split values as targets, pushes held-out values down.
        perk.lm.get_input_embeddings().weight.requires_grad_(False)
    groups = [
        {"params": [p for p in perk.lm.parameters() if p.requires_grad], "lr": args.lr},
        {"params": list(perk.step_sizes.parameters()), "lr": args.lr_lr},
        {"params": list(perk.weight_net.parameters()), "lr": args.lr_net},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.0, betas=(0.9, 0.99))
    warm = args.warmup

    def sched(s):
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, args.steps - warm)))) * 0.9 + 0.1
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, sched)
    history = []
    run_loss = run_em = run_aux = None
    step = 0
    for step in range(args.steps):
        perk.train()
        opt.zero_grad()
        weighting = args.weighting
        if args.oracle_steps and step < args.oracle_steps:
            weighting = "oracle"
        tot = em_sum = aux_sum = 0.0
        for b in range(args.batch):
            ep = train_eps[(step * args.batch + b) % len(train_eps)]
            loss, em, aux = episode_forward(perk, ep, icfg, weighting, train=True)
            obj = loss + (args.aux_w * aux if aux is not None else 0.0)
            (obj / args.batch).backward()
            tot += float(loss.detach()) / args.batch
            em_sum += float(em.mean()) / args.batch
            aux_sum += (float(aux) if aux is not None else 0.0) / args.batch
        # Clip per group: the step-size grads are orders of magnitude larger than the model's and
        # would otherwise shrink every update.
        if expo is not None and args.expose_meta_w > 0:
            (args.expose_meta_w * expo.loss(perk.lm)).backward()
        gn = torch.nn.utils.clip_grad_norm_(perk.lm.parameters(), args.clip)
        torch.nn.utils.clip_grad_norm_(perk.step_sizes.parameters(), args.clip)
        torch.nn.utils.clip_grad_norm_(perk.weight_net.parameters(), args.clip)
        opt.step()
        lr_sched.step()
        perk.step_sizes.project_()
        f = 0.95 if run_loss is not None else 0.0
        run_loss = f * (run_loss or 0) + (1 - f) * tot
        run_em = f * (run_em or 0) + (1 - f) * em_sum
        run_aux = f * (run_aux or 0) + (1 - f) * aux_sum
        el = time.time() - t_start
        if step % args.log_every == 0:
            lrs = perk.step_sizes.log_lr.detach().exp()
            log(f"step {step} loss {run_loss:.3f} em {run_em:.2f} aux {run_aux:.4f} gn {float(gn):.2f} "
                f"inner_lr med {lrs.median():.2e} t {el:.0f}s cpu {time.process_time():.0f}s")
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1 or el > args.max_minutes * 60:
            perk.eval()
            em, vl = evaluate(perk, val_eps[args.length][:args.n_eval], icfg, args.weighting)
            rec = {"step": step + 1, "val_em": em, "val_loss": vl, "t": el}
            if "seen" in val_eps:
                rec["seen_em"], rec["seen_loss"] = evaluate(perk, val_eps["seen"][:args.n_eval], icfg, args.weighting)
            history.append(rec)
            log("EVAL " + " ".join(f"{k} {v:.3f}" for k, v in rec.items()))
        if el > args.max_minutes * 60:
            log("time budget reached")
            break
    train_time = time.time() - t_start
    return perk, icfg, history, train_time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--eval_lengths", default="")
    ap.add_argument("--num_keys", type=int, default=4)
    ap.add_argument("--n_train", type=int, default=2000)
    ap.add_argument("--n_val", type=int, default=50)
    ap.add_argument("--n_eval", type=int, default=25)
    ap.add_argument("--arch", default="qwen2")
    ap.add_argument("--n_layer", type=int, default=2)
    ap.add_argument("--n_embd", type=int, default=128)
    ap.add_argument("--n_head", type=int, default=4)
    ap.add_argument("--local_layers", type=int, default=0)
    ap.add_argument("--sliding_window", type=int, default=3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--rslora", action="store_true")
    ap.add_argument("--inner_opt", default="adam")
    ap.add_argument("--inner_steps", type=int, default=4)
    ap.add_argument("--diff_last", type=int, default=4)
    ap.add_argument("--first_order", action="store_true")
    ap.add_argument("--lr_init", type=float, default=1e-2)
    ap.add_argument("--weighting", default="net", choices=["net", "oracle", "none"])
    ap.add_argument("--span", default="answer", choices=["answer", "sentence"])
    ap.add_argument("--aux_w", type=float, default=1.0)
    ap.add_argument("--oracle_steps", type=int, default=0)
    ap.add_argument("--pos_weight", type=float, default=1.0)
    ap.add_argument("--data", default="standin", choices=["standin", "real"])
    ap.add_argument("--one_key", action="store_true", help="real data: only the stored asked key per context")
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr_lr", type=float, default=1e-2)
    ap.add_argument("--lr_net", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--pretrain_steps", type=int, default=0)
    ap.add_argument("--pretrain_lr", type=float, default=1e-3)
    ap.add_argument("--pretrain_net_lr", type=float, default=0.0)
    ap.add_argument("--expose", action="store_true", help="LM exposure to all value words (see Exposure)")
    ap.add_argument("--expose_meta_w", type=float, default=0.0)
    ap.add_argument("--expose_all_keys", action="store_true", help="exposure text uses keys of every split")
    ap.add_argument("--expose_all_keys_pretrain", action="store_true",
                    help="keys of every split in pretraining exposure only; meta-training exposure uses train keys")
    ap.add_argument("--frozen_input_std", type=float, default=0.0,
                    help="untie and freeze the input embeddings at N(0, std) (no word is ever learned)")
    ap.add_argument("--freeze_emb", action="store_true", help="freeze the tied embeddings during meta-training")
    ap.add_argument("--freeze_emb_init", action="store_true", help="never train the (random) embeddings")
    ap.add_argument("--eval_every", type=int, default=100)
    ap.add_argument("--log_every", type=int, default=10)
    ap.add_argument("--max_minutes", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs("experiments/logs", exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    log(json.dumps(vars(args)))
    evl = [int(x) for x in args.eval_lengths.split(",") if x]
    if args.data == "real":
        from real_needle import build
        tok, train_rows, val_rows = build(args.n_train, args.n_val, args.length, args.num_keys, val_lengths=evl,
                                          all_keys=not args.one_key)
    else:
        from standin_needle import build
        tok, train_rows, val_rows = build(args.n_train, args.n_val, args.length, args.num_keys, val_lengths=evl)
    if args.data == "real":
        from real_needle import rows as real_rows
        val_rows["seen"] = real_rows(tok, "train", args.n_val, args.length, args.num_keys, seed=args.seed + 777)
        for L in evl:  # fresh contexts with train-split keys/values at longer lengths
            val_rows[f"seen{L}"] = real_rows(tok, "train", args.n_val, L, args.num_keys, seed=args.seed + 777)
    expo = None
    if args.expose:
        from perk.data.lexicon import pool
        keys = pool("key") if args.expose_all_keys else pool("key", "train")
        expo = Exposure(tok, keys, pool("value"), seed=args.seed)
        if args.expose_all_keys_pretrain:
            args.expo_pretrain = Exposure(tok, pool("key"), pool("value"), seed=args.seed + 1)
    train_eps = make_episodes(train_rows, tok, args.span)
    val_eps = {L: make_episodes(r, tok, args.span) for L, r in val_rows.items()}
    log(f"episodes: train {len(train_eps)} chunks/ep {train_eps[0].chunks['input_ids'].shape}")
    perk, icfg, hist, train_time = meta_train(args, train_eps, val_eps, len(tok), tok.pad_token_id, log, expo)
    perk.eval()
    torch.save({"state": perk.state_dict(), "args": {k: v for k, v in vars(args).items() if k != "expo_pretrain"}}, f"experiments/logs/{args.name}.pt")
    res = {"name": args.name, "train_time_s": round(train_time, 1), "history": hist,
           "no_inner_em": no_inner_em(perk, val_eps[args.length][:args.n_val])}
    res["cpu_s"] = round(time.process_time(), 1)
    for L, eps in val_eps.items():
        em, _ = evaluate(perk, eps, icfg, args.weighting)
        res[f"em@{L}"] = em
        if args.weighting == "net":
            res[f"oracle_em@{L}"] = evaluate(perk, eps, icfg, "oracle")[0]
    log("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
