"""chunk_batch: "Document i:" prefixes, loss mask, padding and supporting-span labels."""
from __future__ import annotations

import pytest

from perk.meta import chunk_batch


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from perk.tokenizer import train_tokenizer
    texts = ["One of the special magic words for apple is bitter. The cat sat on the mat."] * 50
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"), must_include=["apple", "bitter", "cat"])


def test_prefix_mask_and_support_spans(tok):
    chunks = ["The cat sat. One of the special magic words for apple is bitter.", "The cat sat on the mat."]
    fact = "One of the special magic words for apple is bitter."
    s = chunks[0].index("bitter")
    out = chunk_batch(tok, chunks, supports=[[(s, s + len("bitter"))], []])
    ids, lm, sm, att = out["input_ids"], out["loss_mask"], out["support_mask"], out["attention_mask"]
    assert ids.shape[0] == 2 and ids.shape == lm.shape == sm.shape == att.shape
    head = tok("Document 1:", add_special_tokens=False)["input_ids"]
    assert ids[0, :len(head)].tolist() == head and lm[0, :len(head)].sum() == 0
    # the support mask marks exactly the tokens of "bitter" and nothing in chunk 2
    marked = tok.decode(ids[0][sm[0].bool()].tolist())
    assert marked.strip() == "bitter"
    assert sm[1].sum() == 0
    # padding: the shorter chunk is padded, masked out of attention and loss
    n2 = int(att[1].sum())
    assert n2 < ids.shape[1] and lm[1, n2:].sum() == 0
    assert tok.decode(ids[1, :n2].tolist()).startswith("Document 2:")
    full = chunk_batch(tok, [fact], supports=[[(0, len(fact))]])
    # every body token but a lone leading space (which belongs to no word) is supporting
    assert full["loss_mask"].sum() - 1 <= full["support_mask"].sum() <= full["loss_mask"].sum()


def test_shuffled_document_indices_are_a_fixed_permutation_per_context(tok):
    """meta_train.shuffle_index (POSITION.md P5): training numbers a context's chunks by a permutation
    of 1..n drawn per context, the same one on every build (resume); by default 1..n in order."""
    from perk.meta.trainer import make_episodes

    def heads(ep):
        return [tok.decode(row.tolist()).replace(" ", "").split(":")[0] for row in ep.chunks["input_ids"]]

    rows = [{"id": f"r{k}", "context": [f"The cat sat {j}." for j in range(8)], "question": "Where?",
             "answer": "mat", "answer_spans": [], "fact_spans": []} for k in range(3)]
    rows = [dict(r, context=[f"{c} {r['id']}" for c in r["context"]]) for r in rows]  # three contexts
    plain = make_episodes(rows, tok)
    assert [heads(ep) for ep in plain] == [[f"Document{i}" for i in range(1, 9)]] * 3
    shuffled = make_episodes(rows, tok, shuffle_index=True)
    again = make_episodes(rows, tok, shuffle_index=True)
    perms = [heads(ep) for ep in shuffled]
    assert perms == [heads(ep) for ep in again]
    assert all(sorted(p, key=lambda h: int(h[len("Document"):])) == heads(plain[0]) for p in perms)
    assert len({tuple(p) for p in perms}) > 1 and all(p != heads(plain[0]) for p in perms)
