"""Exposure text: random pairs over the training keys and every value word, reproducible per step."""
from __future__ import annotations

import re

import pytest

from perk.data import needle
from perk.data.lexicon import pool
from perk.meta.exposure import Exposure

_FACT = re.compile(needle.NEEDLE.replace(".", r"\.").replace("{key}", r"(\S+)").replace("{value}", r"(\S+)"))


class _Tok:
    pass


def _pairs(texts):
    return [m.groups() for t in texts for m in _FACT.finditer(t)]


def test_train_keys_only_and_values_of_every_split():
    ex = Exposure(_Tok(), "train", seed=3, rows=50, per_row=10)
    pairs = [p for s in range(20) for p in _pairs(ex.texts(s))]
    assert len(pairs) == 20 * 50 * 10
    keys, values = {k for k, _ in pairs}, {v for _, v in pairs}
    assert keys <= set(pool("key", "train"))
    assert not keys & (set(pool("key", "val")) | set(pool("key", "test")))
    assert len(values) > 0.9 * len(pool("value"))  # ~10k draws over every value word


def test_all_keys_includes_held_out_keys_and_text_is_a_function_of_step():
    ex = Exposure(_Tok(), "all", seed=3, rows=50, per_row=10)
    keys = {k for s in range(20) for k, _ in _pairs(ex.texts(s))}
    assert keys & set(pool("key", "test"))
    assert ex.texts(7) == Exposure(_Tok(), "all", seed=3, rows=50, per_row=10).texts(7)
    assert ex.texts(7) != ex.texts(8)


def test_bad_key_choice_is_named():
    with pytest.raises(ValueError, match="exposure keys"):
        Exposure(_Tok(), "some")


def test_loss_leaves_the_tokenizer_unpadded(tiny_tokenizer):
    import torch

    from perk.config import ModelConfig
    from perk.model import load_model

    lm = load_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), tiny_tokenizer)
    loss = Exposure(tiny_tokenizer, "train", rows=3).loss(lm, 0)
    assert torch.isfinite(loss) and float(loss) > 0
    assert tiny_tokenizer.backend_tokenizer.padding is None  # token counts elsewhere stay exact


def test_padding_does_not_change_the_loss(tiny_tokenizer):
    import torch

    from perk.config import ModelConfig
    from perk.model import load_model

    torch.manual_seed(0)
    lm = load_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), tiny_tokenizer)
    texts = ["One of the special magic words for apple is river.",
             "One of the special magic words for stone is cloud. One of the special magic words for x is y."]

    class Fixed(Exposure):
        def __init__(self, rows):
            super().__init__(tiny_tokenizer, "train")
            self.rows_ = rows

        def texts(self, step):
            return self.rows_

    n = [len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) - 1 for t in texts]  # predicted tokens
    assert n[0] != n[1]
    with torch.no_grad():
        both = Fixed(texts).loss(lm, 0)
        alone = [Fixed([t]).loss(lm, 0) for t in texts]
    expected = (alone[0] * n[0] + alone[1] * n[1]) / sum(n)
    assert torch.allclose(both, expected, atol=1e-5), (both, expected)
