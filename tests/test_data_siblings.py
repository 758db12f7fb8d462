"""Several questions per context in train/val (the other families' analogue of needle's
ask_all_keys): the first row is the example a single question gets, siblings share its context,
their recorded spans hold their own answer, and test data is unchanged."""
import pytest

from perk.config import BabilongSpec, RecordsSpec, RetrievalSpec
from perk.data import babilong, records, retrieval

CASES = [
    (babilong, BabilongSpec(subtasks=["qa1"], ask_all=False), BabilongSpec(subtasks=["qa1"], ask_all=True)),
    (records, RecordsSpec(subtasks=["recall"], ask_records=0), RecordsSpec(subtasks=["recall"], ask_records=3)),
    (retrieval, RetrievalSpec(subtasks=["random"]), RetrievalSpec(subtasks=["random"], ask_docs=4)),
]


@pytest.mark.parametrize("mod,off,on", CASES, ids=lambda x: getattr(x, "__name__", ""))
def test_siblings_ask_the_same_context_and_leave_test_alone(tiny_tokenizer, mod, off, on):
    one = mod.generate(off, "train", 3, 512, None, 2, tiny_tokenizer)
    many = mod.generate(on, "train", 3, 512, None, 2, tiny_tokenizer)
    firsts = [e for e in many if "/ask" not in e.id]
    assert [e.row() for e in firsts] == [e.row() for e in one]
    assert len(many) > len(one)
    by_ctx = {tuple(e.context): e.id for e in firsts}
    for e in many:
        assert tuple(e.context) in by_ctx and e.id.startswith(by_ctx[tuple(e.context)])
        texts = [e.context[s["chunk"]][s["start"]:s["end"]] for s in e.answer_spans]
        assert e.answer in texts or ", ".join(texts) == e.answer
    qs = [(tuple(e.context), e.question) for e in many]
    assert len(set(qs)) == len(qs), "no question asked twice about one context"
    assert ([e.row() for e in mod.generate(on, "test", 2, 512, None, 2, tiny_tokenizer)]
            == [e.row() for e in mod.generate(off, "test", 2, 512, None, 2, tiny_tokenizer)])


def test_gold_question_only_with_every_documents_spans(tiny_tokenizer):
    """The position protocol's training (max_questions 1, spans_of context): each episode asks only
    the context's first (gold) question, while the weighting net's mask still covers every asked
    document's name; the baseline's rows are the same first questions."""
    from perk.meta.trainer import make_episodes
    from perk.prompts import first_questions

    rows = [e.row() for e in retrieval.generate(RetrievalSpec(subtasks=["first"], ask_docs=64), "train", 3, 512,
                                                None, 2, tiny_tokenizer)]
    gold = [r for r in rows if "/ask" not in r["id"]]
    assert len(rows) > 2 * len(gold) and first_questions(rows, 1) == gold and first_questions(rows, 0) == rows
    every = make_episodes(rows, tiny_tokenizer)
    only = make_episodes(rows, tiny_tokenizer, max_questions=1)
    both = make_episodes(rows, tiny_tokenizer, max_questions=1, spans_of="context")
    assert [e.questions["input_ids"].shape[0] for e in only] == [1] * len(gold)
    assert [e.questions["input_ids"].shape[0] for e in both] == [1] * len(gold)
    assert [int(e.questions["input_ids"].shape[0]) for e in every] == [sum(r["context"] == g["context"] for r in rows)
                                                                      for g in gold]
    for a, o, b in zip(every, only, both):
        assert (b.questions["input_ids"] == o.questions["input_ids"]).all()
        assert (b.chunks["support_mask"] == a.chunks["support_mask"]).all()  # every name labelled
        assert int(o.chunks["support_mask"].sum()) < int(b.chunks["support_mask"].sum())  # the gold name only
        assert o.chunks["support_mask"].any(1).nonzero().flatten().tolist() == [0]  # gold at `first`: chunk 0


@pytest.mark.parametrize("sub,band", [("first", [0, 1, 2, 3]), ("last", None)])
def test_nearest_order_asks_the_gold_document_and_its_neighbours(tiny_tokenizer, sub, band):
    from perk.meta.trainer import make_episodes
    from perk.prompts import first_questions, group_by_context

    rows = [e.row() for e in retrieval.generate(RetrievalSpec(subtasks=[sub], ask_docs=64), "train", 3, 512,
                                                None, 2, tiny_tokenizer)]
    kept = first_questions(rows, 4, "nearest")
    for ctx, rs in group_by_context(kept).items():
        gold = rs[0]
        assert "/ask" not in gold["id"] and len(rs) == 4
        chunks = [r["supporting_chunks"][0] for r in rs]
        n = len(ctx)
        assert sorted(chunks) == (band if band else [n - 4, n - 3, n - 2, n - 1])
        dist = [abs(c - chunks[0]) for c in chunks]
        assert dist == sorted(dist)  # nearest first
    eps = make_episodes(rows, tiny_tokenizer, max_questions=4, order="nearest")
    assert [int(e.questions["input_ids"].shape[0]) for e in eps] == [4] * len(eps)
