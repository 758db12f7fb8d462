"""The reference PERK implementation's JSON records -> perk rows (one row per question).

Three kinds, told apart by their fields (../shared/reference/perk-data-samples/README.md):
- BABILong `{context: [chunk, ...], question, answer, support: [sentence, ...]}`;
- LongGorilla `{context: [api document, ...], location, question, answer}`;
- student records `{database: [{field: value, ...}, ...], questions: [{question, answer}, ...]}`.
The reference encodes one chunk / document / record per inner-loop chunk, so the given chunks are
kept as they are (no re-chunking); a record is rendered as `Field: value` pairs.
"""
from __future__ import annotations

from ..io import DataError
from .common import RecordSkip, require

FORMAT = "reference-PERK"
ELIDED = "elided_entry"  # parse() yields this for a "..." list entry: counted as a note, not a record


def kind(rec: dict) -> str:
    if "database" in rec or "questions" in rec:
        return "student_records"
    if "support" in rec:
        return "babilong"
    if "location" in rec:
        return "longgorilla"
    return "context"


def render_record(r: dict) -> str:
    return ". ".join(f"{k}: {v}" for k, v in r.items()) + "."


def parse(rec: dict, where: str) -> list[dict | RecordSkip]:
    """Rows (dicts with chunks/question/answer/support) or RecordSkip for each question of `rec`."""
    k = kind(rec)
    if k == "student_records":
        require(rec, {"database": list, "questions": list}, where, f"{FORMAT} student_records")
        if not rec["database"] or not all(isinstance(r, dict) for r in rec["database"]):
            raise DataError(f"{where}: field 'database' must be a non-empty list of record objects")
        chunks = [render_record(r) for r in rec["database"]]
        out: list[dict | RecordSkip] = []
        for j, q in enumerate(rec["questions"]):
            if q == "...":  # the reference samples elide the rest of a list with a literal "..."
                out.append(ELIDED)
                continue
            if not isinstance(q, dict):
                out.append(RecordSkip("question_not_an_object", f"questions[{j}] is {q!r:.40}"))
                continue
            require(q, {"question": str, "answer": str}, f"{where}: questions[{j}]", f"{FORMAT} question")
            # supporting records: those whose id the question names (aggregates use them all: none recorded)
            sup = [i for i, r in enumerate(rec["database"]) if str(r.get("Student Id", "\0")) in q["question"]]
            out.append({"chunks": chunks, "question": q["question"].strip(), "answer_prefix": "",
                        "outputs": [q["answer"]], "support_chunks": sup,
                        "support_facts": [chunks[i] for i in sup], "kind": k, "qindex": j})
        return out
    require(rec, {"context": list, "question": str, "answer": str}, where, f"{FORMAT} {k}")
    chunks = rec["context"]
    if not chunks or not all(isinstance(c, str) for c in chunks):
        raise DataError(f"{where}: field 'context' must be a non-empty list of strings")
    if k == "babilong":
        require(rec, {"support": list}, where, f"{FORMAT} babilong")
        facts, sup = [], []
        for s in rec["support"]:
            at = [i for i, c in enumerate(chunks) if isinstance(s, str) and s in c]
            if not at:
                return [RecordSkip("support_not_found", f"support sentence {str(s)[:60]!r} is in no chunk")]
            facts.append(s)
            sup.append(at[0])
    else:
        at = [i for i, c in enumerate(chunks) if rec["answer"] in c]
        if not at:
            return [RecordSkip("answer_not_in_context", f"answer {rec['answer'][:60]!r} is in no chunk")]
        facts, sup = [chunks[at[0]]], at[:1]
    return [{"chunks": list(chunks), "question": rec["question"].strip(), "answer_prefix": "",
             "outputs": [rec["answer"]], "support_chunks": sup, "support_facts": facts, "kind": k, "qindex": 0}]
