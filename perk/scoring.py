"""Answer scoring: normalized exact match, token F1, substring match (SQuAD-style normalization)."""
from __future__ import annotations

import math
import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # 1,000 -> 1000 (a comma before exactly 3 digits)
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")            # the point of 7.64, kept through punctuation removal
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")         # any other comma between digits separates numbers
_POINT = "\x00"


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style), but keep numbers
    intact: a decimal point between digits stays ("7.64" != "76.4") and a thousands separator goes
    ("1,000" == "1000"); any other comma between digits separates ("1,2" -> "1 2")."""
    text = _DECIMAL.sub(_POINT, _DIGIT_COMMA.sub(" ", _THOUSANDS.sub("", text.lower())))
    text = "".join(ch for ch in text if ch not in _PUNCT).replace(_POINT, ".")
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize(prediction) == normalize(answer))


def substring_match(prediction: str, answer: str) -> float:
    """The answer appears in the prediction (for answers a model may embed in a sentence)."""
    a = normalize(answer)
    return float(bool(a) and f" {a} " in f" {normalize(prediction)} ")


def token_f1(prediction: str, answer: str) -> float:
    pred, gold = normalize(prediction).split(), normalize(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sane at 0%, 100% and small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
