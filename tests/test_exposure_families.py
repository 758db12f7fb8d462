"""Exposure per task family: every token a test answer needs is a training target somewhere
(training answers or exposure text), and exposure reveals no test pairing and no held-out key."""
from __future__ import annotations

import random
import re

import pytest

from perk.config import TasksConfig
from perk.data import needle, records, retrieval
from perk.data.lexicon import pool
from perk.data.synth import FAMILIES
from perk.meta.exposure import Exposure
from perk.prompts import answer_target

SPECS = TasksConfig()
STEPS = 300  # pretraining alone runs 400 steps of 2 x 5 exposure sentences


def _rows(fam, split, n, tok, seed=5):
    spec = getattr(SPECS, fam)
    out = []
    for sub in spec.subtasks:
        out += FAMILIES[fam].generate(spec, split, n, 512, None, seed, tok, subtask=sub)
    return out


def _ids(tok, text):
    return set(tok(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_every_test_answer_token_is_a_training_target(tiny_tokenizer, fam):
    tok = tiny_tokenizer
    trained = set()
    for e in _rows(fam, "train", 30, tok):
        trained |= _ids(tok, answer_target(e.row()))
    ex = Exposure(tok, "train", seed=0, family=fam)
    exposed = set().union(*(_ids(tok, t) for s in range(STEPS) for t in ex.texts(s)))
    test = _rows(fam, "test", 30, tok)
    needed = set().union(*(_ids(tok, answer_target(e.row())) for e in test))
    if fam in ("records", "retrieval"):  # held-out names: the training answers alone cannot produce them
        assert needed - trained, "this family's test answers were expected to need words training never emits"
    missing = needed - trained - exposed
    assert not missing, f"{fam}: test answer tokens never a training target: {tok.convert_ids_to_tokens(sorted(missing))}"


def test_needle_exposure_text_is_unchanged():
    """The default pipeline (needle) sees exactly the exposure text it was measured with."""
    ex = Exposure(None, "train", seed=4, rows=3, per_row=5)
    rng = random.Random(4 * 1_000_003 + 9)
    keys, values = pool("key", "train"), pool("value")
    old = [" ".join(needle.NEEDLE.format(key=rng.choice(keys), value=rng.choice(values)) for _ in range(5))
           for _ in range(3)]
    assert ex.texts(9) == old


RECORD = re.compile(r"Student record\. ID: (\d+)\. Name: (\w+ \w+)\.")
DOC = re.compile(r"The API to ([^.]+) is (\w+)\. Parameters")
ASK = re.compile(r"Which API should be used to ([^?]+)\? The API to [^.]+ is (\w+)")


def test_no_test_pairing_and_no_held_out_key(tiny_tokenizer):
    tok = tiny_tokenizer
    texts = {fam: [t for s in range(STEPS) for t in Exposure(tok, "train", seed=0, family=fam).texts(s)]
             for fam in FAMILIES}
    # records: test (ID, name) pairs never appear; test names do (they are answers)
    pairs = {m.groups() for t in texts["records"] for m in RECORD.finditer(t)}
    test_records = {m.groups() for e in _rows("records", "test", 20, tok) for c in e.context
                    for m in RECORD.finditer(c)}
    assert test_records and not pairs & test_records
    assert {n for _, n in pairs} & {n for _, n in test_records}  # held-out names are exposed
    # retrieval: no test (purpose, gold name) pairing, as a document or as a question
    gold = {(e.question[len("Which API should be used to "):-1], e.answer) for e in _rows("retrieval", "test", 20, tok)}
    seen = {m.groups() for t in texts["retrieval"] for m in DOC.finditer(t)}
    seen |= {m.groups() for t in texts["retrieval"] for m in ASK.finditer(t)}
    assert len(seen) > 1000 and not seen & gold
    # keys stay training keys: needle keys, babilong persons
    held_out = set(pool("key", "val")) | set(pool("key", "test")) | set(pool("person", "val")) | \
        set(pool("person", "test"))
    for fam in ("needle", "babilong"):
        words = {w for t in texts[fam] for w in re.findall(r"\w+", t)}
        assert not words & held_out, fam


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="exposure family.*needle"):
        Exposure(None, "train", family="essays")


def test_exposure_uses_each_family_format():
    for fam, pattern in (("records", records.RECORD.split(".")[0]), ("retrieval", "Parameters: "),
                         ("needle", "special magic words"), ("babilong", "Where is ")):
        assert any(pattern in t for s in range(5) for t in Exposure(None, "train", family=fam).texts(s)), fam
    assert retrieval.PREFIX.split("{")[0] in " ".join(Exposure(None, "train", family="retrieval").texts(0) +
                                        Exposure(None, "train", family="retrieval").texts(1))


def test_ruler_exposure_is_the_benchmark_format_with_random_7_digit_numbers():
    from perk.data.imports.ruler import NEEDLE

    texts = [t for s in range(20) for t in Exposure(None, "train", family="ruler", seed=3).texts(s)]
    needles = [m for t in texts for m in NEEDLE.finditer(t)]
    answers = re.findall(r"mentioned in the provided text is (\d+)", " ".join(texts))
    assert len(needles) > 20 and len(answers) > 20  # both line kinds, the needle as the importer parses it
    values = [m["value"] for m in needles] + answers
    assert all(len(v) == 7 for v in values) and len(set(values)) > 0.9 * len(values)  # random, RULER's range
    assert texts == [t for s in range(20) for t in Exposure(None, "train", family="ruler", seed=3).texts(s)]
