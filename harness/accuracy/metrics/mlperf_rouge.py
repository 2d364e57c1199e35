"""ROUGE as an ``evaluate`` metric module, loaded by path (the hub's rouge script cannot be fetched).

Same inputs and outputs as the hub's ``rouge`` metric that the MLPerf reference scripts call
(``compute(predictions=, references=, use_stemmer=True, use_aggregator=False)`` gives per-sample
F-measures), computed by rouge-score: with ``engine="fast"`` (default) by the exact cached-stem
engine in :mod:`harness.accuracy.rouge_engine`, with ``engine="rouge_score"`` by
``RougeScorer`` itself. Both give identical per-sample scores.
"""

import datasets
import evaluate

_DESCRIPTION = "ROUGE F-measures (rouge1, rouge2, rougeL, rougeLsum) as MLPerf's LLM references compute them."
_KWARGS = """
Args:
    predictions: list of generated texts (sentences separated by newlines for rougeLsum).
    references: list of reference texts, same length.
    rouge_types: subset of rouge1, rouge2, rougeL, rougeLsum (default all four).
    use_stemmer: Porter stemming of words longer than 3 characters (MLPerf: True).
    use_aggregator: True gives the mean per type; False gives per-sample lists.
    engine: "fast" (exact, cached stems) or "rouge_score" (RougeScorer per pair).
Returns:
    dict rouge type -> mean F-measure or list of per-sample F-measures.
"""
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MlperfRouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=True, use_aggregator=True,
                 engine="fast"):
        types = list(rouge_types or ROUGE_TYPES)
        unknown = [t for t in types if t not in ROUGE_TYPES]
        if unknown:
            raise ValueError(f"unknown rouge types {unknown}; known: {list(ROUGE_TYPES)}")
        if engine == "fast":
            from harness.accuracy.rouge_engine import score_pairs

            rows = score_pairs(predictions, references, use_stemmer=use_stemmer)
            per_type = {t: [row[ROUGE_TYPES.index(t)] for row in rows] for t in types}
        elif engine == "rouge_score":
            from rouge_score import rouge_scorer

            scorer = rouge_scorer.RougeScorer(rouge_types=types, use_stemmer=use_stemmer)
            scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
            per_type = {t: [s[t].fmeasure for s in scores] for t in types}
        else:
            raise ValueError(f"engine must be 'fast' or 'rouge_score', not {engine!r}")
        if use_aggregator:
            return {t: (sum(v) / len(v) if v else 0.0) for t, v in per_type.items()}
        return per_type
