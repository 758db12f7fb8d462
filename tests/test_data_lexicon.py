import hashlib
import random

import pytest

from perk.data import lexicon


def test_kinds_are_disjoint_and_words_are_single_words():
    seen = {}
    for kind, words in lexicon.KINDS.items():
        assert len(words) == len(set(words)), kind
        for w in words:
            assert w not in seen, f"{w!r} in {seen.get(w)} and {kind}"
            assert " " not in w and w.replace("_", "").isalpha(), w
            seen[w] = kind


def test_split_pools_partition_each_split_kind():
    for kind in lexicon.SPLIT_KINDS:
        parts = [set(lexicon.pool(kind, s)) for s in ("train", "val", "test")]
        assert set().union(*parts) == set(lexicon.KINDS[kind])
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
        assert all(len(p) >= 25 for p in parts), (kind, [len(p) for p in parts])


def test_split_is_a_stable_hash_not_pythons_hash():
    # Recomputed independently: blake2b over "kind:word".
    for kind in lexicon.SPLIT_KINDS:
        for w in lexicon.KINDS[kind][:20]:
            u = int.from_bytes(hashlib.blake2b(f"{kind}:{w}".encode(), digest_size=8).digest(), "big") / 2 ** 64
            want = "train" if u < 0.6 else "val" if u < 0.8 else "test"
            assert w in lexicon.pool(kind, want)


def test_shared_kinds_ignore_split_and_all_words():
    assert lexicon.pool("room", "test") == lexicon.pool("room", "train") == lexicon.KINDS["room"]
    words = lexicon.all_words()
    assert words == sorted(set(words)) and 1000 <= len(words) <= 2500


def test_bad_requests():
    with pytest.raises(KeyError, match="unknown word kind"):
        lexicon.pool("nope")
    with pytest.raises(ValueError, match="split"):
        lexicon.pool("key", "dev")
    with pytest.raises(ValueError, match="pool has only"):
        lexicon.sample(random.Random(0), "key", "val", 10_000)
