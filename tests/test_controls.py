"""PERK's controls on the test grid, and evaluation that reads no labels."""
import random

from perk.controls import chance, is_distractor, wrong_context_rows

from test_answer_reuse import noisy_micro_bundle


def _row(i, L, facts, answer):
    ctx = [" ".join(f"One of the special magic words for {k} is {v}." for k, v in facts)]
    return {"id": f"r{i}", "task": "needle", "target_tokens": L, "context": ctx, "answer": answer,
            "supporting_facts": [f"One of the special magic words for {facts[0][0]} is {facts[0][1]}."]}


def test_wrong_context_donor_lacks_the_answer_and_the_fact():
    rows = [_row(0, 512, [("apple", "red"), ("pear", "blue")], "red"),
            _row(1, 512, [("plum", "red"), ("fig", "green")], "red"),      # holds the answer: no donor for r0
            _row(2, 512, [("kiwi", "gold"), ("lime", "teal")], "gold"),
            _row(3, 1024, [("date", "pink")], "pink")]                    # alone at its length: no donor
    donors = wrong_context_rows(rows)
    assert donors["r0"]["id"] == "r2" and donors["r2"]["id"] == "r0" and "r3" not in donors
    assert donors["r1"]["id"] == "r2"


def test_distractor_is_another_value_of_the_same_context():
    r = _row(0, 512, [("apple", "red"), ("pear", "blue")], "red")
    assert is_distractor(r, "blue") == 1.0
    assert is_distractor(r, "Red.") == 0.0 and is_distractor(r, "green") == 0.0 and is_distractor(r, None) == 0.0
    assert chance("needle/multikey") == 1 / 230 and chance("babilong/qa1") is None
    assert chance("needle/multivalue") is None and chance("needle/passkey") is None  # not one value word


def test_perk_predictions_do_not_read_labels(tmp_path, tiny_tokenizer):
    """Scrambling a test row's labels (answer, supporting facts/chunks, depths) changes nothing
    PERK predicts: evaluation reads the context and the question only."""
    from perk.evaluate import init_answerer, perk_answerer

    _, bundle, test = noisy_micro_bundle(tmp_path, tiny_tokenizer)
    rng = random.Random(0)

    def scrambled(r):
        return {**r, "answer": rng.choice(["x", "y"]), "supporting_facts": ["nothing"], "supporting_chunks": [0],
                "depths": [rng.random()]}
    for make in (lambda: perk_answerer(bundle, tiny_tokenizer, 3, micro_batch=2),
                 lambda: init_answerer(bundle, tiny_tokenizer, 3)):
        answer = make()
        before = [answer(r) for r in test]
        after = [answer(scrambled(r)) for r in test]
        assert before == after and len(before) >= 2
    # and the encode matters: another context gives other fast weights than this one
    donor = wrong_context_rows(test)
    assert donor, "micro test rows should have a wrong-context donor"


def test_no_inner_expectation_is_exact_over_every_test_key_and_never_above_chance():
    from perk.controls import no_inner_expectation
    from perk.data.lexicon import pool

    keys = pool("key", "test")
    always_a_value = no_inner_expectation(lambda row: ("humble", "ok"), "needle/multikey")
    assert always_a_value == {"expected_em": 1 / 230, "keys": len(keys), "distinct_answers": 1, "value_answers": len(keys)}
    half = set(keys[::2])  # a value word for every other key, a non-value for the rest
    got = no_inner_expectation(lambda row: ("humble" if row["question"].split()[7] in half else "nothing", "ok"),
                               "needle/multikey")
    assert got["expected_em"] == len(half) / len(keys) / 230 < 1 / 230 and got["distinct_answers"] == 2
    assert no_inner_expectation(lambda row: ("x", "ok"), "babilong/qa1") is None
