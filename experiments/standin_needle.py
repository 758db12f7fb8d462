"""Stand-in for perk/data/needle.py (multi-key needle) until the project generator lands.

Same row format as perk.data.schema (context = list of chunk strings, question, answer_prefix,
answer, supporting_facts, supporting_chunks). Filler comes from a small grammar over a lexicon of
pseudo-words; needles and filler share the vocabulary. One row per key, so a context with 4 needles
yields 4 rows (the trainer groups rows by context and asks all of them per encode).
"""
from __future__ import annotations

import random

NEEDLE = "One of the special magic words for {key} is {value}."
QUESTION = "What is the special magic word for {key} mentioned in the provided text?"
PREFIX = "The special magic word for {key} is"


def make_lexicon(n: int = 1500, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    words = set()
    while len(words) < n:
        k = rng.choice([2, 2, 3])
        words.add("".join(rng.choice(cons) + rng.choice(vows) for _ in range(k)))
    return sorted(words)


class Grammar:
    """Tiny English-like grammar: determiners/function words are real, content words from the lexicon."""

    def __init__(self, lexicon: list[str], seed: int = 0):
        rng = random.Random(seed)
        words = lexicon[:]
        rng.shuffle(words)
        q = len(words) // 4
        self.nouns, self.verbs, self.adjs, self.keys_values = words[:q], words[q:2 * q], words[2 * q:3 * q], words[3 * q:]
        # keys/values are also used as filler nouns, so needles share the filler's vocabulary
        self.filler_nouns = self.nouns + self.keys_values

    def sentence(self, rng: random.Random) -> str:
        n = lambda: rng.choice(self.filler_nouns)
        a = lambda: rng.choice(self.adjs)
        v = lambda: rng.choice(self.verbs)
        t = rng.randrange(4)
        if t == 0:
            s = f"The {a()} {n()} {v()} the {n()}."
        elif t == 1:
            s = f"A {n()} {v()} near the {a()} {n()} and the {n()}."
        elif t == 2:
            s = f"Every {n()} is {a()} when the {n()} {v()}."
        else:
            s = f"The {n()} of the {n()} {v()} a {a()} {n()}."
        return s


def make_contexts(grammar: Grammar, count_tokens, n: int, length: int, num_keys: int, keys: list[str],
                  values: list[str], chunk_tokens: int, seed: int, split: str) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for ci in range(n):
        ks = rng.sample(keys, num_keys)
        vs = rng.sample(values, num_keys)
        needles = [NEEDLE.format(key=k, value=v) for k, v in zip(ks, vs)]
        # filler sentences until ~length tokens including needles
        sents, total = [], sum(count_tokens(" " + s) for s in needles)
        while total < length:
            s = grammar.sentence(rng)
            sents.append(s)
            total += count_tokens(" " + s)
        pos = sorted(rng.sample(range(len(sents) + 1), num_keys))
        for off, (p, nd) in enumerate(zip(pos, needles)):
            sents.insert(p + off, nd)
        # pack whole sentences into chunks of <= chunk_tokens
        chunks, cur, cur_len, where = [], [], 0, {}
        for s in sents:
            L = count_tokens(" " + s)
            if cur and cur_len + L > chunk_tokens:
                chunks.append(" ".join(cur)); cur, cur_len = [], 0
            if s in needles:
                where[s] = len(chunks)
            cur.append(s); cur_len += L
        if cur:
            chunks.append(" ".join(cur))
        for k, v, nd in zip(ks, vs, needles):
            rows.append(dict(id=f"{split}-{ci}-{k}", context=chunks, question=QUESTION.format(key=k),
                             answer_prefix=PREFIX.format(key=k), answer=v, supporting_facts=[nd],
                             supporting_chunks=[where[nd]], split=split))
    return rows


def build(n_train: int, n_val: int, length: int, num_keys: int = 4, chunk_tokens: int = 64,
          tok_dir: str = "/tmp/perk_standin_tok", seed: int = 0, val_lengths=()):
    """Returns tokenizer, train rows, {length: val rows}."""
    import os
    from perk.tokenizer import load_tokenizer, train_tokenizer, counter

    lex = make_lexicon(1500, seed)
    g = Grammar(lex, seed)
    if os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        tok = load_tokenizer(tok_dir)
    else:
        rng = random.Random(seed + 1)
        texts = [" ".join(g.sentence(rng) for _ in range(20)) for _ in range(500)]
        texts += [NEEDLE.format(key=rng.choice(lex), value=rng.choice(lex)) + " " + QUESTION.format(key="x")
                  + " " + PREFIX.format(key="y") for _ in range(300)]
        tok = train_tokenizer(texts, 4096, tok_dir, must_include=lex)
    count = counter(tok)
    kv = g.keys_values
    half = len(kv) // 2
    train_keys, test_keys, vals = kv[:half // 2], kv[half // 2:half], kv[half:]
    train = make_contexts(g, count, n_train, length, num_keys, train_keys, vals, chunk_tokens, seed + 10, "train")
    val = {L: make_contexts(g, count, n_val, L, num_keys, test_keys, vals, chunk_tokens, seed + 20 + L, "val")
           for L in sorted({length, *val_lengths})}
    return tok, train, val
