"""tokenizer.digit_group: numbers cut left to right into runs of up to N digits, each run one token."""
import pytest

from perk.tokenizer import train_tokenizer

TEXTS = ["The pass key is 47327. Remember it.", "In 2022 the grade was 93 of 100."] * 20


def pieces(tok, text):
    return [tok.decode([i]) for i in tok(text, add_special_tokens=False).input_ids]


def test_default_splits_every_digit(tmp_path):
    tok = train_tokenizer(TEXTS, 400, tmp_path / "t", must_include=["apple"])
    assert pieces(tok, " 9828002") == [" ", "9", "8", "2", "8", "0", "0", "2"]


def test_groups_of_three_each_one_token(tmp_path):
    tok = train_tokenizer(TEXTS, 1600, tmp_path / "t", must_include=["apple"], digit_group=3)
    assert pieces(tok, " 9828002.") == [" ", "982", "800", "2", "."]
    assert pieces(tok, " 000 07") == [" ", "000", " ", "07"]
    for n in range(1000):  # every run the model can be asked to emit is one token, leading zeros too
        assert len(tok(f"{n:03d}", add_special_tokens=False).input_ids) == 1
    assert tok.decode(tok("ID 0472735", add_special_tokens=False).input_ids) == "ID 0472735"


def test_vocabulary_too_small_for_the_groups_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"digit_group=3: \d+ of the 1100 digit runs .* raise vocab_size"):
        train_tokenizer(TEXTS, 700, tmp_path / "t", must_include=["apple"], digit_group=3)
    assert not (tmp_path / "t").exists()  # nothing half-written
