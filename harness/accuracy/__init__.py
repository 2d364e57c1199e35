"""Accuracy: decoding LoadGen's accuracy log, ROUGE as MLPerf scores it, targets and compliance.

``score_rouge(predictions, references)`` is the scorer on its own; ``score_accuracy_log`` scores
a run's log and judges it against the benchmark's targets.
"""

from __future__ import annotations

from harness.accuracy.log import decode_accuracy_log, read_accuracy_entries, read_accuracy_log
from harness.accuracy.rouge import score_rouge

__all__ = ["decode_accuracy_log", "read_accuracy_entries", "read_accuracy_log", "score_rouge"]
