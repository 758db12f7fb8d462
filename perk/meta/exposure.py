"""Exposure: plain LM text that teaches a from-scratch base every answer word.

A pretrained LM knows every word; a tiny model trained from scratch only knows the words its
training answers contain, and the answer loss keeps pushing all other words down. Exposure text
stands in for that knowledge, in the format of the task family being trained, with *random*
pairings drawn from the lexicon (never from data rows), so nothing about any evaluation context
can be learned from it:

- needle: "One of the special magic words for KEY is VALUE." over the training keys (or every
  key, when asked) and every value word;
- records: random student records and "What is the F of the student with ID N? Answer: X"
  lines, names from every split (test names are answers the model must be able to write; IDs,
  the records' keys, are random numbers);
- retrieval: random API documents and "Which API should be used to P? The API to P is NAME" lines,
  names from every split's code words (purposes use shared words);
- babilong: "PERSON went to the ROOM." and "Where is PERSON? Answer: ROOM" lines, persons (the
  keys) from the training pool (or every pool), rooms (the answers, a shared pool).
"""
from __future__ import annotations

import random

import torch

from ..data import babilong, needle, records, retrieval
from ..data.babilong import MOVE
from ..data.lexicon import pool
from ..prompts import answer_target, question_prompt
from .inner import token_losses

FAMILIES = ("needle", "babilong", "records", "retrieval", "ruler")


def _qa(question: str, prefix: str, answer: str) -> str:
    """A question line exactly as training prompts it (perk/prompts.py), answered at random."""
    return question_prompt({"question": question, "answer_prefix": prefix}) + answer_target({"answer": answer})


class Exposure:
    def __init__(self, tokenizer, keys: str = "train", seed: int = 0, rows: int = 2, per_row: int = 5,
                 family: str = "needle", babilong_prefix: bool = False):
        if keys not in ("train", "all"):
            raise ValueError(f"exposure keys must be 'train' or 'all', got {keys!r}")
        if family not in FAMILIES:
            raise ValueError(f"exposure family must be one of {FAMILIES}, got {family!r}")
        self.tok, self.family = tokenizer, family
        self.keys = pool("key", "train") if keys == "train" else pool("key")
        self.values = pool("value")
        self.people = pool("person", "train") if keys == "train" else pool("person")  # babilong's keys
        self.seed, self.rows, self.per_row = seed, rows, per_row
        self.babilong_prefix = babilong_prefix  # the questions' answer prefix (BabilongSpec.answer_prefix)

    def texts(self, step: int) -> list[str]:
        # a function of (seed, step): a resumed run sees the same text as an uninterrupted one
        rng = random.Random(self.seed * 1_000_003 + step)
        sentence = getattr(self, f"_{self.family}")
        return [" ".join(sentence(rng) for _ in range(self.per_row)) for _ in range(self.rows)]

    def _needle(self, rng) -> str:
        return needle.NEEDLE.format(key=rng.choice(self.keys), value=rng.choice(self.values))

    def _babilong(self, rng) -> str:
        person, room = rng.choice(self.people), rng.choice(pool("room"))
        if rng.random() < 0.5:
            return f"{person} {rng.choice(MOVE)} to the {room}."
        q = f"Where is {person}?"
        return _qa(q, babilong.answer_prefix(q) if self.babilong_prefix else "", room)

    def _records(self, rng) -> str:
        r = dict(id=rng.randrange(10000, 100000),
                 name=f"{rng.choice(pool('person'))} {rng.choice(pool('surname'))}",  # every split
                 year=rng.choice(records.YEARS), school=rng.choice(pool("school")),
                 major=rng.choice(pool("major")), grade=rng.randint(50, 100))
        if rng.random() < 0.5:
            return records.render(r)
        f = rng.choice(records.FIELDS)
        return _qa(f"What is the {f} of the student with ID {r['id']}?", "", records.field_text(r, f))

    def _retrieval(self, rng) -> str:
        name = "_".join(rng.sample(pool("api"), 2))  # code words of every split
        purpose = retrieval.purpose_text(tuple(rng.choice(pool(k)) for k in retrieval.PARTS))
        if rng.random() < 0.5:
            params = ", ".join(rng.sample(pool("param"), rng.randint(1, 3)))
            return retrieval.DOC.format(name=name, purpose=purpose, params=params,
                                        returns=rng.choice(retrieval.RETURNS))
        return _qa(retrieval.QUESTION.format(purpose=purpose), retrieval.PREFIX.format(purpose=purpose), name)

    def _ruler(self, rng) -> str:
        key, value = f"{rng.choice(pool('key'))}-{rng.choice(pool('value'))}", rng.randint(1000000, 9999999)
        if rng.random() < 0.5:
            return f"One of the special magic numbers for {key} is: {value}."
        about = f"special magic number for {key} mentioned in the provided text"
        return _qa(f"What is the {about}?", f"The {about} is", str(value))

    def loss(self, lm: torch.nn.Module, step: int) -> torch.Tensor:
        """Mean next-token loss of `lm` on this step's exposure text."""
        # padded by hand: a fast tokenizer called with padding=True keeps padding switched on in its
        # backend, and later token counts (haystack fitting) would then include the pads
        seqs = self.tok(self.texts(step), add_special_tokens=False)["input_ids"]
        n = max(map(len, seqs))
        dev = next(lm.parameters()).device
        ids = torch.tensor([s + [self.tok.pad_token_id] * (n - len(s)) for s in seqs], device=dev)
        real = torch.tensor([[1.0] * (len(s) - 1) + [0.0] * (n - len(s)) for s in seqs], device=dev)
        # right-padded and causal: no attention mask, as everywhere else (see meta.inner.encode)
        out = lm(input_ids=ids, attention_mask=None)
        return (token_losses(out.logits, ids) * real).sum() / real.sum()
