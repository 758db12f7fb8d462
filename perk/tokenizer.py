"""Tokenizers: a byte-level BPE trained locally for the tiny profile, or a named HF model's own.

The tiny tokenizer splits digits individually by default (numbers of any size stay representable
and arithmetic-like answers tokenize predictably), or into runs of up to `digit_group` digits read
left to right, each run one token (a 7-digit value: 3 tokens instead of 7). It is saved with
`save_pretrained`, so the rest of the pipeline loads every tokenizer the same way:
`AutoTokenizer.from_pretrained(dir)`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

# Each digit run is added this often: frequent enough that its merges come before the rarest text
# merges (6,144 tokens trained with 1,000 RULER texts: 3 repeats, as for lexicon words, left 867
# of the 1,100 runs split, 10 left 603, 30 left 41), yet a small share of the corpus.
GROUP_REPEATS = 30
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path,
                    must_include: Iterable[str] = (), digit_group: int = 1):
    """Train a byte-level BPE on `texts` and save it (atomically) as an HF tokenizer in `out_dir`.

    `must_include` words are added to the corpus with high frequency so each becomes one token
    (with its leading space), which keeps keys/values/names single tokens for the tiny model.
    `digit_group` > 1: numbers are cut into runs of that many digits (the last run shorter), and
    every run of 1..digit_group digits is put in the vocabulary the same way.
    """
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    if digit_group == 1:
        digits = pre_tokenizers.Digits(individual_digits=True)
    else:
        digits = pre_tokenizers.Split(Regex(rf"\d{{1,{digit_group}}}"), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        digits,
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    words = sorted(set(must_include))
    groups = [f"{n:0{k}d}" for k in range(2, digit_group + 1) for n in range(10 ** k)]

    def corpus():
        yield from texts
        for _ in range(3):  # each lexicon word seen often enough, with and without leading space
            for i in range(0, len(words), 64):
                yield " ".join(words[i:i + 64])
        for _ in range(GROUP_REPEATS):  # a space between groups: each is a pretoken of its own
            for i in range(0, len(groups), 64):
                yield " ".join(groups[i:i + 64])
    tok.train_from_iterator(corpus(), trainer=trainer)
    split = [g for g in groups if len(tok.encode(g).ids) != 1]
    if split:  # the vocabulary filled before these merges: a number would tokenize unevenly
        raise ValueError(f"tokenizer.digit_group={digit_group}: {len(split)} of the {len(groups)} digit runs "
                         f"(e.g. {split[0]!r}) are not one token at tokenizer.vocab_size={vocab_size}; "
                         f"raise vocab_size by about {len(split) + 64}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.model_max_length = 1 << 30  # lengths are bounded by the model, not the tokenizer
    save_tokenizer(fast, out_dir)
    return fast


def byte_tokenizer(out_dir: str | Path | None = None):
    """A byte-level tokenizer with no merges: 256 byte tokens + the special tokens, no training.

    For shape-only models (perk/shapes.py): any text tokenizes, every id fits a large vocab, and it
    costs nothing to build where no tokenizer can be downloaded. Saved to `out_dir` when given.
    """
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(list(SPECIAL_TOKENS.values()) + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS.values()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.model_max_length = 1 << 30
    if out_dir is not None:
        save_tokenizer(fast, out_dir)
    return fast


def save_tokenizer(tokenizer, out_dir: str | Path) -> Path:
    """save_pretrained into a temp dir, then swap it into place."""
    from .data.io import atomic_dir

    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def load_tokenizer(name_or_dir: str | Path):
    """Load a saved tokenizer directory, or a named HF model's tokenizer from the local cache only."""
    from transformers import AutoTokenizer

    from .guarded import fail

    saved = Path(name_or_dir)
    if saved.is_dir() and (saved / "tokenizer.json").exists():
        # a directory `perk tokenizer` wrote: any failure means the files are damaged, and the
        # tokenizers library raises plain Exceptions (e.g. on cut-off JSON), so catch them all here
        try:
            tok = AutoTokenizer.from_pretrained(str(saved), local_files_only=True)
        except Exception as err:  # noqa: BLE001
            raise fail(saved / "tokenizer.json", "a readable tokenizer", err, stage="tokenizer") from None
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"no tokenizer at {name_or_dir!r}: looked for a local directory and in the HF cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}); this machine cannot download. "
            f"Provide a directory saved with save_pretrained, or run `perk tokenizer` for the tiny "
            f"profile. ({err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if tok.pad_token is None:  # GPT-2-like tokenizers have no pad token
        tok.pad_token = tok.eos_token
    return tok


def counter(tokenizer):
    """A fast `count(text) -> int` of tokens without special tokens."""
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return count
