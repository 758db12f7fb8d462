"""In-context recall text: full-length LM sequences in which the answer must be copied from the prompt.

A pretrained LM can retrieve a fact from its prompt (induction / copy heads); a tiny base trained
only on single short chunks cannot, and never saw a long sequence. This text teaches both: haystack
filler (the training split's grammar) with needle-format facts over *random* (key, value) pairs,
then a question about every fact, answered ("The special magic word for K is V"). The keys come
from the training pool only and the pairs are random, so nothing about any evaluation context is
in it. The haystack length ramps from `min_length` to `length` over `ramp_steps` (short-to-long:
attention over few positions finds the matching fact first, then learns to find it among many).
Each step's text is a function of (seed, step), so a resumed run sees the same text.
"""
from __future__ import annotations

import random

import torch

from ..data import needle
from ..data.haystack import Grammar
from ..data.lexicon import pool
from .inner import token_losses

LINE_TOKENS = 64  # a newline every ~64 haystack tokens, like the joined chunks of a baseline prompt


class RecallText:
    def __init__(self, tokenizer, seed: int = 0, batch: int = 4, length: int = 512, min_length: int = 64,
                 ramp_steps: int = 0, facts: int = 4, query_weight: float = 1.0, hold_steps: int = 0,
                 bank: int = 4000):
        self.tok = tokenizer
        self.seed, self.batch, self.length, self.min_length = seed, batch, length, min_length
        self.ramp_steps, self.facts, self.query_weight = ramp_steps, facts, query_weight
        self.hold_steps = hold_steps
        self.keys = pool("key", "train")
        self.values = pool("value")
        grammar, rng = Grammar("train"), random.Random(seed * 7_919 + 17)
        self.sentences = [grammar.sentence(rng) for _ in range(bank)]
        counts = tokenizer([" " + s for s in self.sentences], add_special_tokens=False)["input_ids"]
        self.counts = [len(c) for c in counts]

    QUESTION_TOKENS = 25  # one answered question

    def haystack_tokens(self, step: int) -> int:
        """min_length for hold_steps, then a linear ramp to length over ramp_steps."""
        s = step - self.hold_steps
        if s < 0:
            return self.min_length
        if self.ramp_steps <= 0 or s >= self.ramp_steps:
            return self.length
        return int(self.min_length + (self.length - self.min_length) * s / self.ramp_steps)

    def batch_size(self, step: int) -> int:
        """Sequences per step: `batch` at full length, more while they are short (about constant
        tokens per step, so the short phase sees many more answered questions)."""
        q = self.QUESTION_TOKENS * self.facts
        hay = max(self.haystack_tokens(step), 12 * self.facts)
        return max(self.batch, round(self.batch * (self.length + q) / (hay + q)))

    def sample(self, rng: random.Random, hay_tokens: int) -> tuple[str, list[tuple[int, int]]]:
        """One sequence: (text, character spans of the answered values)."""
        keys = rng.sample(self.keys, self.facts)
        values = [rng.choice(self.values) for _ in keys]
        pieces: list[tuple[str, int]] = []  # (sentence, tokens)
        total = 12 * len(keys)  # a fact is ~12 tokens: the haystack, facts included, is hay_tokens long
        while total < hay_tokens:
            i = rng.randrange(len(self.sentences))
            pieces.append((self.sentences[i], self.counts[i]))
            total += self.counts[i]
        for k, v in zip(keys, values):
            pieces.insert(rng.randrange(len(pieces) + 1), (needle.NEEDLE.format(key=k, value=v), 12))
        lines, line, n = [], [], 0
        for s, c in pieces:
            line.append(s)
            n += c
            if n >= LINE_TOKENS:
                lines.append(" ".join(line))
                line, n = [], 0
        if line:
            lines.append(" ".join(line))
        text = "\n".join(lines)
        spans = []
        for j in rng.sample(range(len(keys)), len(keys)):
            text += "\n" + needle.QUESTION.format(key=keys[j]) + " " + needle.PREFIX.format(key=keys[j]) + " "
            spans.append((len(text), len(text) + len(values[j])))
            text += values[j]
        return text, spans

    def batch_at(self, step: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, real-token mask, answered-value mask), right-padded; masks align with ids[:, 1:]."""
        rng = random.Random(self.seed * 1_000_003 + step + 555)
        hay = self.haystack_tokens(step)
        samples = [self.sample(rng, hay) for _ in range(self.batch_size(step))]
        enc = self.tok([t for t, _ in samples], add_special_tokens=False, return_offsets_mapping=True)
        seqs, offs = enc["input_ids"], enc["offset_mapping"]
        n = max(map(len, seqs))
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), n), pad, dtype=torch.long)
        real = torch.zeros((len(seqs), n - 1))
        ans = torch.zeros((len(seqs), n - 1))
        for b, (s, off, (_, spans)) in enumerate(zip(seqs, offs, samples)):
            ids[b, :len(s)] = torch.tensor(s)
            real[b, :len(s) - 1] = 1.0
            for t, (a, e) in enumerate(off):
                if t > 0 and any(a < se and e > ss for ss, se in spans):
                    ans[b, t - 1] = 1.0  # predicting token t from position t-1
        return ids.to(device), real.to(device), ans.to(device)

    def loss(self, lm: torch.nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean LM loss over every token + query_weight x mean loss on the answered values."""
        dev = next(lm.parameters()).device
        ids, real, ans = self.batch_at(step, dev)
        out = lm(input_ids=ids, attention_mask=None)  # right-padded and causal: no mask needed
        tl = token_losses(out.logits, ids)
        lm_loss = (tl * real).sum() / real.sum()
        ans_loss = (tl * ans).sum() / ans.sum().clamp_min(1.0)
        with torch.no_grad():
            hit = (out.logits[:, :-1].argmax(-1) == ids[:, 1:]).float()
            acc = float((hit * ans).sum() / ans.sum().clamp_min(1.0))
        return lm_loss + self.query_weight * ans_loss, {
            "recall_lm_loss": float(lm_loss.detach()), "recall_answer_loss": float(ans_loss.detach()),
            "recall_answer_acc": acc, "recall_tokens": float(ids.shape[1])}
