"""Real HTTP servers on 127.0.0.1 for the sut=openai tests: harness-serve and the scripted stub.

Each runs in its own process; start-up and shutdown are bounded, so a broken server fails the
test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator

START_TIMEOUT_S = 60  # harness-serve sut=hf loads torch: tens of seconds on a loaded 2-core machine


@contextlib.contextmanager
def server(*argv: str) -> Iterator[str]:
    """Start ``argv`` (prints its URL on the first line), yield the base URL, then kill it."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        try:
            first = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"{argv} did not start within {START_TIMEOUT_S}s") from None
        url = next((w for w in first.split() if w.startswith("http://")), None)
        assert url, f"no URL in {first!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)


def stub(*args: str) -> contextlib.AbstractContextManager[str]:
    return server("-m", "harness.bench.stub_server", "--port", "0", *args)


def serve(*overrides: str) -> contextlib.AbstractContextManager[str]:
    return server("-m", "harness.serve", "--port", "0", *overrides)
