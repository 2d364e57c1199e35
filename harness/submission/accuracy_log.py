"""The accuracy log in a tree: truncated to its first and last 4096 bytes (MLPERF_FACTS.md).

Head and tail are joined by the official truncation tool's marker (``tools/submission/
truncate_accuracy_log.py``: ``\n\n...\n\n``), so a truncated log is 8,199 bytes, never JSON, and
under the checker's 10 KiB limit.

The full log's sha256 stays in accuracy.txt; its size and the sha256 of the truncated copy go
into the manifest, so the checker can tell that the copy is the truncation written for that log.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

KEEP_BYTES = 4096
MARKER = b"\n\n...\n\n"


def truncated_size(full_size: int) -> int:
    """Bytes of the copy of a log of ``full_size`` bytes: the whole log when it is small."""
    return full_size if full_size <= 2 * KEEP_BYTES else 2 * KEEP_BYTES + len(MARKER)


def truncate(source: Path, target: Path) -> None:
    size = source.stat().st_size
    with source.open("rb") as f:
        if size <= 2 * KEEP_BYTES:
            data = f.read()
        else:
            head = f.read(KEEP_BYTES)
            f.seek(size - KEEP_BYTES)
            data = head + MARKER + f.read()
    target.write_bytes(data)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
