"""BABILong records `{input, question, target}` (local JSON/JSONL/Parquet or the HF dataset) -> perk rows.

`input` is the context only (facts in book text; question and answer are not in it), `question`
carries a trailing space upstream (stripped here), `target` is one label. The bAbI fact sentences
are found by their templates and each kept whole in one chunk. qa1's supporting fact is exactly
recoverable (the asked person's last move); for other subsets the last fact naming the target is
recorded (a heuristic: counted as a note in the report). `every_person` (train split, qa1) asks
the same context where each other person is, answered from their last move.
"""
from __future__ import annotations

import re

from .common import RecordSkip, require

FORMAT = "BABILong"
FIELDS = {"input": str, "question": str, "target": str}
PEOPLE = r"(?:Mary|John|Daniel|Sandra)"
# bAbI qa1-qa3 sentences (moves, takes, drops), as in bAbI v1.2
FACT = re.compile(
    rf"\b(?P<who>{PEOPLE}) (?:(?P<move>moved|went back|went|journeyed|travelled) to the (?P<where>\w+)"
    r"|(?:got|grabbed|picked up|took|dropped|discarded|put down|left) the \w+(?: there)?)\.")
WHERE_IS = re.compile(rf"^Where is (?P<who>{PEOPLE})\?$")


def every_person(parsed: dict) -> list[dict]:
    """The qa1 record asked about each person who moves in its context (the asked one first): bAbI's
    question `Where is P?`, answered by P's last move, that move the supporting fact. The context is
    encoded before its question is known, so every person's whereabouts is worth writing; siblings
    share the context, so meta-training encodes it once for all of them. Only the record's own
    facts are read: nothing of another record or split."""
    asked = parsed.get("asked")
    if asked is None:
        return [parsed]
    out = [parsed]
    for who, (i, room, at) in parsed["last_moves"].items():
        if who != asked:
            out.append(dict(parsed, question=f"Where is {who}?", outputs=[room], support=[i], answer_at=[at],
                            asked=who, note=None))
    return out


def parse(rec: dict, where: str, subset: str) -> dict:
    require(rec, FIELDS, where, FORMAT)
    context, question, target = rec["input"], rec["question"].strip(), rec["target"].strip()
    if not context.strip() or not question or not target:
        raise RecordSkip("empty_field", "input, question and target must be non-empty")
    if target.lower() not in context.lower():
        raise RecordSkip("answer_not_in_context", f"target {target!r} does not occur in the input")
    facts = list(FACT.finditer(context))
    support: list[int] = []
    note = None
    ask = WHERE_IS.match(question)
    if subset == "qa1" and ask:
        moves = [i for i, m in enumerate(facts) if m.group("who") == ask.group("who") and m.group("move")]
        if moves and facts[moves[-1]].group("where") == target:
            support = [moves[-1]]
        else:
            note = "support_not_recovered"
    else:
        naming = [i for i, m in enumerate(facts) if target in m.group(0)]
        support = naming[-1:]
        note = "support_heuristic" if support else "support_not_recovered"
    # where the answer is read: qa1 the move's location, otherwise the target word inside the fact
    answer_at = [facts[i].span("where") if facts[i].group("where") == target else
                 (facts[i].start() + facts[i].group(0).index(target),
                  facts[i].start() + facts[i].group(0).index(target) + len(target)) for i in support]
    return {"context": context, "question": question, "answer_prefix": "", "outputs": [target],
            "keep": [(m.start(), m.end()) for m in facts], "support": support, "answer_at": answer_at,
            "declared_length": None,
            "note": note,
            "asked": ask.group("who") if subset == "qa1" and ask and support else None,
            # person -> (fact index, room, its span) of their last move (later moves overwrite earlier ones)
            "last_moves": {m.group("who"): (i, m.group("where"), m.span("where"))
                           for i, m in enumerate(facts) if m.group("move")}}
