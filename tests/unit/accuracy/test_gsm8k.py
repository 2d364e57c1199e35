"""GSM8K scoring with the Mixtral reference's answer extraction."""

import pytest

from harness.accuracy.gsm8k import extract_answer, find_number, is_correct, score_gsm8k


@pytest.mark.parametrize("output, answer", [
    ("She sells 16 - 3 - 4 = 9 eggs. The answer is 18.", 18.0),            # after the delimiter: first number
    ("The answer is 5,600 dollars, not 12.", 5600.0),                        # thousands separator dropped
    ("First 3, then 4, so 7", 7.0),                                          # no delimiter: last number
    ("It is 42.\nQ: A farmer has 10 cows. The answer is 10.", 42.0),         # the next few-shot question is cut
    ("A loss of -3.5 units", -3.5),
    ("no numbers at all", None),
])
def test_extraction_follows_the_reference(output, answer):
    assert extract_answer(output) == answer


def test_find_number_prefers_the_last_delimiter():
    assert find_number("The answer is 1. Wait. The answer is 2 or 3") == "2"


def test_exact_numeric_match_and_percentage():
    assert is_correct("The answer is 14000.", "14000") and is_correct("so 14,000", "14000.0")
    assert not is_correct("The answer is 14001.", "14000") and not is_correct("none", "14000")
    assert score_gsm8k(["The answer is 1.", "The answer is 3.", "2"], ["1", "2", "2"]) == pytest.approx(200 / 3)
    with pytest.raises(ValueError):
        score_gsm8k([], [])
