"""Drops-in-the-Ocean student records: one record per chunk, distractors formatted exactly like
the relevant records; questions recall a field, relate two grades, or aggregate over a group.

The context length comes from the number of records. The (first) relevant record sits at the
requested depth; other relevant records go to random positions.
"""
from __future__ import annotations

import math
import random
from decimal import ROUND_HALF_UP, Decimal

from ..config import RecordsSpec
from . import lexicon
from .base import fill, run, with_siblings
from .schema import span
from .haystack import as_counter, choose_count, fit_items, pack_items, stable_seed

TASK = "records"
RECORD = ("Student record. ID: {id}. Name: {name}. Year: {year}. School: {school}. "
          "Major: {major}. Grade: {grade}.")  # school: "<name> College", the answer text (field_text)
FIELDS = ("name", "year", "school", "major", "grade")
YEARS = tuple(range(2015, 2025))
GROUP_PHRASE = {"major": "students whose major is {g}", "school": "students at {g} College",
                "year": "students whose year is {g}"}


def render_spans(r: dict) -> tuple[str, dict[str, list[tuple[int, int]]]]:
    """A record's text and where each field's answer text (field_text) lies in it."""
    return fill(RECORD, **{f: field_text(r, f) for f in ("id",) + FIELDS})


def render(r: dict) -> str:
    return render_spans(r)[0]


def field_text(r: dict, f: str) -> str:
    return f"{r['school']} College" if f == "school" else str(r[f])


def aggregate_question(op: str, group: str, grades: list[int]) -> tuple[str, str]:
    if op == "max":
        return f"What is the highest grade among {group}?", str(max(grades))
    if op == "min":
        return f"What is the lowest grade among {group}?", str(min(grades))
    return f"What is the average grade of {group}, rounded to one decimal place?", average_text(grades)


def relation_question(a: dict, b: dict) -> tuple[str, str]:
    return (f"Is the grade of the student with ID {a['id']} higher than the grade of the student with ID "
            f"{b['id']}?", "yes" if a["grade"] > b["grade"] else "no")


def average_text(grades: list[int]) -> str:
    """Mean rounded half-up to one decimal (no binary-float surprises)."""
    return str((Decimal(sum(grades)) / Decimal(len(grades))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


class RecordMaker:
    """Fresh records with IDs and names unique within one context."""

    def __init__(self, rng, split: str):
        self.rng, self.split = rng, split
        self.ids: set[int] = set()
        self.first = lexicon.pool("person", split)
        self.last = lexicon.pool("surname", split)
        self.schools = lexicon.pool("school")
        self.majors = lexicon.pool("major")

    def make(self, avoid: tuple[str, object] | None = None, **fixed) -> dict:
        rng = self.rng
        if len(self.ids) > 60000:
            raise ValueError("too many records for unique 5-digit IDs; use a shorter length")
        while True:
            i = rng.randrange(10000, 100000)
            if i not in self.ids:
                break
        # Names repeat in long contexts (IDs identify a record), as in a real registry.
        name = f"{rng.choice(self.first)} {rng.choice(self.last)}"
        self.ids.add(i)
        r = dict(id=i, name=name, year=rng.choice(YEARS), school=rng.choice(self.schools),
                 major=rng.choice(self.majors), grade=rng.randint(50, 100))
        r.update(fixed)
        if avoid is not None:
            key, bad = avoid
            choices = {"year": YEARS, "school": self.schools, "major": self.majors}[key]
            while r[key] == bad:
                r[key] = rng.choice(choices)
        return r


def generate(spec: RecordsSpec, split: str, n: int, target_tokens: int, depth: float | None, seed: int,
             count_tokens, subtask: str | None = None, start: int = 0):
    counter = as_counter(count_tokens)

    def build(sub, rng, counter, s):
        maker = RecordMaker(rng, split)
        avoid = None
        if sub == "recall":
            rel = [maker.make()]
            f = rng.choice(FIELDS)
            question = f"What is the {f} of the student with ID {rel[0]['id']}?"
            answer = field_text(rel[0], f)
        elif sub == "relation":
            a, b = maker.make(), maker.make()
            while b["grade"] == a["grade"]:
                b["grade"] = rng.randint(50, 100)
            rel = [a, b]
            question, answer = relation_question(a, b)
        elif sub == "aggregate":
            key = rng.choice(("major", "school", "year"))
            g = rng.choice({"major": maker.majors, "school": maker.schools, "year": YEARS}[key])
            rel = [maker.make(**{key: g}) for _ in range(rng.randint(2, 5))]
            # Short contexts: keep the group to at most half the length (but two members at least).
            while len(rel) > 2 and sum(counter.many([render(r) for r in rel])) > target_tokens // 2:
                rel.pop()
            avoid = (key, g)
            op = rng.choice(tuple(spec.aggregate_ops))
            group = GROUP_PHRASE[key].format(g=g)
            grades = [r["grade"] for r in rel]
            question, answer = aggregate_question(op, group, grades)
        else:
            raise ValueError(f"unknown records subtask {sub!r}")
        rendered = [render_spans(r) for r in rel]
        rel_texts = [t for t, _ in rendered]
        # what the answer is read from: the asked field (recall), else every relevant grade
        read = [f] if sub == "recall" else ["grade"]
        budget = target_tokens - sum(counter.many(rel_texts))
        if budget < 0:
            raise ValueError(f"records/{sub}: target length {target_tokens} tokens cannot hold "
                             f"{len(rel)} relevant records; use a longer length")
        distract: list[str] = []
        distract_recs: list[dict] = []
        counts: list[int] = []
        while True:
            more = max(4, math.ceil((budget - sum(counts)) / 30) + 4)
            recs = [maker.make(avoid=avoid) for _ in range(more)]
            new = [render(r) for r in recs]
            distract += new
            distract_recs += recs
            counts += counter.many(new)
            k = choose_count(counts, budget)
            if k + 8 < len(counts):  # spare candidates for fit_items
                break
        keep = fit_items(counts, budget)
        distract = [distract[i] for i in keep]
        distract_recs = [distract_recs[i] for i in keep]
        n_total = len(rel) + len(distract)
        d = rng.random() if depth is None else float(depth)
        anchor = round(d * (n_total - 1))
        others = rng.sample([i for i in range(n_total) if i != anchor], len(rel) - 1)
        slots = [anchor] + others
        chunks: list[str | None] = [None] * n_total
        for r_i, slot in enumerate(slots):
            chunks[slot] = rel_texts[r_i]
        it = iter(distract)
        chunks = [c if c is not None else next(it) for c in chunks]
        chunk_counts = counter.many(chunks)
        starts, total = pack_items(chunks, chunk_counts)
        order = sorted(range(len(rel)), key=lambda r_i: slots[r_i])
        others = []
        if sub == "recall" and spec.ask_records and split != "test":
            # every field of the relevant record and of ask_records - 1 distractors; a separate rng
            # keeps the example itself identical to the one a single question gets
            free = [c for c in range(n_total) if c not in set(slots)]
            pick = random.Random(stable_seed(s, "ask_records")).sample(
                range(len(distract_recs)), min(spec.ask_records - 1, len(distract_recs)))
            asked = [(rel[0], slots[0], [g for g in FIELDS if g != f])] + [
                (distract_recs[j], free[j], list(FIELDS)) for j in pick]
            for r, c, fields in asked:
                text, where = render_spans(r)
                for g in fields:
                    others.append(dict(
                        question=f"What is the {g} of the student with ID {r['id']}?", answer=field_text(r, g),
                        supporting_facts=[text], supporting_chunks=[c], fact_spans=[span(c, 0, len(text))],
                        answer_spans=[span(c, a, b) for a, b in where[g]], depths=[starts[c] / total]))
        if split != "test" and ((sub == "relation" and spec.ask_pairs) or (sub == "aggregate" and spec.ask_all_ops)):
            others += _more_questions(spec, sub, rel, slots, rendered, distract_recs, n_total, starts, total, s,
                                      question, group if sub == "aggregate" else None)
        return dict(
            context=chunks, question=question, answer_prefix="", answer=answer,
            supporting_facts=[rel_texts[i] for i in order],
            supporting_chunks=[slots[i] for i in order],
            fact_spans=[span(slots[i], 0, len(rel_texts[i])) for i in order],
            answer_spans=[span(slots[i], a, b) for i in order for k in read for a, b in rendered[i][1][k]],
            depths=[starts[slots[i]] / total for i in order],
            context_tokens=total,
            extra={"anchor_chunk": anchor, "anchor_depth": starts[anchor] / total, "others": others})

    exs = run(TASK, build, spec.subtasks, split, n, target_tokens, depth, seed, counter, subtask, start)
    return with_siblings(exs)  # records/recall with ask_records (train/val): every field asked


def _more_questions(spec: RecordsSpec, sub: str, rel: list[dict], slots: list[int], rendered: list, distract_recs:
                    list[dict], n_total: int, starts: list[int], total: int, s: int, asked: str,
                    group: str | None) -> list[dict]:
    """Sibling questions of a relation / aggregate context (train/val): the gold pair reversed and
    ask_pairs - 1 pairs of distractors, each both ways; or the group under every other operation.
    A separate rng keeps the example itself identical to the one a single question gets."""
    def row(question, answer, recs):  # recs: (record text, where its fields are, chunk) of the facts read
        return dict(question=question, answer=answer, supporting_facts=[t for t, _, _ in recs],
                    supporting_chunks=[c for _, _, c in recs],
                    fact_spans=[span(c, 0, len(t)) for t, _, c in recs],
                    answer_spans=[span(c, a, b) for _, w, c in recs for a, b in w["grade"]],
                    depths=[starts[c] / total for _, _, c in recs])

    gold = [(t, w, c) for (t, w), c in zip(rendered, slots)]
    out = []
    if sub == "aggregate":
        grades = [r["grade"] for r in rel]
        for op in spec.aggregate_ops:
            q, a = aggregate_question(op, group, grades)
            if q != asked:
                out.append(row(q, a, gold))
        return out
    a, b = rel
    q, ans = relation_question(b, a)
    out.append(row(q, ans, gold[::-1]))
    free = [c for c in range(n_total) if c not in set(slots)]  # distract_recs[j] sits in chunk free[j]
    rng = random.Random(stable_seed(s, "ask_pairs"))
    order = rng.sample(range(len(distract_recs)), len(distract_recs))
    pairs, used = [], set()
    for i in order:  # disjoint pairs with different grades, so every answer is defined
        if len(pairs) >= spec.ask_pairs - 1:
            break
        if i in used:
            continue
        j = next((j for j in order if j != i and j not in used
                  and distract_recs[j]["grade"] != distract_recs[i]["grade"]), None)
        if j is not None:
            used |= {i, j}
            pairs.append((i, j))
    for pair in pairs:
        for i, j in (pair, pair[::-1]):
            q, ans = relation_question(distract_recs[i], distract_recs[j])
            out.append(row(q, ans, [(*render_spans(distract_recs[k]), free[k]) for k in (i, j)]))
    return out
