"""How a row becomes model input: the question prompt (PERK: no context) or context + question
(prompt-based baseline), and the answer target the loss is taken on."""
from __future__ import annotations

import torch


def question_prompt(row: dict) -> str:
    """RULER-style: the answer follows the answer prefix; otherwise an 'Answer:' cue."""
    q, prefix = row["question"], row.get("answer_prefix") or ""
    return f"{q} {prefix}" if prefix else f"{q}\nAnswer:"


def group_by_context(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows that share a context, in file order (a synthesized context's one-question row first)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r["context"]), []).append(r)
    return groups


def ordered_questions(rs: list[dict], order: str = "file") -> list[dict]:
    """One context's rows in the order questions are taken: as in the file (its first row is the
    one-question row: the gold document's), or "nearest": by how far each question's supporting
    chunk lies from the first row's (a stable sort: the first row stays first), so the first k are
    the gold document and its k-1 nearest neighbours (the position protocol's trained band)."""
    if order == "file":
        return rs
    gold = rs[0]["supporting_chunks"][0]
    return sorted(rs, key=lambda r: abs(r["supporting_chunks"][0] - gold))


def first_questions(rows: list[dict], k: int, order: str = "file") -> list[dict]:
    """The first `k` rows of each context (0: all rows) in `order`, contexts in file order."""
    if not k:
        return rows
    return [r for rs in group_by_context(rows).values() for r in ordered_questions(rs, order)[:k]]


def context_prompt(row: dict) -> str:
    return "\n".join(row["context"]) + "\n" + question_prompt(row)


def answer_target(row: dict) -> str:
    return " " + row["answer"]


def qa_batch(tokenizer, prompts: list[str], targets: list[str], device="cpu") -> dict[str, torch.Tensor]:
    """Right-padded `prompt + target + eos`; labels are -100 everywhere but the target and eos."""
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id
    rows, labels = [], []
    for p, t in zip(prompts, targets):
        pi = tokenizer(p, add_special_tokens=False)["input_ids"]
        ti = tokenizer(t, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        rows.append(pi + ti)
        labels.append([-100] * len(pi) + ti)
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    lab = torch.full((len(rows), T), -100, dtype=torch.long)
    att = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        ids[i, :len(r)] = torch.tensor(r)
        lab[i, :len(l)] = torch.tensor(l)
        att[i, :len(r)] = 1
    return {"input_ids": ids.to(device), "attention_mask": att.to(device), "labels": lab.to(device)}


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE over target positions."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


@torch.no_grad()
def greedy_answer(model, tokenizer, prompt: str | list[int], max_new_tokens: int = 16, device="cpu",
                  past_key_values=None) -> str:
    """Greedy decoding until eos; returns the decoded new text, stripped. `prompt` may be given as
    token ids; `past_key_values` holds the KV of a prefix of them (it is extended in place).
    The KV cache is asked for explicitly: the tiny models' configs say use_cache=False (training
    never wants it), and generate() would then recompute the whole prompt for every new token."""
    ids = prompt if isinstance(prompt, list) else tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ids], dtype=torch.long, device=device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, use_cache=True, past_key_values=past_key_values)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


class ContextPrefix:
    """The KV cache of the last context's tokens, so sibling questions of one context (the
    capacity curve asks every key) prefill it once. A copy is handed to each question (decoding
    extends the cache in place). Exact: a question reuses the cache only if its prompt's tokens
    start with the cached ones; the context's last token is left out of the cache because it may
    merge with the text that follows."""

    def __init__(self, model, device="cpu"):
        self.model, self.device = model, device
        self.key, self.ids, self.kv = None, [], None

    @torch.no_grad()
    def __call__(self, context: list[str], context_ids: list[int], prompt_ids: list[int]):
        import copy

        key = tuple(context)
        if key != self.key:
            n = 0
            while n < min(len(context_ids), len(prompt_ids)) and context_ids[n] == prompt_ids[n]:
                n += 1
            self.key, self.ids = key, prompt_ids[:max(n - 1, 0)]
            self.kv = (self.model(torch.tensor([self.ids], device=self.device), use_cache=True).past_key_values
                       if self.ids else None)
        if self.kv is None or prompt_ids[:len(self.ids)] != self.ids:
            return None
        return copy.deepcopy(self.kv)
