"""The torch thread: one thread running a process's torch jobs in order."""

from __future__ import annotations

import threading

import pytest

from harness.sut.hf.torch_thread import TorchThread


def test_call_runs_on_the_thread_returns_and_raises():
    t = TorchThread(name="t-test")
    assert t.call(lambda: threading.current_thread().name) == "t-test"
    assert t.call(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ValueError, match="boom"):
        t.call(lambda: (_ for _ in ()).throw(ValueError("boom")))
    # a call made on the thread itself runs at once instead of waiting for itself
    assert t.call(lambda: t.call(lambda: "nested")) == "nested"


def test_started_jobs_run_in_order_and_a_failure_does_not_stop_the_thread(caplog):
    t = TorchThread(name="t-test-2")
    order: list[int] = []
    gate = threading.Event()
    first = t.start(lambda: (gate.wait(5), order.append(1)))
    failing = t.start(lambda: 1 / 0)
    third = t.start(lambda: order.append(3))
    assert not first.is_set()
    gate.set()
    assert third.wait(5) and first.is_set() and failing.is_set()
    assert order == [1, 3]
    assert "ZeroDivisionError" in caplog.text  # nobody waited for it: logged
