import pytest
from rouge_score import rouge_scorer

from harness.accuracy import score_rouge
from harness.accuracy.rouge import postprocess, rouge_metric
from harness.accuracy.sentences import FALLBACK, NLTK_PUNKT, split_lines, splitter

PRED = "The company said profits rose 12 percent. Shares fell in early trading."
REF = "Profits rose 12 percent, the company said. Its shares fell."


def test_known_values_equal_rouge_score_directly():
    scores = score_rouge([PRED], [REF])
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True).score(
        split_lines(REF), split_lines(PRED))
    assert set(scores) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    for key, score in direct.items():
        assert scores[key] == round(score.fmeasure * 100, 4)
    assert all(isinstance(v, float) for v in scores.values())


def test_identical_texts_score_100_and_empty_predictions_score_0():
    assert score_rouge([REF, PRED], [REF, PRED]) == dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum"), 100.0)
    assert score_rouge(["", "   "], [REF, PRED]) == dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum"), 0.0)


def test_metric_module_engines_agree():
    metric = rouge_metric()
    preds, refs = postprocess([PRED, "a b c", ""]), postprocess([REF, "b c d", "x"])
    fast = metric.compute(predictions=preds, references=refs, use_aggregator=False)
    slow = metric.compute(predictions=preds, references=refs, use_aggregator=False, engine="rouge_score")
    assert fast == slow
    with pytest.raises(ValueError, match="engine"):
        metric.compute(predictions=preds, references=refs, engine="nope")


def test_postprocessing_puts_one_sentence_per_line():
    assert postprocess(["  Mr. Smith went to Washington. He met Dr. Jones.  "]) == [
        "Mr. Smith went to Washington.\nHe met Dr. Jones."]
    assert splitter().name in (NLTK_PUNKT, FALLBACK)


def test_with_nltk_punkt_data_the_split_is_the_mlperf_recipes():
    nltk = pytest.importorskip("nltk")
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        pytest.skip("nltk punkt data not installed (the offline fallback splitter is in use)")
    assert splitter().name == NLTK_PUNKT
    text = "The U.S. economy grew. Mr. Smith said so."
    assert split_lines(text) == "\n".join(nltk.sent_tokenize(text))


def test_mismatched_lengths_and_empty_input_are_errors():
    from harness.errors import AccuracyError

    with pytest.raises(AccuracyError, match="2 predictions but 1 references"):
        score_rouge(["a", "b"], ["a"])
    with pytest.raises(AccuracyError, match="nothing to score"):
        score_rouge([], [])
