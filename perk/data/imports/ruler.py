"""RULER JSONL (written by RULER's scripts/data/prepare.py) -> perk rows.

A record is `{index, input, outputs, length, length_w_model_temp, answer_prefix,
token_position_answer}`. `input` = instruction + "\\n" + haystack with needles + "\\n" + question
(exactly the first and the last line break split them, see ../shared/benchmarks/README.md).
`index` is NOT a sample id (niah.py leaves the character offset of outputs[0] in it): the record
number (line) is the id. The supporting facts are the needle sentences holding an output; each
needle (distractors too) stays whole inside one chunk.
"""
from __future__ import annotations

import re

from .common import RecordSkip, require

FORMAT = "RULER"
FIELDS = {"input": str, "outputs": list, "length": int, "answer_prefix": str}
# RULER's needle template: "One of the special magic {type_needle_v} for {key} is: {value}."
NEEDLE = re.compile(r"One of the special magic [A-Za-z]+ for (?P<key>[^\n]+?) is: (?P<value>[^\s]+?)\.(?=\s|$)")
QUERY = re.compile(r" for (?P<key>.+) mentioned in the provided text\?\s*$")


def every_key(parsed: dict) -> list[dict]:
    """The record asked about each of its needles' keys in turn (the asked one first): same context,
    RULER's question and answer prefix with the other key, that needle's value the answer. A
    multikey context is encoded before its question is known, so every needle is worth writing;
    siblings share the context, so meta-training encodes it once for all of them."""
    key = parsed["query_key"]
    keys = [k for k, _, _ in parsed["needles"]]
    if key is None or len(set(keys)) != len(keys):
        return [parsed]
    out = [parsed]
    for i, (k, value, at) in enumerate(parsed["needles"]):
        if k == key:
            continue
        q, pre = parsed["question"], parsed["answer_prefix"]
        qa = q.rfind(f" for {key} mentioned")
        pa = pre.rfind(f" for {key} mentioned")
        if qa < 0 or pa < 0:
            return [parsed]  # not RULER's template: ask only what the record asks
        out.append(dict(parsed, question=q[:qa] + f" for {k}" + q[qa + len(key) + 5:],
                        answer_prefix=pre[:pa] + f" for {k}" + pre[pa + len(key) + 5:],
                        outputs=[value], support=[i], answer_at=[at], query_key=k, sibling=i))
    return out


def parse(rec: dict, where: str, keep_instruction: bool = False) -> dict:
    """Split one record into instruction/context/question and locate the needles.

    Returns {context, question, answer_prefix, outputs, keep (needle spans in context),
    support (indices into keep of the needles holding an output)}. Raises RecordSkip on content
    problems, DataError on a malformed record."""
    require(rec, FIELDS, where, FORMAT)
    outputs = rec["outputs"]
    if not outputs or not all(isinstance(o, str) and o for o in outputs):
        from ..io import DataError
        raise DataError(f"{where}: field 'outputs' must be a non-empty list of non-empty strings, got {outputs!r:.80}")
    text = rec["input"]
    first, last = text.find("\n"), text.rfind("\n")
    if first < 0 or first == last:
        raise RecordSkip("no_question_line", "input needs a line break after the instruction and one before "
                         "the question")
    instruction, context, question = text[:first], text[first + 1:last], text[last + 1:]
    if not context.strip() or not question.strip():
        raise RecordSkip("empty_context_or_question")
    needles = list(NEEDLE.finditer(context))
    query = QUERY.search(question)
    support: list[int] = []
    for out in outputs:
        hits = [i for i, m in enumerate(needles) if m.group("value") == out]
        if query:  # the needle must be about the asked key (multikey: the other three are distractors)
            hits = [i for i in hits if needles[i].group("key") == query.group("key")] or hits
        if not hits:
            if out not in context:
                raise RecordSkip("needle_not_found", f"output {out!r} does not occur in the context")
            raise RecordSkip("needle_not_found", f"output {out!r} occurs in the context but in no needle sentence")
        if query and needles[hits[0]].group("key") != query.group("key"):
            raise RecordSkip("needle_key_mismatch", f"the needle holding {out!r} is for key "
                             f"{needles[hits[0]].group('key')!r}, the question asks {query.group('key')!r}")
        support += [h for h in hits[:1] if h not in support]
    q = question.strip()
    if keep_instruction:
        q = f"{instruction.strip()}\n{q}"
    return {"context": context, "question": q, "answer_prefix": rec["answer_prefix"].strip(),
            "outputs": list(outputs), "keep": [(m.start(), m.end()) for m in needles], "support": support,
            "answer_at": [needles[h].span("value") for h in support],
            "needles": [(m.group("key"), m.group("value"), m.span("value")) for m in needles],
            "query_key": query.group("key") if query else None,
            "declared_length": rec["length"], "prompt_text": text + rec["answer_prefix"]}
