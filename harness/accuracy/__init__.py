"""Accuracy: decoding LoadGen's accuracy log back into generated text."""

from __future__ import annotations

from harness.accuracy.log import decode_accuracy_log, read_accuracy_log

__all__ = ["decode_accuracy_log", "read_accuracy_log"]
