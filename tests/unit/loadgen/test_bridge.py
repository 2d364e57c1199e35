"""The bridge's routing of issued queries to a streaming SUT: which thread calls ``submit``."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from harness.config import RunOptions
from harness.loadgen.bridge import _Bridge
from harness.sut.base import Sample, TokenStream
from harness.sut.tokenizer import WordTokenizer


@dataclass(frozen=True)
class Query:  # what LoadGen passes to issue_cb: a query id and a sample index
    id: int
    index: int


class Recording:
    """A streaming SUT that only notes which thread submitted each sample (it never answers)."""

    name = "recording"
    max_batch_size = 1
    concurrency = 1
    streaming = True

    def __init__(self, inline: bool) -> None:
        self.submit_inline = inline
        self.tokenizer = WordTokenizer(["a"])
        self.threads: list[str] = []
        self.submitted = threading.Semaphore(0)

    def load(self, samples) -> None:
        pass

    def generate(self, batch):
        raise NotImplementedError

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        self.threads.append(threading.current_thread().name)
        self.submitted.release()

    def close(self) -> None:
        pass


@pytest.mark.parametrize("inline", [True, False])
def test_a_submit_inline_sut_is_called_on_loadgens_thread_others_on_the_dispatcher(inline):
    sut = Recording(inline)
    samples = [Sample(i, f"p{i}", f"p{i}") for i in range(3)]
    bridge = _Bridge(sut, samples, streaming=True, options=RunOptions(sample_timeout_s=60))
    bridge.start()
    try:
        issuer = threading.Thread(target=bridge.issue, args=([Query(7, 0), Query(8, 2)],), name="loadgen-issue")
        issuer.start()
        issuer.join(5)
        assert all(sut.submitted.acquire(timeout=5) for _ in range(2))
    finally:
        bridge.outstanding.clear()  # nothing was answered: no LoadGen test is running to hear of it
        bridge.stop()
    assert sut.threads == (["loadgen-issue"] * 2 if inline else ["harness-dispatch"] * 2)
    assert bridge.stats.issued == 2


def test_the_null_sut_is_answered_on_loadgens_thread():
    # sut=null answers instantly and never blocks, so the bridge benchmark measures the bridge's
    # own per-sample path, not the hand-over to the dispatcher thread (issue 21).
    from harness.sut.fakes import NullParams, NullSUT

    class NullNoting(NullSUT):  # records the thread and leaves the sample unanswered: no LoadGen test runs
        def submit(self, sample: Sample, stream: TokenStream) -> None:
            self.thread = threading.current_thread().name

    sut = NullNoting(NullParams(), WordTokenizer(["a"]))
    bridge = _Bridge(sut, [Sample(0, "p", "p")], streaming=True, options=RunOptions(sample_timeout_s=60))
    bridge.start()
    try:
        issuer = threading.Thread(target=bridge.issue, args=([Query(1, 0)],), name="loadgen-issue")
        issuer.start()
        issuer.join(5)
    finally:
        bridge.outstanding.clear()
        bridge.stop()
    assert sut.thread == "loadgen-issue"
