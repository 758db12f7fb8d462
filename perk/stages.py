"""One function per pipeline stage, `stage(params) -> outputs`.

The CLI, dvc.yaml and the Prefect flow all call these and nothing else, so the three ways of
running the pipeline cannot drift apart. Each stage writes its outputs atomically.
"""
from __future__ import annotations

from pathlib import Path

from .config import Params


def tokenizer(p: Params) -> Path:
    """Train the tiny profile's tokenizer, or copy a named model's tokenizer, into tokenizer.out_dir."""
    from .tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    if p.model.name == "tiny":
        from .data.lexicon import all_words
        from .data.synth import sample_corpus

        texts = sample_corpus(p.tokenizer.corpus_texts, seed=p.synth.seed)
        train_tokenizer(texts, p.tokenizer.vocab_size, p.tokenizer.out_dir, must_include=all_words())
    else:
        save_tokenizer(load_tokenizer(p.model.name), p.tokenizer.out_dir)
    return Path(p.tokenizer.out_dir)


def synth(p: Params, progress: bool = True) -> dict[str, Path]:
    """Synthesize every enabled task family into {synth.out_dir}/{task}/{split}.parquet."""
    from .data.synth import synthesize
    from .tokenizer import load_tokenizer

    tok = load_tokenizer(p.tokenizer.out_dir)
    return synthesize(p.synth, tok, p.synth.out_dir, progress=progress)


# Pipeline order; the Prefect flow and `perk run` walk this table. Later stages register here.
STAGES = {
    "tokenizer": tokenizer,
    "synth": synth,
}
