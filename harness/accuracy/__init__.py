"""Accuracy: decoding LoadGen's accuracy log, ROUGE as MLPerf scores it, targets and compliance.

``score_rouge(predictions, references)`` is the scorer on its own; ``score_accuracy_log`` scores
a run's log and judges it against the benchmark's targets.
"""

from __future__ import annotations

from typing import Any

from harness.accuracy.log import decode_accuracy_log, read_accuracy_entries, read_accuracy_log

__all__ = ["decode_accuracy_log", "read_accuracy_entries", "read_accuracy_log", "score_rouge"]


def __getattr__(name: str) -> Any:
    # The scorer imports nltk and rouge-score (seconds): only when asked for, not in every LoadGen
    # test process that merely reads its accuracy log.
    if name == "score_rouge":
        from harness.accuracy.rouge import score_rouge

        return score_rouge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
