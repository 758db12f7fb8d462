import re

import pytest
from data_helpers import context_tokens

from perk.config import RetrievalSpec
from perk.data import retrieval

SPEC = RetrievalSpec()
DOC = re.compile(r"The API to (?P<purpose>.+?) is (?P<name>\w+)\. Parameters: ([\w, ]+)\. Returns: ([\w ]+)\.")


@pytest.mark.parametrize("sub", SPEC.subtasks)
@pytest.mark.parametrize("length", [512, 2048])
def test_retrieval_gold_found_by_parsing(tiny_tokenizer, sub, length):
    for e in retrieval.generate(SPEC, "test", 5, length, None, 4, tiny_tokenizer, subtask=sub):
        docs = [DOC.fullmatch(c) for c in e.context]
        assert all(docs), "every chunk is one API document"
        purpose = re.fullmatch(r"Which API should be used to (.+)\?", e.question).group(1)
        gold = [i for i, m in enumerate(docs) if m.group("purpose") == purpose]
        assert len(gold) == 1 and docs[gold[0]].group("name") == e.answer
        assert len({m.group("name") for m in docs}) == len(docs)
        assert e.supporting_chunks == gold and e.answer_prefix == f"The API to {purpose} is"
        n = len(docs)
        want = {"first": 0, "middle": round(0.5 * (n - 1)), "last": n - 1}.get(sub)
        if want is not None:
            assert gold[0] == want
        # hard negatives: some distractor shares all but one part of the purpose
        words = purpose.split()
        assert any(sum(a == b for a, b in zip(words, m.group("purpose").split())) >= len(words) - 1
                   for i, m in enumerate(docs) if i != gold[0])
        total = context_tokens(tiny_tokenizer, e.context)
        assert total == e.context_tokens and abs(total - length) <= 0.05 * length
        assert abs(e.depths[0] - context_tokens(tiny_tokenizer, e.context[:gold[0]]) / total) < 1e-9


def test_retrieval_names_from_split(tiny_tokenizer):
    from perk.data.lexicon import pool
    for e in retrieval.generate(SPEC, "train", 4, 512, None, 4, tiny_tokenizer):
        for c in e.context:
            parts = DOC.fullmatch(c).group("name").split("_")
            assert len(parts) in (2, 3) and all(p in pool("api", "train") for p in parts)


def test_retrieval_shared_name_pool_lets_test_names_come_from_every_split(tiny_tokenizer):
    from perk.data.lexicon import pool
    test_codes = {p for e in retrieval.generate(RetrievalSpec(name_pool="shared"), "test", 8, 1024, None, 4,
                                                tiny_tokenizer) for c in e.context
                  for p in DOC.fullmatch(c).group("name").split("_")}
    assert test_codes <= set(pool("api")) and test_codes & set(pool("api", "train"))  # train names appear at test
    split = {p for e in retrieval.generate(SPEC, "test", 8, 1024, None, 4, tiny_tokenizer) for c in e.context
             for p in DOC.fullmatch(c).group("name").split("_")}
    assert split <= set(pool("api", "test"))


def test_retrieval_long_context_keeps_names_unique(tiny_tokenizer):
    (e,) = retrieval.generate(SPEC, "test", 1, 65536, None, 1, tiny_tokenizer, subtask="random")
    names = [DOC.fullmatch(c).group("name") for c in e.context]
    assert len(names) == len(set(names)) > 900
    assert abs(e.context_tokens - 65536) <= 0.05 * 65536


@pytest.mark.parametrize("hard", [0.0, 0.7, 1.0])
def test_retrieval_hard_negatives_fraction(tiny_tokenizer, hard):
    near = total = 0
    for e in retrieval.generate(RetrievalSpec(hard_negatives=hard), "train", 4, 2048, None, 5, tiny_tokenizer):
        # "verb the adj noun of a(n) obj": the four parts (the article follows the object)
        docs = [[w for i, w in enumerate(DOC.fullmatch(c).group("purpose").split()) if i in (0, 2, 3, 6)]
                for c in e.context]
        gold = docs[e.supporting_chunks[0]]
        others = [d for i, d in enumerate(docs) if i != e.supporting_chunks[0]]
        near += sum(sum(a == b for a, b in zip(gold, d)) >= len(gold) - 1 for d in others)
        total += len(others)
    # a random purpose shares 3 of 4 words with the gold one only by chance (pools of ~30+ words)
    assert {0.0: near / total < 0.05, 0.7: 0.55 < near / total < 0.85, 1.0: near == total}[hard], near / total
