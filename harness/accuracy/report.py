"""Scoring one accuracy log end to end: ROUGE, lengths, verdict, hash, and ``accuracy.txt``.

Follows the MLPerf accuracy recipe (MLPERF_FACTS.md): first entry per ``qsl_idx``; outputs
decoded with ``skip_special_tokens=True`` by the SUT's tokenizer (done by the caller);
sentence-split, ROUGE with stemming, mean x 100 rounded to 4 decimals; ``gen_len`` = characters of
the postprocessed predictions, ``gen_num`` = samples, ``tokens_per_sample`` = output tokens per
sample rounded to 1 decimal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.accuracy.judge import judge
from harness.accuracy.log import file_sha256, read_accuracy_log
from harness.accuracy.rouge import mean_score, postprocess, rouge_of_lines
from harness.accuracy.rouge_engine import ROUGE_TYPES
from harness.accuracy.sentences import splitter
from harness.config import BenchmarkConfig
from harness.errors import AccuracyError

ACCURACY_TXT = "accuracy.txt"


def score_accuracy_log(log_path: Path, predictions: Mapping[int, str], references: Sequence[str],
                       benchmark: BenchmarkConfig) -> dict[str, Any]:
    """The ``accuracy`` section of results.json for one accuracy log.

    ``predictions`` maps QSL index -> decoded text for every index in the log.
    """
    token_ids = read_accuracy_log(log_path)
    if not token_ids:
        raise AccuracyError(f"accuracy log {log_path} has no entries")
    order = sorted(token_ids)
    outside = [i for i in order if not 0 <= i < len(references)]
    if outside:
        raise AccuracyError(f"accuracy log {log_path} has qsl_idx {outside[0]} but the dataset has "
                            f"{len(references)} records (was the run made on another dataset?)")
    missing = [i for i in order if i not in predictions]
    if missing:
        raise AccuracyError(f"no decoded prediction for qsl_idx {missing[0]} of {log_path}")
    preds = postprocess([predictions[i] for i in order])
    refs = postprocess([references[i] for i in order])
    per_sample = rouge_of_lines(preds, refs)
    scores: dict[str, Any] = {k: mean_score(per_sample[k]) for k in ROUGE_TYPES}
    scores["gen_len"] = int(sum(len(p) for p in preds))
    scores["gen_num"] = len(preds)
    scores["tokens_per_sample"] = round(sum(len(token_ids[i]) for i in order) / len(order), 1)
    return {
        "scores": scores,
        **judge(scores, benchmark, len(order)),
        "splitter": splitter().name,
        "hash": file_sha256(log_path),
        "accuracy_log": str(log_path),
    }


def accuracy_txt(accuracy: Mapping[str, Any]) -> str:
    """MLPerf's accuracy.txt: the printed score dict (plain numbers) and a ``hash=`` line."""
    scores = {k: (int(v) if k in ("gen_len", "gen_num") else float(v)) for k, v in accuracy["scores"].items()}
    return f"{scores}\nhash={accuracy['hash']}\n"


def write_accuracy_txt(directory: Path, accuracy: Mapping[str, Any]) -> Path:
    path = Path(directory) / ACCURACY_TXT
    path.write_text(accuracy_txt(accuracy), encoding="utf-8")
    return path
