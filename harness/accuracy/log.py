"""Reading ``mlperf_log_accuracy.json``: hex-encoded int32 token ids per QSL index.

LoadGen writes ``{"seq_id", "qsl_idx", "data", ...}`` entries; ``data`` is the hex of the
bytes the SUT returned, which are int32 token ids (MLPERF_FACTS.md; decoding them as int64 is a
classic bug). Duplicate ``qsl_idx`` entries are dropped, as the reference scripts do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from harness.errors import AccuracyError


def read_accuracy_log(path: Path) -> dict[int, list[int]]:
    """QSL index -> output token ids, first entry per index kept."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AccuracyError(f"accuracy log not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AccuracyError(f"accuracy log {path} is corrupt or truncated: {exc}") from exc
    if not isinstance(entries, list):
        raise AccuracyError(f"accuracy log {path}: expected a JSON list of entries")
    outputs: dict[int, list[int]] = {}
    for n, entry in enumerate(entries):
        try:
            idx = int(entry["qsl_idx"])
            raw = bytes.fromhex(entry["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AccuracyError(f"accuracy log {path}: entry {n} is malformed ({exc})") from exc
        if len(raw) % 4:
            raise AccuracyError(f"accuracy log {path}: entry {n} is not int32 token data "
                                f"({len(raw)} bytes)")
        outputs.setdefault(idx, np.frombuffer(raw, dtype="<i4").tolist())
    return outputs


def decode_accuracy_log(path: Path, decode: Callable[[Sequence[int]], str]) -> dict[int, str]:
    """QSL index -> generated text, using the SUT's tokenizer's ``decode``."""
    return {idx: decode(ids) for idx, ids in read_accuracy_log(path).items()}
