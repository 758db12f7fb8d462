"""BABILong-style tasks: a bAbI world simulation whose story is hidden, in order, in filler.

qa1: where is a person (one supporting fact); qa2: where is an object (two facts: who took it
and where they went, or where it was dropped); qa3: where was an object before a room (three
facts). People move between rooms, pick up, drop and give objects. The last supporting fact sits
at the requested depth; the other story sentences keep their order around it.
"""
from __future__ import annotations

import re

from ..config import BabilongSpec
from . import lexicon
from .base import fill, run, shift, with_siblings
from .schema import span
from .haystack import FillerBank, assemble, as_counter

TASK = "babilong"
MOVE = ("moved", "went", "journeyed", "travelled")
GRAB = ("picked up", "got", "grabbed", "took")
DROP = ("dropped", "discarded", "put down", "left")
GIVE = ("gave", "handed", "passed")
N_PEOPLE, N_ROOMS, N_OBJECTS = 4, 6, 4
MAX_TRIES = 500


class World:
    """Replays actions and records, for each answer, the sentences it depends on."""

    def __init__(self):
        self.loc: dict[str, str] = {}
        self.loc_fact: dict[str, int] = {}
        self.holder: dict[str, str] = {}       # object -> person holding it
        self.grab_fact: dict[str, int] = {}
        self.placed: dict[str, tuple[str, list[int]]] = {}  # dropped object -> (room, facts)
        self.history: dict[str, list[tuple[str, list[int]]]] = {}
        self.given: set[str] = set()
        self.last_move: dict[str, int] = {}
        # per story sentence, the local character spans a question reads from it: the room of a
        # move; a whole sentence for take/drop/give (they state who holds what, no single word)
        self.value_spans: list[list[tuple[int, int]]] = []

    def move(self, i, p, room):
        self.loc[p], self.loc_fact[p], self.last_move[p] = room, i, i
        for o, h in self.holder.items():
            if h == p:
                self.history.setdefault(o, []).append((room, [self.grab_fact[o], i]))

    def grab(self, i, p, o):
        self.holder[o], self.grab_fact[o] = p, i
        self.placed.pop(o, None)
        hist = self.history.setdefault(o, [])
        if not hist or hist[-1][0] != self.loc[p]:
            hist.append((self.loc[p], [self.loc_fact[p], i]))

    def drop(self, i, p, o):
        del self.holder[o]
        self.placed[o] = (self.loc[p], [self.loc_fact[p], i])

    def give(self, i, p, q, o):
        self.holder[o] = q
        self.given.add(o)

    def where(self, o) -> tuple[str, list[int]] | None:
        if o in self.holder:
            p = self.holder[o]
            return self.loc[p], sorted({self.grab_fact[o], self.loc_fact[p]})
        return self.placed.get(o)


def simulate(rng, sub: str, num_facts: int, people, rooms, objects):
    """Random valid actions; returns (sentences, world)."""
    w = World()
    sents: list[str] = []
    for i in range(num_facts):
        options = []
        options.append(("move", 5))
        if sub != "qa1":
            can_grab = [(p, o) for p in people if p in w.loc for o in objects
                        if o not in w.holder and (o not in w.placed or w.placed[o][0] == w.loc[p])]
            can_drop = [(w.holder[o], o) for o in objects if o in w.holder]
            can_give = [(w.holder[o], q, o) for o in objects if o in w.holder for q in people
                        if q != w.holder[o] and q in w.loc and w.loc[q] == w.loc[w.holder[o]]]
            if can_grab:
                options.append(("grab", 3))
            if can_drop:
                options.append(("drop", 1.5))
            if can_give:
                options.append(("give", 1))
        kind = rng.choices([k for k, _ in options], weights=[wt for _, wt in options])[0]
        if kind == "move":
            p = rng.choice(people)
            room = rng.choice([r for r in rooms if r != w.loc.get(p)])
            w.move(i, p, room)
            text, where = fill("{p} {verb} to the {room}.", p=p, verb=rng.choice(MOVE), room=room)
            sents.append(text)
        elif kind == "grab":
            p, o = rng.choice(can_grab)
            w.grab(i, p, o)
            sents.append(f"{p} {rng.choice(GRAB)} the {o} there.")
        elif kind == "drop":
            p, o = rng.choice(can_drop)
            w.drop(i, p, o)
            sents.append(f"{p} {rng.choice(DROP)} the {o}.")
        else:
            p, q, o = rng.choice(can_give)
            w.give(i, p, q, o)
            sents.append(f"{p} {rng.choice(GIVE)} the {o} to {q}.")
        w.value_spans.append(where["room"] if kind == "move" else [(0, len(sents[-1]))])
    return sents, w


def answer_prefix(question: str) -> str:
    """RULER-style cue ending right before the room (`BabilongSpec.answer_prefix`): the asked
    person/object sits 3 tokens before the answer, as the person does before the room in a
    move ("Mary went to the kitchen"), so a local layer reads the same key in both."""
    m = re.fullmatch(r"Where is (the )?(\w+)\?", question)
    if m:
        return f"{'The ' if m.group(1) else ''}{m.group(2)} is in the"
    m = re.fullmatch(r"Where was the (\w+) before the (\w+)\?", question)
    if m:
        return f"Before the {m.group(2)}, the {m.group(1)} was in the"
    raise ValueError(f"no answer prefix for babilong question {question!r}")


def questions(sub: str, w: World, objects) -> list[tuple[str, str, list[int]]]:
    """Every question of this subtask the story answers, as (question, answer, supporting idx)."""
    out = []
    if sub == "qa1":
        for p, i in sorted(w.last_move.items()):
            out.append((f"Where is {p}?", w.loc[p], [i]))
    elif sub == "qa2":
        for o in objects:
            got = w.where(o)
            if got and o not in w.given and len(got[1]) == 2:
                out.append((f"Where is the {o}?", got[0], got[1]))
    elif sub == "qa3":
        for o in objects:
            hist = w.history.get(o, [])
            if o in w.given:
                continue
            rooms = [r for r, _ in hist]
            for k in range(1, len(hist)):
                if rooms.count(rooms[k]) == 1:
                    facts = sorted(set(hist[k - 1][1]) | set(hist[k][1]))
                    if len(facts) == 3:
                        out.append((f"Where was the {o} before the {rooms[k]}?", rooms[k - 1], facts))
    else:
        raise ValueError(f"unknown babilong subtask {sub!r}")
    return out


def generate(spec: BabilongSpec, split: str, n: int, target_tokens: int, depth: float | None, seed: int,
             count_tokens, subtask: str | None = None, start: int = 0):
    counter = as_counter(count_tokens)
    bank = FillerBank.get(seed, split, counter)

    def build(sub, rng, counter, s):
        for _ in range(MAX_TRIES):
            people = lexicon.sample(rng, "person", split, N_PEOPLE)
            rooms = lexicon.sample(rng, "room", split, N_ROOMS)
            objects = lexicon.sample(rng, "item", split, N_OBJECTS)
            sents, world = simulate(rng, sub, spec.num_facts, people, rooms, objects)
            qs = questions(sub, world, objects)
            if qs:
                break
        else:
            raise ValueError(f"babilong/{sub}: no answerable question in {MAX_TRIES} stories of "
                             f"{spec.num_facts} facts; raise num_facts")
        question, answer, support = rng.choice(qs)
        others = [q for q in qs if q[0] != question]  # ask_all: the story's other questions
        anchor = support[-1]
        d = rng.random() if depth is None else float(depth)
        before = sorted(rng.uniform(0, d) for _ in range(anchor))
        after = sorted(rng.uniform(d, 1) for _ in range(len(sents) - anchor - 1))
        positions = before + [d] + after
        hay = assemble(sents, positions, target_tokens, spec.chunk_tokens, bank, rng, counter,
                       what=f"babilong/{sub}")

        def asked(question, answer, support):
            return dict(
                question=question, answer_prefix=answer_prefix(question) if spec.answer_prefix else "", answer=answer,
                supporting_facts=[sents[i] for i in support],
                supporting_chunks=[hay.fact_chunks[i] for i in support],
                fact_spans=[span(hay.fact_chunks[i], hay.fact_chars[i], hay.fact_chars[i] + len(sents[i]))
                            for i in support],
                answer_spans=[span(hay.fact_chunks[i], a, b) for i in support
                              for a, b in shift(world.value_spans[i], hay.fact_chars[i])],
                depths=[hay.fact_depths[i] for i in support])

        return dict(
            context=hay.chunks, **asked(question, answer, support), context_tokens=hay.total_tokens,
            extra={"story": sents, "anchor_depth": hay.fact_depths[anchor],
                   "anchor_chunk": hay.fact_chunks[anchor], "others": [asked(*q) for q in others]})

    exs = run(TASK, build, spec.subtasks, split, n, target_tokens, depth, seed, counter, subtask, start)
    return with_siblings(exs) if spec.ask_all and split != "test" else exs
