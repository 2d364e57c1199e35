import json
import random

import pytest
from rouge_score import rouge_scorer

from harness.accuracy.rouge_engine import ROUGE_TYPES, Tokenizer, lcs_indices, lcs_length, score_pairs
from harness.datasets import BUNDLED_SAMPLE


def _sentences() -> list[str]:
    rows = [json.loads(line) for line in BUNDLED_SAMPLE.read_text().splitlines() if line.strip()]
    return [s.strip() + "." for r in rows for s in r["article"].split(". ") if s.strip()]


def _reference_scores(preds, refs):
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    return [tuple(scorer.score(r, p)[t].fmeasure for t in ROUGE_TYPES) for p, r in zip(preds, refs, strict=True)]


def test_scores_equal_rouge_score_per_sample():
    rng = random.Random(7)
    sents = _sentences()
    preds = ["\n".join(rng.sample(sents, rng.randint(0, 5))) for _ in range(300)]
    refs = ["\n".join(rng.sample(sents, rng.randint(1, 4))) for _ in range(300)]
    # Edge cases: empty, punctuation only, repeated words, one long line, blank lines.
    preds += ["", "... !!", "the the the the", " ".join(sents[:8]), "a\n\n\nb c", "Running runs ran."]
    refs += ["x y", "?", "the cat the cat the", "\n".join(sents[3:9]), "b\na", "runner running"]
    fast = score_pairs(preds, refs)
    for got, want in zip(fast, _reference_scores(preds, refs), strict=True):
        assert got == pytest.approx(want, abs=1e-12)


def test_lcs_helpers_match_rouge_score_on_tie_heavy_sequences():
    rng = random.Random(3)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 14))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 14))]
        table = rouge_scorer._lcs_table(a, b)
        assert lcs_length(a, b) == table[-1][-1]
        assert lcs_indices(a, b) == rouge_scorer.lcs_ind(a, b)


def test_tokenizer_is_rouge_scores_tokenizer_with_stems_cached():
    text = "The runners were running quickly; 3 U.S. states!"
    from rouge_score.tokenizers import DefaultTokenizer

    tok = Tokenizer(use_stemmer=True)
    assert tok.tokenize(text) == DefaultTokenizer(use_stemmer=True).tokenize(text)
    assert tok.tokenize(text) == tok.tokenize(text)  # second call served from the stem cache
    assert tok.sentences("a b\n\nc") == [["a", "b"], ["c"]]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score_pairs(["a", "b"], ["a"])
