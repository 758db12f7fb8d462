"""Load multi-key needle rows from the project's generator (perk/data/needle.py) and tokenizer.

`all_keys=True` expands each context into one row per needle (all 4 keys asked after one
encode) using the in-memory `extra["facts"]` that the generator keeps; the stored Parquet rows
hold only the asked needle, so this needs the generator to emit (or record) all facts.
"""
from __future__ import annotations

import os
import re

from perk.config import NeedleSpec
from perk.data import needle
from perk.data.haystack import TokenCounter

_FACT = re.compile(r"One of the special magic words for (\S+) is (\S+)\.")


def tokenizer(tok_dir: str = "/tmp/perk_real_tok", vocab: int = 4096, seed: int = 0):
    from perk.data.lexicon import all_words
    from perk.data.synth import sample_corpus
    from perk.tokenizer import load_tokenizer, train_tokenizer

    if os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        return load_tokenizer(tok_dir)
    train_tokenizer(sample_corpus(4000, seed=seed), vocab, tok_dir, must_include=all_words())
    return load_tokenizer(tok_dir)


def rows(tok, split: str, n: int, length: int, num_keys: int = 4, chunk_tokens: int = 64, seed: int = 0,
         all_keys: bool = True) -> list[dict]:
    spec = NeedleSpec(subtasks=["multikey"], num_keys=num_keys, chunk_tokens=chunk_tokens,
                      train_lengths=[max(length, chunk_tokens)], eval_lengths=[8 * length])
    exs = needle.generate(spec, split, n, length, None, seed, TokenCounter(tok), subtask="multikey")
    out = []
    for e in exs:
        r = e.row()
        out.append(r)
        if not all_keys:
            continue
        for fact in e.extra["facts"]:
            if fact in r["supporting_facts"]:
                continue
            key, value = _FACT.fullmatch(fact).groups()
            ci = next(i for i, c in enumerate(r["context"]) if fact in c)
            out.append({**r, "id": r["id"] + f"/{key}", "question": needle.QUESTION.format(key=key),
                        "answer_prefix": needle.PREFIX.format(key=key), "answer": value,
                        "supporting_facts": [fact], "supporting_chunks": [ci]})
    return out


def build(n_train: int, n_val: int, length: int, num_keys: int = 4, chunk_tokens: int = 64, seed: int = 0,
          val_lengths=(), all_keys: bool = True):
    tok = tokenizer(seed=seed)
    train = rows(tok, "train", n_train, length, num_keys, chunk_tokens, seed, all_keys)
    val = {L: rows(tok, "val", n_val, L, num_keys, chunk_tokens, seed, all_keys=True)
           for L in sorted({length, *val_lengths})}
    return tok, train, val
