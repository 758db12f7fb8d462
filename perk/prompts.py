"""How a row becomes model input: the question prompt (PERK: no context) or context + question
(prompt-based baseline), and the answer target the loss is taken on."""
from __future__ import annotations

import torch


def question_prompt(row: dict) -> str:
    """RULER-style: the answer follows the answer prefix; otherwise an 'Answer:' cue."""
    q, prefix = row["question"], row.get("answer_prefix") or ""
    return f"{q} {prefix}" if prefix else f"{q}\nAnswer:"


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
def greedy_answer(model, tokenizer, prompt: str, max_new_tokens: int = 16, device="cpu") -> str:
    """Greedy decoding until eos; returns the decoded new text, stripped."""
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
