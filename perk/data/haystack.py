"""Offline haystack text and the context assembler shared by the prose families.

Filler is English-like text from a small probabilistic grammar over the lexicon. It mentions
the same people, keys and values the facts use (so facts cannot be found by vocabulary alone)
and has learnable structure: each noun prefers a few adjectives and verbs, each verb a few
objects, so a language model trained on it can form previous-token/induction circuits.

Token counting is the hot path. Filler sentences come from a per-(seed, split) bank counted once
in one batch; a context's length is then the sum of its sentences' counts (exact for the
byte-level BPE tokenizers used here, where a leading space starts a new pre-token).
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .lexicon import pool

BANK_SIZE = 6000


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts; stable across processes and Python versions."""
    text = "\x1f".join(repr(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


# ---------------------------------------------------------------- token counting

_APPROX = re.compile(r"\d|[^\W\d]+|[^\w\s]")


def approx_count(text: str) -> int:
    """Rough token count (words, single digits, punctuation) for use before a tokenizer exists."""
    return len(_APPROX.findall(text))


class TokenCounter:
    """Counts tokens (no special tokens) of many texts at once, with a memo of texts seen."""

    def __init__(self, tokenizer=None, count: Callable[[str], int] | None = None):
        if tokenizer is None and count is None:
            raise ValueError("TokenCounter needs a tokenizer or a count function")
        self.tokenizer = tokenizer
        self._count = count
        self._backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer is not None else None
        self._memo: dict[str, int] = {}
        self.banks: dict = {}  # filler banks built with this counter, by (seed, split)

    def many(self, texts: Sequence[str]) -> list[int]:
        memo = self._memo
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            if len(memo) > 500_000:
                memo.clear()
            for t, n in zip(todo, self._raw(todo)):
                memo[t] = n
        return [memo[t] for t in texts]

    def _raw(self, texts: list[str]) -> list[int]:
        if self._backend is not None:
            return [len(e.ids) for e in self._backend.encode_batch(texts, add_special_tokens=False)]
        if self.tokenizer is not None:
            return [len(x) for x in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [self._count(t) for t in texts]

    def __call__(self, text: str) -> int:
        return self.many([text])[0]

    def pairs(self, units: Sequence[str]) -> tuple[list[int], list[int]]:
        """(count of " " + unit, count of unit): the unit inside a chunk and at a chunk start."""
        counts = self.many([" " + u for u in units] + list(units))
        return counts[:len(units)], counts[len(units):]


def as_counter(count_tokens) -> TokenCounter:
    """Accept a TokenCounter, an HF tokenizer, or a plain `count(text) -> int`."""
    if isinstance(count_tokens, TokenCounter):
        return count_tokens
    if count_tokens is None:
        return TokenCounter(count=approx_count)
    if hasattr(count_tokens, "backend_tokenizer") or hasattr(count_tokens, "encode"):
        return TokenCounter(tokenizer=count_tokens)
    if callable(count_tokens):
        return TokenCounter(count=count_tokens)
    raise TypeError(f"count_tokens must be a tokenizer, a TokenCounter or a callable, got {type(count_tokens)}")


# ---------------------------------------------------------------- grammar

def _assoc(word: str, kind: str, n: int = 3) -> tuple[int, ...]:
    """Indices of the n words of `kind` that `word` prefers (fixed by a stable hash)."""
    h = hashlib.blake2b(f"{word}>{kind}".encode(), digest_size=16).digest()
    return tuple(int.from_bytes(h[4 * i:4 * i + 4], "big") for i in range(n))


class Grammar:
    """A probabilistic sentence grammar with word-to-word preferences (a Markov flavour)."""

    TEMPLATES = (  # (weight, template); slots: A adj, N noun, V verb, P place, D adverb, S person,
        # K key, W value, R room, I item. Digits tell repeated slots apart.
        (6, "The {A1} {N1} {V1} the {A2} {N2} near the {P1}."),
        (5, "{S1} {V1} the {A1} {N1} {D1}."),
        (4, "The {N1} was {A1} and {A2}."),
        (4, "A {A1} {N1} {V1} a {K1} at the {P1}."),
        (3, "{S1} and {S2} {V1} the {N1} in the {P1}."),
        (3, "{S1} wrote the word {W1} on the {A1} {N1}."),
        (3, "It was {A1} {D1}."),
        (3, "The {N1} {V1} {D1}."),
        (2, "{S1} {V1} it."),
        (3, "Near the {P1}, the {A1} {N1} {V1} a {I1}."),
        (2, "The {R1} was {A1}."),
        (3, "Every {N1} in the {P1} {V1} the {K1} {D1}."),
        (2, "Later, {S1} {V1} the {K1} and the {N1}."),
        (2, "The {N1} of {S1} was called {W1}."),
    )
    KIND = {"A": "adjective", "N": "noun", "V": "verb", "P": "place", "D": "adverb", "S": "person",
            "K": "key", "W": "value", "R": "room", "I": "item"}
    FOLLOW = 0.75  # how often a slot takes a word its neighbour prefers

    def __init__(self, split: str | None):
        self.words = {k: pool(kind, split) for k, kind in self.KIND.items()}
        self.templates = [t for _, t in self.TEMPLATES]
        self.cum_weights = list(itertools.accumulate(w for w, _ in self.TEMPLATES))
        self.slots = [re.findall(r"\{([A-Z])(\d)\}", t) for t in self.templates]
        self._prefs: dict[tuple[str, str], tuple[str, ...]] = {}

    def _prefer(self, word: str, slot: str) -> tuple[str, ...]:
        key = (word, slot)
        if key not in self._prefs:
            words = self.words[slot]
            self._prefs[key] = tuple(words[i % len(words)] for i in _assoc(word, slot))
        return self._prefs[key]

    def sentence(self, rng: random.Random) -> str:
        t = rng.choices(range(len(self.templates)), cum_weights=self.cum_weights)[0]
        fill: dict[str, str] = {}
        prev = None
        for slot, idx in self.slots[t]:
            if prev is not None and slot in "AVNDP" and rng.random() < self.FOLLOW:
                word = rng.choice(self._prefer(prev, slot))
            else:
                word = rng.choice(self.words[slot])
            fill[slot + idx] = word
            prev = word
        text = self.templates[t].format(**fill)
        return text[0].upper() + text[1:]


# ---------------------------------------------------------------- filler bank

class FillerBank:
    """Pre-sampled filler sentences with their token counts, for one (seed, split)."""

    def __init__(self, seed: int, split: str | None, counter: TokenCounter, size: int = BANK_SIZE):
        rng = random.Random(stable_seed(seed, "filler-bank", split))
        grammar = Grammar(split)
        seen: dict[str, None] = {}
        for _ in range(size * 3):
            seen[grammar.sentence(rng)] = None
            if len(seen) >= size:
                break
        self.sentences = list(seen)
        self.spaced, self.bare = counter.pairs(self.sentences)
        self.mean = sum(self.spaced) / len(self.spaced)
        self.by_count: dict[int, list[int]] = {}
        for i, c in enumerate(self.spaced):
            self.by_count.setdefault(c, []).append(i)
        self.min_count = min(self.by_count)

    @classmethod
    def get(cls, seed: int, split: str | None, counter: TokenCounter) -> "FillerBank":
        key = (seed, split)
        if key not in counter.banks:
            counter.banks[key] = cls(seed, split, counter)
        return counter.banks[key]

    def draw(self, rng: random.Random, budget: int) -> list[int]:
        """Sentence indices whose spaced counts sum to `budget` (or just under, by < min_count)."""
        if budget <= 0:
            return []
        n = len(self.sentences)
        picked: list[int] = []
        total = 0
        while True:
            k = max(4, int((budget - total) / self.mean * 1.1) + 1)
            batch = [int(rng.random() * n) for _ in range(k)]
            for i in batch:
                c = self.spaced[i]
                if total + c > budget:
                    break
                picked.append(i)
                total += c
            else:
                continue
            break
        rest = budget - total
        # Top up with a sentence of exactly the remaining length where the bank has one.
        for r in range(rest, self.min_count - 1, -1):
            if r in self.by_count:
                cands = self.by_count[r]
                picked.insert(int(rng.random() * (len(picked) + 1)), cands[int(rng.random() * len(cands))])
                break
        return picked


# ---------------------------------------------------------------- assembly

@dataclass
class Haystack:
    chunks: list[str]
    fact_chunks: list[int]   # per input fact: index of the chunk holding it
    fact_depths: list[float]  # per input fact: token offset of its start / total tokens
    fact_starts: list[int]   # per input fact: token offset of its start
    fact_chars: list[int]    # per input fact: character offset of its start inside its chunk
    order: list[int]         # input fact indices in context order
    total_tokens: int


def pack(units: Sequence[str], spaced: Sequence[int], bare: Sequence[int], chunk_tokens: int,
         fact_of: Sequence[int]) -> tuple[list[str], list[int], list[int], list[int], list[int]]:
    """Greedy packing of whole sentences into chunks of at most `chunk_tokens` tokens.

    A unit longer than a chunk gets a chunk of its own; units are never split. Returns chunks,
    per-chunk token counts, and (via fact_of >= 0) each fact's chunk, token start in the whole
    context and character start inside its chunk (units are joined by one space)."""
    chunks: list[str] = []
    counts: list[int] = []
    cur: list[str] = []
    cur_n = 0
    cur_chars = 0
    offset = 0
    n_facts = max(fact_of, default=-1) + 1
    f_chunk = [0] * n_facts
    f_start = [0] * n_facts
    f_char = [0] * n_facts
    for u, cs, cb, f in zip(units, spaced, bare, fact_of):
        if cur and cur_n + cs > chunk_tokens:
            chunks.append(" ".join(cur))
            counts.append(cur_n)
            offset += cur_n
            cur, cur_n, cur_chars = [], 0, 0
        if f >= 0:
            f_chunk[f] = len(chunks)
            f_start[f] = offset + cur_n
            f_char[f] = cur_chars + (1 if cur else 0)
        cur_n += cs if cur else cb
        cur_chars += len(u) + (1 if cur else 0)
        cur.append(u)
    if cur:
        chunks.append(" ".join(cur))
        counts.append(cur_n)
    return chunks, counts, f_chunk, f_start, f_char


def assemble(facts: Sequence[str], positions: Sequence[float], target_tokens: int, chunk_tokens: int,
             bank: FillerBank, rng: random.Random, counter: TokenCounter,
             what: str = "context") -> Haystack:
    """Hide `facts` in filler so the whole context has ~`target_tokens` tokens.

    Each fact's start lands near `positions[i] * total` (a fraction in [0, 1]); facts keep their
    given order when positions tie. Chunks are packed at sentence boundaries."""
    if len(facts) != len(positions):
        raise ValueError("one position per fact")
    spaced, bare = counter.pairs(list(facts))
    fact_total = sum(spaced)
    budget = target_tokens - fact_total
    if budget < 0:
        raise ValueError(f"{what}: target length {target_tokens} tokens cannot hold its facts "
                         f"({fact_total} tokens); use a longer length")
    filler = bank.draw(rng, budget)
    cum = [0]
    for i in filler:
        cum.append(cum[-1] + bank.spaced[i])
    filler_total = cum[-1]
    total_est = filler_total + fact_total
    # Context order: by position, ties by the given order.
    order = sorted(range(len(facts)), key=lambda i: (positions[i], i))
    slots: list[int] = [0] * len(facts)
    before = 0
    for i in order:
        # Filler offset that puts this fact's start at positions[i] of the whole context.
        want = positions[i] * total_est - before
        j = bisect.bisect_left(cum, want)
        if j > 0 and (j == len(cum) or want - cum[j - 1] <= cum[j] - want):
            j -= 1
        slots[i] = j
        before += spaced[i]
    # Later facts never go before earlier ones (order is by position).
    for a, b in zip(order, order[1:]):
        slots[b] = max(slots[b], slots[a])
    at_slot: dict[int, list[int]] = {}
    for i in order:
        at_slot.setdefault(slots[i], []).append(i)
    units: list[str] = []
    u_spaced: list[int] = []
    u_bare: list[int] = []
    fact_of: list[int] = []
    sents = bank.sentences
    for j in range(len(filler) + 1):
        for i in at_slot.get(j, ()):
            units.append(facts[i])
            u_spaced.append(spaced[i])
            u_bare.append(bare[i])
            fact_of.append(i)
        if j < len(filler):
            k = filler[j]
            units.append(sents[k])
            u_spaced.append(bank.spaced[k])
            u_bare.append(bank.bare[k])
            fact_of.append(-1)
    chunks, counts, f_chunk, f_start, f_char = pack(units, u_spaced, u_bare, chunk_tokens, fact_of)
    total = sum(counts)
    return Haystack(chunks=chunks, fact_chunks=f_chunk[:len(facts)], fact_starts=f_start[:len(facts)],
                    fact_chars=f_char[:len(facts)],
                    fact_depths=[s / total for s in f_start[:len(facts)]], order=order,
                    total_tokens=total)


def pack_items(items: Sequence[str], counts: Sequence[int]) -> tuple[list[int], int]:
    """Chunk start offsets for one-item-per-chunk contexts (records, documents) and the total."""
    starts = list(itertools.accumulate(counts, initial=0))
    return starts[:-1], starts[-1]


def choose_count(counts: Sequence[int], budget: int) -> int:
    """How many leading items of `counts` bring the running sum closest to `budget`."""
    total = 0
    for k, c in enumerate(counts):
        if total + c > budget:
            return k + 1 if (total + c - budget) < (budget - total) else k
        total += c
    return len(counts)


def fit_items(counts: Sequence[int], budget: int, rounds: int = 4) -> list[int]:
    """Indices (ascending) of a subset of `counts` whose sum is close to `budget`.

    Starts from the closest prefix, then makes up to `rounds` single swaps/additions/removals
    that shrink the gap most. One-item-per-chunk contexts (records, documents) need this: an
    item can be a sizeable fraction of a short context."""
    k = choose_count(counts, budget)
    chosen = list(range(k))
    gap = budget - sum(counts[:k])
    free = list(range(k, len(counts)))
    for _ in range(rounds):
        if gap == 0:
            break
        first_in: dict[int, int] = {}
        for j in chosen:
            first_in.setdefault(counts[j], j)
        first_out: dict[int, int] = {}
        for j in free:
            first_out.setdefault(counts[j], j)
        best = (abs(gap), None, None)
        for v_in, j_in in first_out.items():  # add one
            if abs(gap - v_in) < best[0]:
                best = (abs(gap - v_in), None, j_in)
        for v_out, j_out in first_in.items():  # remove one, or swap
            if abs(gap + v_out) < best[0]:
                best = (abs(gap + v_out), j_out, None)
            for v_in, j_in in first_out.items():
                if abs(gap + v_out - v_in) < best[0]:
                    best = (abs(gap + v_out - v_in), j_out, j_in)
        _, j_out, j_in = best
        if j_out is None and j_in is None:
            break
        if j_out is not None:
            chosen.remove(j_out)
            free.append(j_out)
            gap += counts[j_out]
        if j_in is not None:
            free.remove(j_in)
            chosen.append(j_in)
            gap -= counts[j_in]
    return sorted(chosen)
