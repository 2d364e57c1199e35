"""Reading ``mlperf_log_accuracy.json``: hex-encoded int32 token ids per QSL index.

LoadGen writes ``{"seq_id", "qsl_idx", "data", "token_count", ["token_data"]}`` entries; ``data``
is the hex of the bytes the SUT returned, which are int32 token ids (MLPERF_FACTS.md; decoding
them as int64 is a classic bug); ``token_data`` is the first token reported separately in
streaming scenarios. Duplicate ``qsl_idx`` entries are dropped for scoring, as the reference
scripts do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import AccuracyError


@dataclass(frozen=True)
class LogEntry:
    """One response as LoadGen logged it."""

    qsl_idx: int
    token_ids: tuple[int, ...]
    first_token_ids: tuple[int, ...] | None  # token_data, when LoadGen logged it
    token_count: int | None


def _ids(hex_data: str, path: Path, n: int, key: str) -> tuple[int, ...]:
    raw = bytes.fromhex(hex_data)
    if len(raw) % 4:
        raise AccuracyError(f"accuracy log {path}: entry {n} '{key}' is not int32 token data ({len(raw)} bytes)")
    return tuple(np.frombuffer(raw, dtype="<i4").tolist())


def read_accuracy_entries(path: Path) -> list[LogEntry]:
    """Every entry of the log, in file order (duplicates kept)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AccuracyError(f"accuracy log not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AccuracyError(f"accuracy log {path} is corrupt or truncated: {exc}") from exc
    if not isinstance(entries, list):
        raise AccuracyError(f"accuracy log {path}: expected a JSON list of entries")
    out = []
    for n, entry in enumerate(entries):
        try:
            idx = int(entry["qsl_idx"])
            data = _ids(entry["data"], path, n, "data")
            first = _ids(entry["token_data"], path, n, "token_data") if "token_data" in entry else None
            count = int(entry["token_count"]) if "token_count" in entry else None
        except (KeyError, TypeError, ValueError) as exc:
            raise AccuracyError(f"accuracy log {path}: entry {n} is malformed ({exc})") from exc
        out.append(LogEntry(idx, data, first, count))
    return out


def read_accuracy_log(path: Path) -> dict[int, list[int]]:
    """QSL index -> output token ids, first entry per index kept."""
    outputs: dict[int, list[int]] = {}
    for entry in read_accuracy_entries(path):
        outputs.setdefault(entry.qsl_idx, list(entry.token_ids))
    return outputs


def decode_accuracy_log(path: Path, decode: Callable[[Sequence[int]], str]) -> dict[int, str]:
    """QSL index -> generated text, using the SUT's tokenizer's ``decode``."""
    return {idx: decode(ids) for idx, ids in read_accuracy_log(path).items()}


def file_sha256(path: Path) -> str:
    """sha256 of the full accuracy log, as accuracy.txt's ``hash=`` line records it."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
