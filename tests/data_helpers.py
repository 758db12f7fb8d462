"""Independent checks shared by the data tests (they never import the generators' internals)."""
from __future__ import annotations

import re


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def context_tokens(tokenizer, chunks) -> int:
    return sum(n_tokens(tokenizer, c) for c in chunks)


def fact_offset(tokenizer, chunks, fact: str) -> tuple[int, int]:
    """(chunk index, token offset of the fact's start in the whole context), by tokenizing."""
    hits = [i for i, c in enumerate(chunks) if fact in c]
    assert hits, f"fact not found whole in any chunk: {fact!r}"
    i = hits[0]
    before = context_tokens(tokenizer, chunks[:i])
    head = chunks[i][:chunks[i].index(fact)].rstrip()
    return i, before + (n_tokens(tokenizer, head) if head else 0)


def sentences(chunks) -> list[str]:
    return re.split(r"(?<=\.)\s+", " ".join(chunks).strip())
