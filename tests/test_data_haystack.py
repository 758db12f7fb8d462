import random
import re
from collections import Counter, defaultdict

import pytest
from data_helpers import context_tokens, fact_offset

from perk.data import lexicon
from perk.data.haystack import FillerBank, TokenCounter, assemble, stable_seed

FACTS = ["One of the special magic words for anvil is harmony.",
         "Zoe went to the kitchen.",
         "The pass key is 12345. Remember it. 12345 is the pass key."]


def test_stable_seed():
    assert stable_seed(1, "a", 0.5) == stable_seed(1, "a", 0.5)
    assert stable_seed(1, "a", 0.5) != stable_seed(2, "a", 0.5)
    assert 0 <= stable_seed("x") < 2 ** 63


@pytest.fixture(scope="module")
def bank(tiny_tokenizer):
    return FillerBank.get(7, "train", TokenCounter(tiny_tokenizer))


def test_filler_shares_vocabulary_of_its_split_only(bank):
    words = Counter(w for s in bank.sentences for w in re.findall(r"[A-Za-z]+", s))
    for kind in ("key", "person"):
        assert sum(words[w] for w in lexicon.pool(kind, "train")) > 100, kind
        assert not any(words[w] for w in lexicon.pool(kind, "test")), kind
    assert sum(words[w] for w in lexicon.pool("value")) > 100  # values: one pool shared by all splits
    text = " ".join(bank.sentences)
    assert "magic" not in text and "pass key" not in text and "Student record" not in text
    # No bAbI action verbs in filler (they would change the story).
    assert not re.search(r"\b(went|journeyed|travelled|moved|picked up|grabbed|dropped|discarded|gave|handed)\b", text)


def test_filler_has_learnable_structure(bank):
    # After an adjective, the next noun is mostly one of a few preferred nouns (uniform: 3/113).
    adjectives, nouns = set(lexicon.pool("adjective")), set(lexicon.pool("noun"))
    follow = defaultdict(Counter)
    for s in bank.sentences:
        toks = re.findall(r"[a-z]+", s)
        for a, b in zip(toks, toks[1:]):
            if a in adjectives and b in nouns:
                follow[a][b] += 1
    shares = [sum(c for _, c in cnt.most_common(3)) / sum(cnt.values())
              for cnt in follow.values() if sum(cnt.values()) >= 20]
    assert len(shares) > 20 and sum(shares) / len(shares) > 0.5


@pytest.mark.parametrize("target", [256, 1024, 4096])
@pytest.mark.parametrize("depths", [[0.0, 0.5, 1.0], [1.0, 0.25, 0.75]])
def test_assemble_places_facts_at_depth_in_whole_chunks(tiny_tokenizer, bank, target, depths):
    counter = TokenCounter(tiny_tokenizer)
    hay = assemble(FACTS, depths, target, 64, bank, random.Random(target), counter)
    total = context_tokens(tiny_tokenizer, hay.chunks)
    assert total == hay.total_tokens
    assert abs(total - target) <= 0.05 * target
    for chunk in hay.chunks:
        assert chunk.endswith(".")  # boundaries at sentence ends
        n = context_tokens(tiny_tokenizer, [chunk])
        assert n <= 64 or any(f == chunk for f in FACTS)
    for i, fact in enumerate(FACTS):
        chunk, start = fact_offset(tiny_tokenizer, hay.chunks, fact)
        assert chunk == hay.fact_chunks[i] and start == hay.fact_starts[i]
        assert abs(hay.fact_depths[i] - start / total) < 1e-9
        assert abs(start - depths[i] * total) <= 64, (fact, start, depths[i] * total)
    assert [FACTS[i] for i in hay.order] == sorted(FACTS, key=lambda f: depths[FACTS.index(f)])


def test_assemble_refuses_a_target_too_short(tiny_tokenizer, bank):
    with pytest.raises(ValueError, match="cannot hold"):
        assemble(FACTS, [0.1, 0.2, 0.3], 20, 64, bank, random.Random(0), TokenCounter(tiny_tokenizer))
