import re

import pytest
from data_helpers import context_tokens, fact_offset, sentences

from perk.config import BabilongSpec
from perk.data import babilong

SPEC = BabilongSpec(num_facts=10, chunk_tokens=64)
PATTERNS = [
    ("move", re.compile(r"(\w+) (?:moved|went|journeyed|travelled) to the (\w+)\.")),
    ("grab", re.compile(r"(\w+) (?:picked up|got|grabbed|took) the (\w+) there\.")),
    ("drop", re.compile(r"(\w+) (?:dropped|discarded|put down|left) the (\w+)\.")),
    ("give", re.compile(r"(\w+) (?:gave|handed|passed) the (\w+) to (\w+)\.")),
]


def replay(sents):
    """An independent bAbI world: locations, holders, and each object's room history."""
    loc, holder, placed, hist = {}, {}, {}, {}
    n = 0
    for s in sents:
        for kind, pat in PATTERNS:
            m = pat.fullmatch(s)
            if not m:
                continue
            n += 1
            if kind == "move":
                p, room = m.groups()
                loc[p] = room
                for o, h in holder.items():
                    if h == p:
                        hist.setdefault(o, []).append(room)
            elif kind == "grab":
                p, o = m.groups()
                holder[o] = p
                placed.pop(o, None)
                if p in loc and (not hist.get(o) or hist[o][-1] != loc[p]):
                    hist.setdefault(o, []).append(loc[p])
            elif kind == "drop":
                p, o = m.groups()
                holder.pop(o, None)  # support alone may omit the pick-up
                placed[o] = loc.get(p)
            else:
                _, o, q = m.groups()
                holder[o] = q
            break
    return loc, holder, placed, hist, n


def answer(question, world):
    loc, holder, placed, hist, _ = world
    if m := re.fullmatch(r"Where is (\w+)\?", question):
        return loc.get(m.group(1))
    if m := re.fullmatch(r"Where is the (\w+)\?", question):
        o = m.group(1)
        return loc.get(holder[o]) if o in holder else placed.get(o)
    m = re.fullmatch(r"Where was the (\w+) before the (\w+)\?", question)
    h = hist.get(m.group(1), [])
    assert h.count(m.group(2)) == 1
    k = h.index(m.group(2))
    return h[k - 1] if k > 0 else None


@pytest.mark.parametrize("sub,n_support", [("qa1", 1), ("qa2", 2), ("qa3", 3)])
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0, None])
def test_babilong_answer_replays_from_context_and_from_support(tiny_tokenizer, sub, n_support, depth):
    for e in babilong.generate(SPEC, "test", 4, 1024, depth, 5, tiny_tokenizer, subtask=sub):
        full = replay(sentences(e.context))
        assert full[4] == SPEC.num_facts  # the whole story, nothing from filler
        assert answer(e.question, full) == e.answer
        assert len(e.supporting_facts) == n_support
        assert answer(e.question, replay(e.supporting_facts)) == e.answer
        total = context_tokens(tiny_tokenizer, e.context)
        assert total == e.context_tokens and abs(total - 1024) <= 0.05 * 1024
        starts = [fact_offset(tiny_tokenizer, e.context, f) for f in e.supporting_facts]
        assert [c for c, _ in starts] == e.supporting_chunks
        assert [s for _, s in starts] == sorted(s for _, s in starts)
        assert [round(s / total, 9) for _, s in starts] == [round(d, 9) for d in e.depths]
        if depth is not None:
            # the last supporting fact is at the depth; story sentences it must follow/precede
            # can push it by at most their length
            slack = SPEC.chunk_tokens + 12 * SPEC.num_facts
            assert abs(starts[-1][1] - depth * total) <= slack


def test_babilong_story_is_in_order_and_names_from_split(tiny_tokenizer):
    from perk.data.lexicon import pool
    for e in babilong.generate(SPEC, "val", 6, 512, None, 2, tiny_tokenizer):
        story = [s for s in sentences(e.context) if any(p.fullmatch(s) for _, p in PATTERNS)]
        assert story == e.extra["story"]
        for s in story:
            assert s.split()[0] in pool("person", "val")
