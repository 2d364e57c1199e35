"""The ROUGE benchmark's generated pairs and its alternated, checked timing (small sizes)."""

from __future__ import annotations

import random

from harness.bench import rouge_speed
from harness.bench.rouge_speed import FUNCTION_WORDS, make_pairs, make_vocabulary, time_sides


def test_the_pairs_are_generated_deterministically_offline():
    a, b = make_pairs(50, seed=3), make_pairs(50, seed=3)
    assert a == b
    assert make_pairs(50, seed=4).predictions != a.predictions


def test_each_prediction_is_a_summary_of_the_same_article_as_its_reference():
    corpus = make_pairs(200, seed=1)
    for pred, ref in zip(corpus.predictions, corpus.references, strict=True):
        assert 2 <= pred.count(".") <= 5 and 3 <= ref.count(".") <= 4  # sentences
        assert "\n" in pred + ref  # split into lines as the recipe does (rougeLsum)
    # Shared content words (beyond the function words) in nearly every pair: both come from one article.
    common = set(FUNCTION_WORDS)
    shared = [set(p.lower().replace(".", "").split()) & set(r.lower().replace(".", "").split()) - common
              for p, r in zip(corpus.predictions, corpus.references, strict=True)]
    assert sum(map(bool, shared)) >= 0.95 * len(shared)
    # ...while unrelated pairs (a prediction against another article's reference) share far less.
    unrelated = [set(p.lower().split()) & set(r.lower().split()) - common
                 for p, r in zip(corpus.predictions, corpus.references[1:], strict=False)]
    assert sum(map(len, shared)) > 3 * sum(map(len, unrelated))


def test_the_vocabulary_is_cnn_dailymail_sized_and_led_by_function_words():
    vocab = make_vocabulary(20_000, random.Random(0))
    assert len(vocab) == len(set(vocab)) == 20_000
    assert vocab[:3] == ["the", "of", "to"]
    corpus = make_pairs(3000, seed=0)
    assert corpus.vocabulary == 20_000 and corpus.distinct_words > 10_000


def test_sides_alternate_and_every_runs_scores_are_compared(monkeypatch):
    order: list[str] = []

    def side(name, shift):
        def score(preds, refs):
            order.append(name)
            return [(0.5 + shift, 0.5, 0.5, 0.5)] * len(preds)
        return score

    monkeypatch.setattr(rouge_speed, "SIDES", {"rouge-score loop": side("base", 0.0),
                                               "harness scorer": side("ours", 0.001)})
    corpus = make_pairs(5, seed=0)
    times, diff, _ = time_sides(corpus, 3)
    assert order == ["base", "ours", "ours", "base", "base", "ours"]
    assert len(times["harness scorer"]) == 3 and abs(diff - 0.001) < 1e-12


def test_the_real_scorers_agree_on_generated_pairs():
    corpus = make_pairs(30, seed=2)
    times, diff, scores = time_sides(corpus, 1)
    assert diff <= rouge_speed.TOLERANCE and len(scores) == 30
