"""Progress lines: shown on a terminal, hidden (DEBUG) in CI and when stderr is not a TTY."""

import io
import logging

from harness.loadgen import bridge


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_info_on_a_terminal_only(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert bridge.progress_level() == logging.INFO
    monkeypatch.setenv("CI", "true")
    assert bridge.progress_level() == logging.DEBUG
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe or a file
    assert bridge.progress_level() == logging.DEBUG
