"""Each benchmark's own metric, as the benchmark defines it (reported beside perk's EM).

- RULER (scripts/eval/evaluate.py + scripts/eval/synthetic/constants.py): predictions are
  post-processed (strip, every control character [\\x00-\\x1f] -> "\\n", strip); per sample
  `string_match_all` = fraction of the gold outputs found (case-insensitive substring) in the
  prediction, `string_match_part` = 1 if any is found; the score is the mean x 100, rounded to 2.
- BABILong (babilong/metrics.py `compare_answers`): the answer is lower-cased and cut before the
  first ".", then before "<context>", "<example>" (and "Question", which cannot match after
  lower-casing: kept for fidelity); labels that occur in the question are ignored; correct iff the
  target is among the task labels found (as substrings) in what is left and is the only one (qa8's
  comma-separated targets: all of them and nothing else). Accuracy = mean x 100.
Per-sample functions return 0..1; `benchmark_score` adds the x100 / rounding of a whole set.
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f]")

# babilong/metrics.py TASK_LABELS (qa1..qa10)
_ROOMS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
BABILONG_LABELS: dict[str, tuple[str, ...]] = {
    "qa1": _ROOMS, "qa2": _ROOMS, "qa3": _ROOMS, "qa4": _ROOMS,
    "qa5": ("Bill", "Fred", "Jeff", "Mary", "apple", "football", "milk"),
    "qa6": ("no", "yes"), "qa7": ("none", "one", "three", "two"),
    "qa8": ("apple", "football", "milk", "nothing"), "qa9": ("no", "yes"), "qa10": ("maybe", "no", "yes"),
}


def ruler_postprocess(pred: str) -> str:
    return _CONTROL.sub("\n", pred.strip()).strip()


def string_match_all(pred: str, outputs: list[str]) -> float:
    if not outputs:
        raise ValueError("string_match_all needs at least one gold output")
    p = ruler_postprocess(pred).lower()
    return sum(r.lower() in p for r in outputs) / len(outputs)


def string_match_part(pred: str, outputs: list[str]) -> float:
    if not outputs:
        raise ValueError("string_match_part needs at least one gold output")
    p = ruler_postprocess(pred).lower()
    return float(max(r.lower() in p for r in outputs))


def babilong_preprocess(output: str) -> str:
    out = output.lower().split(".")[0]
    for marker in ("<context>", "<example>", "Question"):  # "Question" never matches lower-cased text (upstream)
        out = out.split(marker)[0]
    return out


def babilong_label(target: str, output: str, question: str, labels) -> float:
    """1.0 iff `target` is the one task label in the first sentence of `output` (question's labels ignored)."""
    out = babilong_preprocess(output)
    target = target.lower()
    labels = {lab.lower() for lab in labels}
    in_question = {lab for lab in labels if lab in question.lower()}
    found = {lab for lab in labels if lab in out} - in_question
    if "," in target and len(target) > 3:  # qa8: several items, all and only them
        parts = target.split(",")
        return float(all(t in found for t in parts) and len(found) == len(parts))
    return float(target in found and len(found) == 1)


def labels_for(subtask: str) -> tuple[str, ...]:
    sub = subtask.split("_")[0]
    if sub not in BABILONG_LABELS:
        raise ValueError(f"no BABILong label set for subtask {subtask!r}; known: {sorted(BABILONG_LABELS)}")
    return BABILONG_LABELS[sub]


def score_prediction(row: dict, prediction: str | None) -> float | None:
    """The row's benchmark metric (its `metric` column) for one prediction, 0..1; None if the row
    has no benchmark metric (a synthesized row) or there is no prediction (out of range)."""
    metric = row.get("metric")
    if not metric or prediction is None:
        return None
    outputs = row.get("outputs") or [row["answer"]]
    if metric == "string_match_all":
        return string_match_all(prediction, outputs)
    if metric == "string_match_part":
        return string_match_part(prediction, outputs)
    if metric == "babilong_label":
        return babilong_label(row["answer"], prediction, row["question"], labels_for(row["subtask"]))
    if metric == "exact_match":
        from .scoring import exact_match
        return exact_match(prediction, row["answer"])
    raise ValueError(f"row {row.get('id')}: unknown metric {metric!r}")


def benchmark_score(per_sample: list[float]) -> float:
    """A set's score the way RULER / BABILong report it: mean x 100, rounded to 2 decimals."""
    if not per_sample:
        raise ValueError("no samples to score")
    return round(100 * sum(per_sample) / len(per_sample), 2)
