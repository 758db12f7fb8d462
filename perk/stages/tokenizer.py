"""Stage `tokenizer`: the tiny profile's tokenizer, or a named model's own."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import Stage


def tokenizer(p: Params, progress: bool = True) -> Path:
    """Train the tiny profile's BPE on generator text (every lexicon word one token), or copy a
    named model's tokenizer, into tokenizer.out_dir."""
    from ..tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    if p.model.name == "tiny":
        from ..data.lexicon import all_words
        from ..data.synth import sample_corpus

        from ..data.imports.tasks import corpus_texts

        # imports.tokenizer_texts > 0: the imported benchmarks' own text too (read from the sources)
        texts = sample_corpus(p.tokenizer.corpus_texts, seed=p.synth.seed) + corpus_texts(p, p.imports.tokenizer_texts, p.seed)
        train_tokenizer(texts, p.tokenizer.vocab_size, p.tokenizer.out_dir, must_include=all_words(),
                        digit_group=p.tokenizer.digit_group)
    else:
        save_tokenizer(load_tokenizer(p.model.name), p.tokenizer.out_dir)
    return Path(p.tokenizer.out_dir)


STAGE = Stage("tokenizer", tokenizer)
