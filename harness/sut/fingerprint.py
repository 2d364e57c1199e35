"""A model directory's fingerprint: which weights a run measured, cheap enough for 100 GB models.

sha256 over ``config.json`` and, for every ``*.safetensors`` file in name order, its name, size,
safetensors header (tensor names, dtypes, shapes, offsets) and its first and last MiB of data.
A full content hash would read every byte (minutes for a 70B model); this one changes with
the architecture, any re-shaping or re-typing of a tensor and, in practice, with any re-trained
or re-quantized weights, and costs a few MiB of reads per file.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

EDGE_BYTES = 1 << 20


def model_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        size = weights.stat().st_size
        h.update(f"{weights.name}\0{size}\0".encode())
        with weights.open("rb") as f:
            head = f.read(8)
            if len(head) == 8:
                (header_len,) = struct.unpack("<Q", head)
                h.update(f.read(min(header_len, 100 << 20)))
            h.update(f.read(EDGE_BYTES))
            if size > 2 * EDGE_BYTES:
                f.seek(size - EDGE_BYTES)
                h.update(f.read(EDGE_BYTES))
    return h.hexdigest()
