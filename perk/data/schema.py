"""The explicit Arrow schema of a synthesized example, and the row type generators return."""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

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
    pa.field("context_tokens", pa.int32(), nullable=False),  # measured with the run's tokenizer
    pa.field("target_tokens", pa.int32(), nullable=False),   # the length asked for
    pa.field("depths", pa.list_(pa.float64()), nullable=False),  # relative position of each supporting fact in [0, 1]
    pa.field("target_depth", pa.float64(), nullable=True),   # the depth asked for (None: random placement)
    pa.field("seed", pa.int64(), nullable=False),
])

SPLITS = ("train", "val", "test")


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
    context_tokens: int
    target_tokens: int
    depths: list[float]
    target_depth: float | None
    seed: int
    extra: dict = field(default_factory=dict, repr=False)  # not stored; for tests/debugging

    def row(self) -> dict:
        # Shallow on purpose: asdict() deep-copies every chunk list and dominated write time.
        return {name: getattr(self, name) for name in SCHEMA.names}
