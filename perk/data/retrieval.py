"""API/document retrieval: one gold API description among look-alike distractor documents,
one document per chunk. The subtask is the gold position: first, middle, last or random.

Distractors are hard negatives: by default 70% share three of the four parts of the gold purpose
(verb, adjective, noun, object), so only the exact purpose identifies the gold document
(`hard_negatives` sets the fraction; 0 draws every distractor's purpose at random). API
names are code names unrelated to the purpose, so the answer cannot be guessed from the question.
"""
from __future__ import annotations

import math
import random

from ..config import RetrievalSpec
from . import lexicon
from .base import fill, run, with_siblings
from .schema import span
from .haystack import as_counter, choose_count, fit_items, pack_items, stable_seed

TASK = "retrieval"
# The purpose comes before the name, and the answer prefix restates it as the document reads
# ("The API to P is" NAME): the inner loop's causal-LM loss can only write "what comes before ->
# what follows" into the adapter, so a document that named the API first ("API: NAME. Use it to
# P.") stored the reverse of what the question asks (experiments/FAMILIES.md, run H: 0% EM, every
# answer a name not in the context). This is needle's binding: the answer is predicted after the
# same words in the fact and in the prompt.
DOC = "The API to {purpose} is {name}. Parameters: {params}. Returns: {returns}."
QUESTION = "Which API should be used to {purpose}?"
PREFIX = "The API to {purpose} is"
RETURNS = ("JSON", "a list", "a string", "a number", "a table", "a boolean")
SUBTASK_DEPTH = {"first": 0.0, "middle": 0.5, "last": 1.0, "random": None}
PARTS = ("apiverb", "apiadj", "apinoun", "apiobj")


def purpose_text(p: tuple[str, str, str, str]) -> str:
    verb, adj, noun, obj = p
    article = "an" if obj[0] in "aeio" else "a"  # "a user"
    return f"{verb} the {adj} {noun} of {article} {obj}"


class DocMaker:
    def __init__(self, rng, split: str, hard_negatives: float = 0.7, shared_names: bool = False):
        self.rng = rng
        self.hard_negatives = hard_negatives
        # split names: val/test names are words no training answer holds; shared: every name can be an
        # answer in training, only the purpose -> name pairings of a context are new (as needle values)
        self.codes = lexicon.pool("api", None if shared_names else split)
        if len(self.codes) < 2:
            raise ValueError(f"api code-name pool for {split} is too small")
        self.names: set[str] = set()
        self.purposes: set[tuple] = set()

    def name(self) -> str:
        """Two code names joined; three once two-part names get scarce (long contexts)."""
        rng = self.rng
        for attempt in range(100_000):
            name = "_".join(rng.sample(self.codes, 2 if attempt < 20 else 3))
            if name not in self.names:
                self.names.add(name)
                return name
        raise ValueError("ran out of distinct API names; use a shorter length")

    def purpose(self, near: tuple | None = None) -> tuple:
        rng = self.rng
        while True:
            if near is not None and rng.random() < self.hard_negatives:
                p = list(near)
                j = rng.randrange(4)
                p[j] = rng.choice(lexicon.pool(PARTS[j]))
                p = tuple(p)
            else:
                p = tuple(rng.choice(lexicon.pool(k)) for k in PARTS)
            if p not in self.purposes:
                self.purposes.add(p)
                return p

    def doc(self, purpose: tuple) -> tuple[str, str, tuple[int, int]]:
        """(API name, document text, where the name lies in the text)."""
        rng = self.rng
        name = self.name()
        params = ", ".join(rng.sample(lexicon.pool("param"), rng.randint(1, 3)))
        text, where = fill(DOC, name=name, purpose=purpose_text(purpose), params=params,
                           returns=rng.choice(RETURNS))
        return name, text, where["name"][0]


def generate(spec: RetrievalSpec, split: str, n: int, target_tokens: int, depth: float | None, seed: int,
             count_tokens, subtask: str | None = None, start: int = 0):
    """`depth` applies to the 'random' subtask only (None: uniform); the others fix the position."""
    counter = as_counter(count_tokens)

    def build(sub, rng, counter, s):
        if sub not in SUBTASK_DEPTH:
            raise ValueError(f"unknown retrieval subtask {sub!r}")
        maker = DocMaker(rng, split, spec.hard_negatives, spec.name_pool == "shared")
        gold_p = maker.purpose()
        gold_name, gold_doc, name_at = maker.doc(gold_p)
        budget = target_tokens - counter(gold_doc)
        if budget < 0:
            raise ValueError(f"retrieval/{sub}: target length {target_tokens} tokens cannot hold the gold "
                             f"document; use a longer length")
        docs: list[str] = []
        made: list[tuple] = []  # (purpose, name, name span) of each candidate distractor
        counts: list[int] = []
        while True:
            more = max(4, math.ceil((budget - sum(counts)) / 40) + 4)
            new = []
            for _ in range(more):
                p = maker.purpose(near=gold_p)
                name, text, at = maker.doc(p)
                new.append(text)
                made.append((p, name, at))
            docs += new
            counts += counter.many(new)
            k = choose_count(counts, budget)
            if k + 8 < len(counts):  # spare candidates for fit_items
                break
        keep = fit_items(counts, budget)
        docs, made = [docs[i] for i in keep], [made[i] for i in keep]
        n_total = len(docs) + 1
        d = SUBTASK_DEPTH[sub]
        if d is None:
            d = rng.random() if depth is None else float(depth)
        slot = round(d * (n_total - 1))
        chunks = docs[:slot] + [gold_doc] + docs[slot:]
        starts, total = pack_items(chunks, counter.many(chunks))
        others = []
        if spec.ask_docs > 1 and split != "test":
            # distractors asked by their own (distinct) purposes; a separate rng keeps the example
            # itself identical to the one a single question gets
            for j in random.Random(stable_seed(s, "ask_docs")).sample(range(len(docs)), min(spec.ask_docs - 1, len(docs))):
                c = j if j < slot else j + 1
                p, name, at = made[j]
                others.append(dict(
                    question=QUESTION.format(purpose=purpose_text(p)), answer_prefix=PREFIX.format(purpose=purpose_text(p)),
                    answer=name, supporting_facts=[docs[j]],
                    supporting_chunks=[c], fact_spans=[span(c, 0, len(docs[j]))], answer_spans=[span(c, *at)],
                    depths=[starts[c] / total]))
        return dict(
            context=chunks, question=QUESTION.format(purpose=purpose_text(gold_p)),
            answer_prefix=PREFIX.format(purpose=purpose_text(gold_p)),
            answer=gold_name, supporting_facts=[gold_doc], supporting_chunks=[slot],
            fact_spans=[span(slot, 0, len(gold_doc))], answer_spans=[span(slot, *name_at)],
            depths=[starts[slot] / total], context_tokens=total,
            extra={"anchor_chunk": slot, "anchor_depth": starts[slot] / total, "others": others})

    out = run(TASK, build, spec.subtasks, split, n, target_tokens, depth, seed, counter, subtask, start)
    for e in out:
        if SUBTASK_DEPTH[e.subtask] is not None:
            e.target_depth = SUBTASK_DEPTH[e.subtask]
    return with_siblings(out)  # ask_docs > 1 (train/val): several documents asked per context
