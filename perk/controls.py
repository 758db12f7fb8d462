"""Controls for PERK on the test grid, each of which could fail, so their figures mean something.

- `no_inner`: answer with the meta-learned LoRA init, no encode. Near chance shows the answer
  comes from the adapter the context was written into, not from the base or the init.
- `wrong_context`: encode the context of another test example of the same length that holds
  neither this row's answer nor any of its supporting facts, then ask this row's question. Near
  chance shows the adapter carries this context's facts, not a guess the question alone allows.
- `distractor` (a rate on PERK's own answers): the wrong answer is another value that occurs in
  the same context (needle: the value of another key), i.e. the right kind of fact, misbound.

Chance is 1 / the number of words the answer could be (needle: the value lexicon; values are not
held out, every test value is drawn uniformly from all of them, independently of the key).

`no_inner` reads the question alone, so on needle its answer is a function of the asked key, and its
exact expected EM over the test distribution is mean over test keys of [its answer is a value word]
/ |values|, never above chance. `no_inner_expectation` computes that over every test key: the
figure to hold against chance, since the per-length sample of 50 questions has at least one hit
with probability 1 - (229/230)^50 = 20% even at exactly chance (and one hit is 2%, above 2x chance).
"""
from __future__ import annotations

import re

from .scoring import normalize

CONTROLS = ("no_inner", "wrong_context")
_NEEDLE_VALUE = re.compile(r"special magic words? for \S+ is (\S+?)\.")


def method_name(control: str) -> str:
    return f"perk_{control}"


ONE_WORD_TASKS = ("needle/single", "needle/multikey")  # the answer is one value word of the lexicon


def chance(task: str) -> float | None:
    """1 / the number of answers a question of `task` could take, where the answer is one value word
    (needle single / multikey); None elsewhere (a list of values or a 5-digit pass key has far more)."""
    from .data.lexicon import pool
    return 1.0 / len(pool("value")) if task in ONE_WORD_TASKS else None


def no_inner_expectation(answer, task: str) -> dict | None:
    """The no-inner control's exact expected EM over every test key (needle; None elsewhere):
    {expected_em, keys, distinct_answers, value_answers}. `answer(row) -> (prediction, status)`."""
    from .data import lexicon, needle

    if task not in ONE_WORD_TASKS:
        return None
    values = {normalize(v) for v in lexicon.pool("value")}
    keys = lexicon.pool("key", "test")
    preds = [normalize(answer({"question": needle.QUESTION.format(key=k), "answer_prefix": needle.PREFIX.format(key=k)})[0] or "")
             for k in keys]
    hits = sum(p in values for p in preds)
    return {"expected_em": hits / len(keys) / len(values), "keys": len(keys), "distinct_answers": len(set(preds)),
            "value_answers": hits}


def context_values(row: dict) -> set[str]:
    """The answer-like values a context holds: needle values, else every word of the context."""
    text = " ".join(row["context"])
    found = _NEEDLE_VALUE.findall(text) if row.get("task") == "needle" else text.split()
    return {normalize(v) for v in found} - {""}


def is_distractor(row: dict, prediction: str | None) -> float:
    """1.0 when a wrong prediction is another value of the same context."""
    if not prediction:
        return 0.0
    pred, gold = normalize(prediction), normalize(row["answer"])
    return float(pred != gold and pred in context_values(row))


def wrong_context_rows(rows: list[dict]) -> dict[str, dict]:
    """For each row, the next row of the same length (cyclically) whose context lacks its answer and
    supporting facts: {row id: donor row}. Rows with no such donor are left out (and counted)."""
    by_len: dict[int, list[dict]] = {}
    for r in rows:
        by_len.setdefault(r["target_tokens"], []).append(r)
    donors = {}
    for group in by_len.values():
        for i, r in enumerate(group):
            for j in range(1, len(group)):
                d = group[(i + j) % len(group)]
                text = " ".join(d["context"])
                if f" {normalize(r['answer'])} " not in f" {normalize(text)} " and \
                        not any(f in text for f in r["supporting_facts"]):
                    donors[r["id"]] = d
                    break
    return donors
