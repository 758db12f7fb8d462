import re
from fractions import Fraction

import pytest
from data_helpers import context_tokens

from perk.config import RecordsSpec
from perk.data import records

SPEC = RecordsSpec()
REC = re.compile(r"Student record\. ID: (\d+)\. Name: (\w+ \w+)\. Year: (\d+)\. School: (\w+ College)\. "
                 r"Major: (\w+)\. Grade: (\d+)\.")


def parse(chunks):
    out = []
    for c in chunks:
        m = REC.fullmatch(c)
        assert m, f"chunk is not exactly one record: {c!r}"
        i, name, year, school, major, grade = m.groups()
        out.append(dict(id=i, name=name, year=year, school=school, major=major, grade=int(grade)))
    return out


def half_up(x: Fraction) -> str:
    tenths = (x * 10 + Fraction(1, 2)).__floor__()
    return f"{tenths // 10}.{tenths % 10}"


def expected(question, recs):
    by_id = {r["id"]: r for r in recs}
    if m := re.fullmatch(r"What is the (\w+) of the student with ID (\d+)\?", question):
        return str(by_id[m.group(2)][m.group(1)]), [m.group(2)]
    if m := re.fullmatch(r"Is the grade of the student with ID (\d+) higher than the grade of the student "
                         r"with ID (\d+)\?", question):
        a, b = by_id[m.group(1)], by_id[m.group(2)]
        assert a["grade"] != b["grade"]
        return ("yes" if a["grade"] > b["grade"] else "no"), [m.group(1), m.group(2)]
    m = re.fullmatch(r"What is (?:the (highest|lowest) grade among|the (average) grade of) students "
                     r"(?:whose major is (\w+)|at (\w+ College)|whose year is (\d+))(?:, rounded to one decimal "
                     r"place)?\?", question)
    assert m, question
    hi_lo, avg, major, school, year = m.groups()
    group = [r for r in recs if (major and r["major"] == major) or (school and r["school"] == school)
             or (year and r["year"] == year)]
    grades = [r["grade"] for r in group]
    assert len(grades) >= 2
    if avg:
        return half_up(Fraction(sum(grades), len(grades))), [r["id"] for r in group]
    return str(max(grades) if hi_lo == "highest" else min(grades)), [r["id"] for r in group]


@pytest.mark.parametrize("sub", SPEC.subtasks)
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0, None])
def test_records_answers_recomputed_from_parsed_chunks(tiny_tokenizer, sub, depth):
    for e in records.generate(SPEC, "test", 6, 1024, depth, 9, tiny_tokenizer, subtask=sub):
        recs = parse(e.context)
        assert len({r["id"] for r in recs}) == len(recs)
        want, ids = expected(e.question, recs)
        assert e.answer == want
        chunks = [next(i for i, r in enumerate(recs) if r["id"] == x) for x in ids]
        assert sorted(chunks) == e.supporting_chunks
        assert [e.context[i] for i in e.supporting_chunks] == e.supporting_facts
        total = context_tokens(tiny_tokenizer, e.context)
        assert total == e.context_tokens and abs(total - 1024) <= 0.05 * 1024
        if depth is not None:
            assert e.extra["anchor_chunk"] == round(depth * (len(recs) - 1))
            assert e.extra["anchor_chunk"] in e.supporting_chunks
        for c, d in zip(e.supporting_chunks, e.depths):
            assert abs(d - context_tokens(tiny_tokenizer, e.context[:c]) / total) < 1e-9


def test_records_average_rounds_half_up():
    assert records.average_text([80, 85]) == "82.5"
    assert records.average_text([1, 2, 2, 2]) == "1.8"  # 1.75 -> 1.8
    assert records.average_text([70, 71, 71]) == "70.7"


def test_records_short_context_keeps_group_small(tiny_tokenizer):
    for e in records.generate(SPEC, "train", 6, 256, None, 1, tiny_tokenizer, subtask="aggregate"):
        assert abs(e.context_tokens - 256) <= 0.05 * 256


def test_records_long_context(tiny_tokenizer):
    (e,) = records.generate(SPEC, "test", 1, 65536, 0.25, 1, tiny_tokenizer, subtask="recall")
    recs = parse(e.context)
    assert len({r["id"] for r in recs}) == len(recs) > 900
    assert e.answer == expected(e.question, recs)[0]
    assert abs(e.context_tokens - 65536) <= 0.05 * 65536


def test_relation_pairs_and_aggregate_ops_are_recomputable_siblings(tiny_tokenizer):
    """ask_pairs / ask_all_ops (train/val): every sibling's answer, supporting chunks and grade spans
    recomputed from the parsed context; relation answers balanced within each context (both orders
    of every pair), so the yes/no prior cannot pay; the first row is the one-question example."""
    spec = RecordsSpec(ask_pairs=3, ask_all_ops=True)
    for sub, per in (("relation", 6), ("aggregate", 3)):
        rows = records.generate(spec, "train", 4, 512, None, 3, tiny_tokenizer, subtask=sub)
        plain = records.generate(SPEC, "train", 4, 512, None, 3, tiny_tokenizer, subtask=sub)
        assert [r.question for r in rows if "/ask" not in r.id] == [r.question for r in plain]
        by_ctx: dict = {}
        for e in rows:
            by_ctx.setdefault(tuple(e.context), []).append(e)
        assert len(by_ctx) == 4 and all(len(v) == per for v in by_ctx.values())
        for ctx, es in by_ctx.items():
            recs = parse(ctx)
            assert len({e.question for e in es}) == per
            for e in es:
                want, ids = expected(e.question, recs)
                assert e.answer == want
                chunks = [next(i for i, r in enumerate(recs) if r["id"] == x) for x in ids]
                assert sorted(chunks) == sorted(e.supporting_chunks)
                grades = {str(recs[c]["grade"]) for c in chunks}
                assert {ctx[s["chunk"]][s["start"]:s["end"]] for s in e.answer_spans} == grades
            if sub == "relation":
                assert sum(e.answer == "yes" for e in es) == per // 2
    (t,) = records.generate(spec, "test", 1, 512, 0.5, 3, tiny_tokenizer, subtask="relation")
    assert not t.extra["others"]  # the test asks what the benchmark asks, one question per context


def test_aggregate_ops_restrict_the_question(tiny_tokenizer):
    spec = RecordsSpec(aggregate_ops=["max"])
    assert all("highest" in e.question
               for e in records.generate(spec, "val", 8, 512, None, 4, tiny_tokenizer, subtask="aggregate"))
