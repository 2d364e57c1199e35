"""Usage and error lines name the command as the user typed it."""

import sys

import pytest

from harness import audit
from harness.invocation import invoked_as


def test_the_front_door_name_wins_over_the_alias(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["harness audit", "--help"])
    assert invoked_as("harness-audit") == "harness audit"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/harness-audit", "--help"])
    assert invoked_as("harness-audit") == "harness-audit"


def test_a_tool_reached_through_the_front_door_says_so_in_its_usage(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["harness audit"])
    with pytest.raises(SystemExit) as exc:
        audit.main(["--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: harness audit ")
