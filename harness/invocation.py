"""How a tool was invoked, for its usage and error lines: ``harness audit`` through the front door
(which sets ``sys.argv[0]`` so), else its ``harness-<command>`` alias."""

from __future__ import annotations

import sys


def invoked_as(alias: str) -> str:
    name = sys.argv[0] if sys.argv else ""
    return name if name.startswith("harness ") else alias
