"""Shared fixtures. `tiny_tokenizer`: one small byte-level BPE per test session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from perk.data.lexicon import all_words
    from perk.data.synth import sample_corpus
    from perk.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer") / "tiny"
    train_tokenizer(sample_corpus(400, 0), 1024, out, must_include=all_words())
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from perk.tokenizer import load_tokenizer

    return load_tokenizer(tiny_tokenizer_dir)
