"""Shared fixtures: composing configs as the CLI does, and running the harness in-process."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness.config import HarnessConfig, compose
from harness.results import RunResult
from harness.run import run_benchmark


@pytest.fixture(scope="session", autouse=True)
def harness_cache(tmp_path_factory):
    """The embedded tiny model is created per test session, not in the user's ~/.cache.

    Set in the environment, so runs in child processes and CLI subprocesses share it.
    """
    path = tmp_path_factory.mktemp("harness-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(path))
        yield path


@pytest.fixture
def make_config():
    def make(*overrides: str) -> HarnessConfig:
        return compose(list(overrides))

    return make


def run_bounded(config: HarnessConfig, output_dir: Path, timeout_s: float = 120) -> RunResult:
    """run_benchmark in a daemon thread, failing the test if it does not end in time."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = run_benchmark(config, output_dir)
        except BaseException as exc:  # re-raised on the test's thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), f"run did not finish within {timeout_s}s (hang)"
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.fixture
def run(make_config, tmp_path):
    """Compose with overrides and run in-process, bounded in time."""

    def go(*overrides: str, timeout_s: float = 120) -> RunResult:
        return run_bounded(make_config(*overrides), tmp_path / "run", timeout_s)

    return go
