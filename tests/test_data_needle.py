import re

import pytest
from data_helpers import context_tokens, fact_offset

from perk.config import NeedleSpec
from perk.data import needle

SPEC = NeedleSpec(num_keys=4, num_values=3, num_queries=2, chunk_tokens=64)
NEEDLE_RE = re.compile(r"One of the special magic words for (\w+) is (\w+)\.")


@pytest.mark.parametrize("sub", SPEC.subtasks)
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0, None])
def test_needle_answer_depth_and_length(tiny_tokenizer, sub, depth):
    examples = needle.generate(SPEC, "test", 3, 1024, depth, 11, tiny_tokenizer, subtask=sub)
    for e in examples:
        text = " ".join(e.context)
        total = context_tokens(tiny_tokenizer, e.context)
        assert total == e.context_tokens and abs(total - 1024) <= 0.05 * 1024
        if sub == "passkey":
            found = re.findall(r"The pass key is (\d+)\. Remember it\. (\d+) is the pass key\.", text)
            assert len(found) == 1 and found[0][0] == found[0][1] == e.answer
            assert (e.question, e.answer_prefix) == ("What is the pass key?", "The pass key is")
        else:
            needles = NEEDLE_RE.findall(text)
            values = {}
            for k, v in needles:
                values.setdefault(k, []).append(v)
            assert len({v for _, v in needles}) == len(needles)  # values distinct
            if sub in ("single", "multikey"):
                key = re.fullmatch(r"What is the special magic word for (\w+) mentioned in the provided text\?",
                                   e.question).group(1)
                assert e.answer_prefix == f"The special magic word for {key} is"
                assert [e.answer] == values[key]
                assert len(needles) == (1 if sub == "single" else SPEC.num_keys) == len(values)
            else:
                keys = re.fullmatch(r"What are all the special magic words for (.+) mentioned in the provided "
                                    r"text\?", e.question).group(1)
                assert e.answer_prefix == f"The special magic words for {keys} are"
                if sub == "multivalue":
                    assert e.answer == ", ".join(values[keys]) and len(values[keys]) == SPEC.num_values
                else:
                    asked = keys.split(", ")
                    assert len(asked) == SPEC.num_queries and all(len(values[k]) == 1 for k in values)
                    assert e.answer == ", ".join(values[k][0] for k in asked)
        # supporting facts are in context order, in their chunks, and the asked one is at the depth
        starts = []
        for fact, chunk in zip(e.supporting_facts, e.supporting_chunks):
            c, start = fact_offset(tiny_tokenizer, e.context, fact)
            assert c == chunk
            starts.append(start)
        assert starts == sorted(starts)
        assert [round(s / total, 9) for s in starts] == [round(d, 9) for d in e.depths]
        if depth is not None:
            anchor_start = e.extra["anchor_depth"] * total
            assert abs(anchor_start - depth * total) <= SPEC.chunk_tokens
            assert e.target_depth == depth


def test_needle_keys_and_values_come_from_the_split_pool(tiny_tokenizer):
    from perk.data.lexicon import pool
    for split in ("train", "test"):
        for e in needle.generate(SPEC, split, 10, 512, None, 3, tiny_tokenizer, subtask="multikey"):
            for k, v in NEEDLE_RE.findall(" ".join(e.context)):
                assert k in pool("key", split) and v in pool("value")  # values shared, keys held out


def test_multikey_train_rows_ask_every_key(tiny_tokenizer):
    import re

    from perk.config import NeedleSpec
    from perk.data import needle

    spec = NeedleSpec(subtasks=["multikey"], num_keys=4, chunk_tokens=64, train_lengths=[256], eval_lengths=[2048])
    rows = [e.row() for e in needle.generate(spec, "train", 3, 256, None, 7, tiny_tokenizer)]
    assert len(rows) == 12
    by_context = {}
    for r in rows:
        by_context.setdefault(tuple(r["context"]), []).append(r)
    assert len(by_context) == 3
    for ctx, rs in by_context.items():
        text = " ".join(ctx)
        facts = dict(re.findall(r"special magic words for (\S+) is (\S+)\.", text))
        asked = {re.search(r"for (\S+) mentioned", r["question"]).group(1): r["answer"] for r in rs}
        assert asked == facts  # every key asked once, each with its own value
        for r in rs:
            assert r["supporting_facts"][0] in ctx[r["supporting_chunks"][0]]
    test = needle.generate(spec, "test", 2, 256, 0.5, 7, tiny_tokenizer)
    assert len(test) == 2  # test rows ask only the needle placed at the requested depth


@pytest.mark.parametrize("sub", ["multivalue", "multiquery"])
def test_sorted_answer_order(tiny_tokenizer, sub):
    """value_order=sorted: the same contexts and question, the answer's values alphabetical; facts,
    spans and depths stay in context order (the weighting net's labels do not move)."""
    ctx = needle.generate(SPEC, "val", 6, 512, None, 5, tiny_tokenizer, subtask=sub)
    srt = needle.generate(SPEC.model_copy(update={"value_order": "sorted"}), "val", 6, 512, None, 5,
                          tiny_tokenizer, subtask=sub)
    unsorted_seen = False
    for a, b in zip(ctx, srt):
        assert a.context == b.context and a.question == b.question
        assert a.fact_spans == b.fact_spans and a.depths == b.depths
        in_text = [NEEDLE_RE.search(f).group(2) for f in a.supporting_facts]
        assert a.answer == ", ".join(in_text)  # default: context order
        assert b.answer == ", ".join(sorted(in_text))
        unsorted_seen |= in_text != sorted(in_text)
    assert unsorted_seen  # the check above could not pass by chance on already-sorted contexts
