"""Benchmarks of the harness itself."""

from __future__ import annotations

import os


def load_average(cores: bool = False) -> str:
    """The machine's load average, printed beside every benchmark's figures (a shared machine's
    other jobs move them)."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)" + (f" on {os.cpu_count()} cores" if cores else "")
