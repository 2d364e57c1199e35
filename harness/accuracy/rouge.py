"""The MLPerf ROUGE recipe: postprocess, score through ``evaluate``, mean x 100 rounded to 4 places.

``evaluate`` loads the metric module from this repository by path
(:mod:`harness.accuracy.metrics.mlperf_rouge`), so nothing is fetched from the hub.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.accuracy.rouge_engine import ROUGE_TYPES
from harness.accuracy.sentences import split_lines
from harness.errors import AccuracyError

METRIC_MODULE = Path(__file__).resolve().parent / "metrics" / "mlperf_rouge.py"


def _import_evaluate():
    """``import evaluate``, without the transformers pipelines its evaluator imports eagerly.

    ``evaluate.evaluator`` tries ``from transformers.pipelines import ...`` at import, which
    costs seconds when transformers is installed, and the metric does not use it. A ``None`` in
    ``sys.modules`` makes that import fail fast (evaluate handles ImportError); it is removed
    again so later code can import the real module.
    """
    if "evaluate" in sys.modules or "transformers.pipelines" in sys.modules:
        import evaluate

        return evaluate
    sys.modules["transformers.pipelines"] = None  # type: ignore[assignment]
    try:
        import evaluate
    finally:
        if sys.modules.get("transformers.pipelines", 0) is None:
            del sys.modules["transformers.pipelines"]
    return evaluate


@functools.cache
def rouge_metric():
    """The repository's ROUGE metric module, loaded by ``evaluate`` from its path."""
    return _import_evaluate().load(str(METRIC_MODULE), keep_in_memory=True)


def postprocess(texts: Sequence[str]) -> list[str]:
    """Strip and put one sentence per line (rougeLsum needs the newlines), as the references do."""
    return [split_lines(t) for t in texts]


def rouge_of_lines(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-sample F-measures (0..1) of texts already postprocessed (one sentence per line)."""
    if len(predictions) != len(references):
        raise AccuracyError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise AccuracyError("nothing to score: no predictions")
    return rouge_metric().compute(predictions=list(predictions), references=list(references),
                                  rouge_types=list(ROUGE_TYPES), use_stemmer=True, use_aggregator=False)


def rouge_per_sample(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-sample F-measures (0..1) of raw texts, postprocessed as the MLPerf recipe does."""
    return rouge_of_lines(postprocess(predictions), postprocess(references))


def mean_score(values: Sequence[float]) -> float:
    """MLPerf's report: mean x 100, rounded to 4 decimals, as a plain float."""
    return round(float(np.mean(values) * 100), 4)


def score_rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """rouge1, rouge2, rougeL, rougeLsum of ``predictions`` against ``references``, MLPerf-style."""
    per_sample = rouge_per_sample(predictions, references)
    return {k: mean_score(per_sample[k]) for k in ROUGE_TYPES}
