"""Scoring against hand-made cases."""
import pytest

from perk.scoring import exact_match, normalize, substring_match, token_f1, wilson_interval


@pytest.mark.parametrize("pred, gold, em", [
    ("Violet.", "violet", 1.0),
    ("  the   Violet ", "violet", 1.0),
    ("An apple!", "apple", 1.0),
    ("violets", "violet", 0.0),
    ("48213", "48213", 1.0),
    ("4821", "48213", 0.0),
    ("yes", "Yes.", 1.0),
    ("", "violet", 0.0),
])
def test_exact_match(pred, gold, em):
    assert exact_match(pred, gold) == em


def test_normalize():
    assert normalize("The  Kitchen, a garden & AN office.") == "kitchen garden office"


def test_f1_and_substring():
    assert token_f1("red blue", "red, blue") == 1.0
    assert token_f1("red green", "red blue") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert substring_match("The answer is violet, I think", "violet") == 1.0
    assert substring_match("violets", "violet") == 0.0


def test_wilson_interval():
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.75
    lo, hi = wilson_interval(5, 10)
    assert lo < 0.5 < hi and hi - lo < 0.6
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_numbers_keep_their_decimal_point_and_drop_thousands_separators():
    from perk.scoring import exact_match, normalize
    assert exact_match("7.64", "76.4") == 0.0 and exact_match("7.64", "7.64.") == 1.0
    assert exact_match("1,000", "1000") == 1.0 and exact_match("12,345,678", "12345678") == 1.0
    assert exact_match("1,2", "12") == 0.0 and normalize("1,2") == "1 2"  # a list, not a number
    assert exact_match("0.5", ".5") == 0.0  # no digit before the point: stays punctuation
    assert normalize("The grade is 3.75.") == "grade is 3.75"
    assert exact_match("The answer.", "answer") == 1.0  # words as before
