"""GSM8K accuracy as the Mixtral 8x7B reference scores it (``language/mixtral-8x7b/evaluate-accuracy.py``).

The answer is the first number after the last "The answer is" in the output (cut at the first
``\\nQ:``, where a model starts the next few-shot question), else the output's last number;
thousands separators are dropped and it must equal the ground truth as a float. The score is
the percentage of exact matches, unrounded (as the reference prints it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ANSWER_DELIMITER = "The answer is"
_NUMBER = re.compile(r"-?[\d,]*\.?\d+", re.MULTILINE | re.DOTALL | re.IGNORECASE)


def find_number(text: str, delimiter: str = ANSWER_DELIMITER) -> str:
    """The most relevant number in ``text``, as the reference's ``find_number``; "" when none."""
    if delimiter in text:
        numbers = _NUMBER.findall(text.split(delimiter)[-1])
        if numbers:
            return numbers[0]
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else ""


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def extract_answer(output: str) -> float | None:
    return _float(find_number(output.split("\nQ:")[0]).replace(",", ""))


def is_correct(output: str, truth: str) -> bool:
    answer = extract_answer(output)
    return answer is not None and answer == _float(str(truth))


def score_gsm8k(outputs: Sequence[str], truths: Sequence[str]) -> float:
    """Percentage of outputs whose extracted answer equals the ground truth."""
    if not outputs:
        raise ValueError("no GSM8K outputs to score")
    return 100.0 * sum(is_correct(o, t) for o, t in zip(outputs, truths, strict=True)) / len(outputs)
