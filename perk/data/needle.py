"""RULER-style needle-in-a-haystack: single, multikey, multivalue, multiquery and passkey.

The asked needle sits at the requested depth (the first asked one, in multiquery/multivalue);
distractor needles go to random depths. The wording is RULER's, with words as values.
"""
from __future__ import annotations

from dataclasses import replace

from ..config import NeedleSpec
from . import lexicon
from .base import fill, run
from .schema import span
from .haystack import FillerBank, assemble, as_counter

TASK = "needle"
NEEDLE = "One of the special magic words for {key} is {value}."
QUESTION = "What is the special magic word for {key} mentioned in the provided text?"
PREFIX = "The special magic word for {key} is"
QUESTION_PLURAL = "What are all the special magic words for {key} mentioned in the provided text?"
PREFIX_PLURAL = "The special magic words for {key} are"
PASSKEY = "The pass key is {value}. Remember it. {value} is the pass key."
PASSKEY_QUESTION = "What is the pass key?"
PASSKEY_PREFIX = "The pass key is"
LIST_SEPARATOR = ", "  # joins a list answer's values (multivalue, multiquery); scoring splits on it


def generate(spec: NeedleSpec, split: str, n: int, target_tokens: int, depth: float | None, seed: int,
             count_tokens, subtask: str | None = None, start: int = 0, key_split: str | None = None):
    """`key_split` draws the keys from another pool than `split`'s (the capacity curve: "heldout")."""
    counter = as_counter(count_tokens)
    key_split = key_split or split
    bank = FillerBank.get(seed, split, counter)

    def build(sub, rng, counter, s):
        pos = (lambda: rng.random()) if depth is None else (lambda: float(depth))
        if sub == "passkey":
            value = str(rng.randrange(10000, 100000))
            text, where = fill(PASSKEY, value=value)  # the value is stated twice: both are the answer's
            facts, value_at, keys, values, asked = [text], [where["value"]], [None], [value], [0]
            question, prefix = PASSKEY_QUESTION, PASSKEY_PREFIX
        else:
            if sub == "single":
                n_keys, asked = 1, [0]
            elif sub == "multikey":
                n_keys, asked = spec.num_keys, [0]
            elif sub == "multiquery":
                n_keys = max(spec.num_keys, spec.num_queries)
                asked = list(range(spec.num_queries))
            elif sub == "multivalue":
                n_keys, asked = spec.num_values, list(range(spec.num_values))
            else:
                raise ValueError(f"unknown needle subtask {sub!r}")
            if sub == "multivalue":
                keys = lexicon.sample(rng, "key", key_split, 1) * n_keys
            else:
                keys = lexicon.sample(rng, "key", key_split, n_keys)
            values = lexicon.sample(rng, "value", split, n_keys)
            filled = [fill(NEEDLE, key=k, value=v) for k, v in zip(keys, values)]
            facts, value_at = [t for t, _ in filled], [w["value"] for _, w in filled]
        positions = [rng.random() for _ in facts]
        positions[asked[0]] = pos()  # other asked needles (multiquery/multivalue) stay random
        hay = assemble(facts, positions, target_tokens, spec.chunk_tokens, bank, rng, counter,
                       what=f"needle/{sub}")
        in_order = [i for i in hay.order if i in set(asked)]
        # the answer lists the values in context order or sorted; facts, spans and depths stay in context order
        answer_order = sorted(in_order, key=lambda i: values[i]) \
            if sub in ("multivalue", "multiquery") and spec.value_order == "sorted" else in_order
        fact_spans = [span(c, a, a + len(f)) for f, c, a in zip(facts, hay.fact_chunks, hay.fact_chars)]
        value_spans = [[span(c, a + s0, a + e0) for s0, e0 in at]
                       for at, c, a in zip(value_at, hay.fact_chunks, hay.fact_chars)]
        if sub == "passkey":
            pass  # question and prefix set above
        elif sub == "multivalue":
            question, prefix = QUESTION_PLURAL.format(key=keys[0]), PREFIX_PLURAL.format(key=keys[0])
        elif sub == "multiquery":
            joined = ", ".join(keys[i] for i in in_order)
            question, prefix = QUESTION_PLURAL.format(key=joined), PREFIX_PLURAL.format(key=joined)
        else:
            question, prefix = QUESTION.format(key=keys[0]), PREFIX.format(key=keys[0])
        return dict(
            context=hay.chunks, question=question, answer_prefix=prefix,
            answer=LIST_SEPARATOR.join(values[i] for i in answer_order),
            supporting_facts=[facts[i] for i in in_order],
            supporting_chunks=[hay.fact_chunks[i] for i in in_order],
            fact_spans=[fact_spans[i] for i in in_order],
            answer_spans=[x for i in in_order for x in value_spans[i]],
            depths=[hay.fact_depths[i] for i in in_order],
            context_tokens=hay.total_tokens,
            extra={"anchor": asked[0], "anchor_depth": hay.fact_depths[asked[0]],
                   "anchor_chunk": hay.fact_chunks[asked[0]], "facts": facts, "keys": keys, "values": values,
                   "fact_chunks": hay.fact_chunks, "fact_depths": hay.fact_depths,
                   "fact_spans": fact_spans, "value_spans": value_spans})

    exs = run(TASK, build, spec.subtasks, split, n, target_tokens, depth, seed, counter, subtask, start)
    if spec.ask_all_keys and split != "test":
        exs = [x for e in exs for x in ask_every_key(e)]
    return exs


def ask_every_key(e):
    """A multikey example plus one sibling per distractor key: same context, another key asked."""
    if e.subtask != "multikey":
        return [e]
    x = e.extra
    out = [e]
    for i, (key, value) in enumerate(zip(x["keys"], x["values"])):
        if i == x["anchor"]:
            continue
        out.append(replace(e, id=f"{e.id}/k{i}", question=QUESTION.format(key=key),
                           answer_prefix=PREFIX.format(key=key), answer=value,
                           supporting_facts=[x["facts"][i]], supporting_chunks=[x["fact_chunks"][i]],
                           fact_spans=[x["fact_spans"][i]], answer_spans=list(x["value_spans"][i]),
                           depths=[x["fact_depths"][i]], target_depth=None))
    return out
