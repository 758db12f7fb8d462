"""What every family generator shares: per-example seeds, ids and the generation loop."""
from __future__ import annotations

import random
import string
from dataclasses import replace
from typing import Callable

from .haystack import TokenCounter, as_counter, stable_seed
from .schema import Example


Span = tuple[int, int]  # character [start, end) inside one text


def fill(template: str, **fields) -> tuple[str, dict[str, list[Span]]]:
    """`template.format(**fields)` and, per field, where each of its occurrences landed.

    Generators record the spans of what a question reads out of a fact while they write it, so
    training never has to search for the answer in the text (a substring search hits "no" inside
    "Knox" or a grade's digits inside an ID)."""
    parts: list[str] = []
    spans: dict[str, list[Span]] = {}
    at = 0
    for literal, name, spec, conv in string.Formatter().parse(template):
        parts.append(literal)
        at += len(literal)
        if name is None:
            continue
        if spec or conv:
            raise ValueError(f"fill(): format specs are not supported ({template!r})")
        text = str(fields[name])
        spans.setdefault(name, []).append((at, at + len(text)))
        parts.append(text)
        at += len(text)
    return "".join(parts), spans


def shift(spans: list[Span], by: int) -> list[Span]:
    return [(s + by, e + by) for s, e in spans]


def depth_tag(depth: float | None) -> str:
    return "rand" if depth is None else f"{depth:.2f}"


def example_seed(seed: int, task: str, subtask: str, split: str, length: int, depth: float | None,
                 index: int) -> int:
    return stable_seed(seed, task, subtask, split, int(length), depth_tag(depth), int(index))


def run(task: str, build: Callable, subtasks: list[str], split: str, n: int, target_tokens: int,
        depth: float | None, seed: int, count_tokens, subtask: str | None = None,
        start: int = 0) -> list[Example]:
    """Build n examples; example i uses `subtask` or cycles through `subtasks`.

    `build(subtask, rng, counter, example_seed) -> Example-fields dict` makes one example; the
    loop fills id, task, split, lengths, depth and seed."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    counter: TokenCounter = as_counter(count_tokens)
    out = []
    for i in range(start, start + n):
        sub = subtask or subtasks[i % len(subtasks)]
        s = example_seed(seed, task, sub, split, target_tokens, depth, i)
        fields = build(sub, random.Random(s), counter, s)
        out.append(Example(
            id=f"{task}/{split}/{sub}/{target_tokens}/{depth_tag(depth)}/{i}",
            task=task, subtask=sub, split=split, target_tokens=int(target_tokens),
            target_depth=None if depth is None else float(depth), seed=s, **fields))
    return out


def with_siblings(examples: list[Example]) -> list[Example]:
    """Each example, then one sibling row per further question its build recorded in
    `extra["others"]` (question/answer fields): the same context asked again, so one encode in
    meta-training serves every question (needle's ask_all_keys, for the other families). The first
    row is the example as it is without siblings; siblings carry no target depth (their facts sit
    where they fell)."""
    return [x for e in examples for x in [e] + [replace(e, id=f"{e.id}/ask{j}", target_depth=None, **fields)
                                               for j, fields in enumerate(e.extra.get("others", ()), 1)]]
