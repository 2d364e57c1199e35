"""Scoring one accuracy log end to end: ROUGE, lengths, verdict, hash, and ``accuracy.txt``.

Follows the MLPerf accuracy recipe (MLPERF_FACTS.md): first entry per ``qsl_idx``; outputs
decoded with ``skip_special_tokens=True`` by the SUT's tokenizer (done by the caller);
sentence-split, ROUGE with stemming, mean x 100 rounded to 4 decimals; ``gen_len`` = characters of
the postprocessed predictions, ``gen_num`` = samples, ``tokens_per_sample`` = output tokens per
sample rounded to 1 decimal.

Datasets that mix tasks (Mixtral 8x7B: OpenOrca, GSM8K, MBXP; ``tasks`` gives each record's)
are scored per task as the reference does: ROUGE and ``gen_len`` on the OpenOrca part, ``gsm8k``
(exact-match %) on the GSM8K part; MBXP needs the generated code run against its tests in 13
languages, which the harness does not do, so ``mbxp`` is absent and its target is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.accuracy.gsm8k import score_gsm8k
from harness.accuracy.judge import judge
from harness.accuracy.log import file_sha256, read_accuracy_log
from harness.accuracy.rouge import mean_score, postprocess, rouge_of_lines
from harness.accuracy.rouge_engine import ROUGE_TYPES
from harness.accuracy.sentences import splitter
from harness.config import BenchmarkConfig
from harness.errors import AccuracyError

ACCURACY_TXT = "accuracy.txt"


# Metrics of mixed datasets the harness does not compute, and why (for the judge's report).
NOT_SCORED = {"mbxp": "MBXP needs the generated code executed against its tests (the reference's "
                      "evaluate_mbxp.py, 13 language toolchains); the harness does not run it"}


def score_accuracy_log(log_path: Path, predictions: Mapping[int, str], references: Sequence[str],
                       benchmark: BenchmarkConfig, tasks: Sequence[str | None] | None = None) -> dict[str, Any]:
    """The ``accuracy`` section of results.json for one accuracy log.

    ``predictions`` maps QSL index -> decoded text for every index in the log; ``tasks`` (when
    the dataset mixes tasks) names each record's: GSM8K, MBXP, anything else is scored by ROUGE.
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
    task = (lambda i: tasks[i]) if tasks else (lambda i: None)
    gsm8k = [i for i in order if task(i) == "GSM8K"]
    by_rouge = [i for i in order if task(i) not in ("GSM8K", "MBXP")]
    scores: dict[str, Any] = {}
    preds: list[str] = []
    if by_rouge:
        preds = postprocess([predictions[i] for i in by_rouge])
        per_sample = rouge_of_lines(preds, postprocess([references[i] for i in by_rouge]))
        scores.update({k: mean_score(per_sample[k]) for k in ROUGE_TYPES})
    if gsm8k:
        scores["gsm8k"] = score_gsm8k([predictions[i] for i in gsm8k], [references[i] for i in gsm8k])
    scores["gen_len"] = int(sum(len(p) for p in preds))
    scores["gen_num"] = len(order)
    scores["tokens_per_sample"] = round(sum(len(token_ids[i]) for i in order) / len(order), 1)
    not_scored = {**NOT_SCORED, **({} if gsm8k else {"gsm8k": "the dataset has no GSM8K records"})}
    return {
        "scores": scores,
        **judge(scores, benchmark, len(order), not_scored=not_scored),
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
