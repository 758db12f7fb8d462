"""The explicit Arrow schema of a synthesized example, and the row type generators return."""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

# A character span [start, end) inside context[chunk].
SPAN = pa.struct([pa.field("chunk", pa.int32(), nullable=False), pa.field("start", pa.int32(), nullable=False),
                  pa.field("end", pa.int32(), nullable=False)])
SPAN_COLUMNS = ("fact_spans", "answer_spans")

SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("task", pa.string(), nullable=False),          # family: needle | babilong | records | retrieval
    pa.field("subtask", pa.string(), nullable=False),       # e.g. multikey, qa2, aggregate, middle
    pa.field("split", pa.string(), nullable=False),         # train | val | test
    pa.field("context", pa.list_(pa.string()), nullable=False),   # chunks, in order
    pa.field("question", pa.string(), nullable=False),
    pa.field("answer_prefix", pa.string(), nullable=False),  # RULER-style cue the answer follows ("" if none)
    pa.field("answer", pa.string(), nullable=False),
    pa.field("supporting_facts", pa.list_(pa.string()), nullable=False),  # sentences the answer needs, in context order
    pa.field("supporting_chunks", pa.list_(pa.int32()), nullable=False),  # chunk index of each supporting fact
    # Recorded by the generator while it writes the text (never found by searching it): where each
    # supporting fact sits in its chunk, and the character spans the answer is read from (the
    # value of each supporting fact: a needle's value, a record's field or grade, a room, an API
    # name; a whole fact where the fact states no value, e.g. bAbI's "Mary took the apple").
    pa.field("fact_spans", pa.list_(SPAN), nullable=False),    # one per supporting fact, same order
    pa.field("answer_spans", pa.list_(SPAN), nullable=False),  # >= 1 per supporting fact, context order
    pa.field("context_tokens", pa.int32(), nullable=False),  # measured with the run's tokenizer
    pa.field("target_tokens", pa.int32(), nullable=False),   # the length asked for
    pa.field("depths", pa.list_(pa.float64()), nullable=False),  # relative position of each supporting fact in [0, 1]
    pa.field("target_depth", pa.float64(), nullable=True),   # the depth asked for (None: random placement)
    pa.field("seed", pa.int64(), nullable=False),
])

SPLITS = ("train", "val", "test")


def span(chunk: int, start: int, end: int) -> dict:
    return {"chunk": int(chunk), "start": int(start), "end": int(end)}


@dataclass
class Example:
    id: str
    task: str
    subtask: str
    split: str
    context: list[str]
    question: str
    answer_prefix: str
    answer: str
    supporting_facts: list[str]
    supporting_chunks: list[int]
    fact_spans: list[dict]    # {"chunk", "start", "end"}; see SCHEMA
    answer_spans: list[dict]
    context_tokens: int
    target_tokens: int
    depths: list[float]
    target_depth: float | None
    seed: int
    extra: dict = field(default_factory=dict, repr=False)  # not stored; for tests/debugging

    def row(self) -> dict:
        # Shallow on purpose: asdict() deep-copies every chunk list and dominated write time.
        return {name: getattr(self, name) for name in SCHEMA.names}
