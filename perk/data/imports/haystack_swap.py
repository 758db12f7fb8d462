"""Train-split haystack swap for RULER: needles moved into prose the base has not memorised.

Every RULER record's haystack is the first N words of one essay text (../shared/benchmarks/
README.md), so the train records (423-1024 GPT-2 tokens) all share one prefix. A base pretrained
on them memorises it, and the weighting net learns to pass over *memorised* text; at 2048/4096
most of the haystack is essay text it never saw, and the net weights a quarter of it
(experiments/IMPORTS.md, run E diagnostic): the needle's gradient drowns. Swapping the haystack
of a fraction of the train records for other prose (the BABILong train file's book text, bAbI
facts removed) gives the net unmemorised negatives. Needles, question and answer are untouched;
the val and test splits are never swapped.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..haystack import TokenCounter
from ..io import DataError
from .babilong import FACT
from .common import read_records, units


@dataclass
class ProsePool:
    sentences: list[str]
    counts: list[int]  # tokens of " " + sentence
    source: str


def prose_pool(path: str, counter: TokenCounter, max_sentences: int = 40_000) -> ProsePool:
    """Sentences of a BABILong-format file's `input` texts (or any records with a text `input`),
    in file order, bAbI fact sentences dropped."""
    sents: list[str] = []
    for recno, rec in read_records(path):
        text = rec.get("input")
        if not isinstance(text, str):
            raise DataError(f"{path}: record {recno}: haystack source records need a text field 'input'")
        text = FACT.sub(" ", text)
        sents += [" ".join(text[a:b].split()) for a, b in units(text, [])]
        if len(sents) >= max_sentences:
            break
    sents = [s for s in sents if len(s.split()) >= 3][:max_sentences]
    if len(sents) < 100:
        raise DataError(f"{path}: only {len(sents)} usable sentences for a haystack swap, expected >= 100")
    return ProsePool(sents, counter.many([" " + s for s in sents]), str(path))


def swap(parsed: dict, pool: ProsePool, rng: random.Random, counter: TokenCounter,
         context_tokens: int | None = None) -> dict:
    """`parsed` (ruler.parse) with its haystack replaced by a contiguous run of pool sentences of
    about the same token count (or about `context_tokens` in all: a longer validation record);
    each needle keeps its relative depth."""
    ctx, keep = parsed["context"], parsed["keep"]
    needle_tokens = sum(counter.many([" " + ctx[a:b] for a, b in keep]))
    budget = max(1, (context_tokens or counter(ctx)) - needle_tokens)
    start = rng.randrange(len(pool.sentences))
    hay, n = [], 0
    while n < budget:
        i = (start + len(hay)) % len(pool.sentences)
        hay.append(pool.sentences[i])
        n += pool.counts[i]
    # needle k goes after the same fraction of haystack sentences as in the source
    slots = [round(len(hay) * a / max(1, len(ctx))) for a, _ in keep]
    parts: list[str] = []
    new_keep: list[tuple[int, int]] = []
    pos = 0
    order = sorted(range(len(keep)), key=lambda k: (slots[k], k))
    placed = {}
    j = 0
    for s_idx in range(len(hay) + 1):
        while j < len(order) and slots[order[j]] == s_idx:
            k = order[j]
            a, b = keep[k]
            start_k = pos + (1 if parts else 0)
            placed[k] = (start_k, start_k + b - a)
            parts.append(ctx[a:b])
            pos = start_k + b - a
            j += 1
        if s_idx < len(hay):
            start_s = pos + (1 if parts else 0)
            parts.append(hay[s_idx])
            pos = start_s + len(hay[s_idx])
    new_keep = [placed[k] for k in range(len(keep))]
    text = " ".join(parts)
    answer_at = []
    for s, e in parsed["answer_at"]:
        k = next(k for k in parsed["support"] if keep[k][0] <= s and e <= keep[k][1])
        shift = new_keep[k][0] - keep[k][0]
        answer_at.append((s + shift, e + shift))
    out = dict(parsed, context=text, keep=new_keep, answer_at=answer_at)
    if "needles" in parsed:  # (key, value, value span) per kept needle, in keep's order
        out["needles"] = [(k, v, (a + new_keep[i][0] - keep[i][0], b + new_keep[i][0] - keep[i][0]))
                          for i, (k, v, (a, b)) in enumerate(parsed["needles"])]
    for k, (a, b) in enumerate(new_keep):  # the needles must read as before, offsets and all
        assert text[a:b] == ctx[keep[k][0]:keep[k][1]]
    return out
