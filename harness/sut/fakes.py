"""SUTs with known behaviour, for tests, the default run and measuring the harness itself.

- ``echo``: outputs the sample's own input tokens after a configured TTFT and time per output
  token, so every latency LoadGen reports can be checked against the configuration.
- ``oracle``: outputs the dataset reference, so accuracy must come out perfect.
- ``failing``: like echo, but raises (or never answers) on chosen samples.
- ``queue``: like echo, but a server with ``slots`` parallel slots and a FIFO queue in front of
  them, so its capacity is known (``slots / service time``) and TTFT grows without bound above
  it: the system a peak-load search (``harness-peak``) is tested against.
- ``null``: answers instantly on the caller's thread; measures the harness's own overhead.

Streaming fakes share one timer thread (a heap of deadlines) instead of a thread per sample,
so thousands of in-flight samples cost nothing and each token is released on time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.config import bounded
from harness.errors import ConfigError
from harness.sut.base import SUT, CollectingStream, Completion, Sample, SUTContext, SUTInfo, TokenStream
from harness.sut.tokenizer import WordTokenizer

log = logging.getLogger(__name__)


class TimerThread:
    """Runs callbacks at monotonic deadlines on one daemon thread."""

    def __init__(self, name: str) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call_at(self, deadline: float, fn: Callable[[], None]) -> None:
        with self._cv:
            heapq.heappush(self._heap, (deadline, next(self._seq), fn))
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cv.wait(self._heap[0][0] - now if self._heap else None)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a callback must never kill the timer
                log.exception("timer callback failed")


@dataclass(frozen=True)
class EchoParams:
    """Settings of the echo and oracle fakes (times in milliseconds)."""

    ttft_ms: float = bounded(10.0, ge=0)
    tpot_ms: float = bounded(1.0, ge=0)
    output_tokens: int = bounded(64, ge=1)
    max_batch_size: int = bounded(32, ge=1)
    concurrency: int = bounded(1, ge=1)
    # false makes the fake batch-only, like a SUT that cannot stream (Offline only).
    streaming: bool = True


@dataclass(frozen=True)
class OracleParams(EchoParams):
    ttft_ms: float = bounded(0.0, ge=0)
    tpot_ms: float = bounded(0.0, ge=0)


@dataclass(frozen=True)
class FailingParams(EchoParams):
    """``fail_indices`` and every ``fail_every``-th index fail; ``failure`` says how."""

    fail_indices: tuple[int, ...] = bounded((), ge=0)
    fail_every: int = bounded(0, ge=0)
    failure: str = "raise"  # raise | hang


@dataclass(frozen=True)
class QueueParams(EchoParams):
    """Echo's timing per request, served by ``slots`` parallel slots in arrival order.

    A request holds a slot for ``ttft_ms + (output_tokens - 1) * tpot_ms``, so the server
    completes at most ``slots / service time`` requests per second (its capacity); requests
    beyond that wait in line, and their wait is part of the TTFT LoadGen measures.
    """

    slots: int = bounded(8, ge=1)

    @property
    def service_s(self) -> float:
        return (self.ttft_ms + max(self.output_tokens - 1, 0) * self.tpot_ms) / 1000

    @property
    def capacity_qps(self) -> float:
        """Requests per second the slots can complete (inf for a zero service time)."""
        return self.slots / self.service_s if self.service_s > 0 else float("inf")


@dataclass(frozen=True)
class NullParams:
    output_tokens: int = bounded(2, ge=1)
    max_batch_size: int = bounded(1024, ge=1)
    concurrency: int = bounded(1, ge=1)


class _FakeBase(SUT):
    """Fakes tokenize with a word-level vocabulary built from the run's own dataset."""

    @classmethod
    def create(cls, params: Any, ctx: SUTContext) -> Any:
        return cls(params, WordTokenizer(ctx.corpus))

    def describe(self) -> SUTInfo:
        """No model runs, so there is no roofline to estimate."""
        return SUTInfo(name=self.name, runs_model=False, decode_batch=self.max_batch_size,
                       decode_batch_key="max_batch_size")


class EchoSUT(_FakeBase):
    """Deterministic tokens derived from the input, released on a configured schedule."""

    Params = EchoParams
    name = "echo"

    def __init__(self, params: EchoParams, tokenizer: WordTokenizer) -> None:
        self.params = params
        self.tokenizer = tokenizer
        self.max_batch_size = params.max_batch_size
        self.concurrency = params.concurrency
        self.streaming = params.streaming
        self._timer: TimerThread | None = None
        self._lock = threading.Lock()

    def output_for(self, sample: Sample) -> tuple[int, ...]:
        """The input's tokens, cycled or cut to ``output_tokens``."""
        source = self.tokenizer.encode(sample.text) or [self.tokenizer.eos_token_id or 0]
        n = self.params.output_tokens
        return tuple(itertools.islice(itertools.cycle(source), n))

    def load(self, samples: Sequence[Sample]) -> None:
        del samples  # nothing to prepare: outputs are derived on demand

    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        outputs = [self.output_for(s) for s in batch]
        longest = max((len(o) for o in outputs), default=0)
        # A batch shares its prefill and decode steps, as a batched model's would.
        time.sleep(self._duration_s(longest))
        return [Completion(s.index, o) for s, o in zip(batch, outputs, strict=True)]

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        tokens = self.output_for(sample)
        start = time.monotonic()
        timer = self._ensure_timer()
        first_at = start + self.params.ttft_ms / 1000
        timer.call_at(first_at, lambda: stream.emit(tokens[:1]))

        def rest() -> None:
            stream.emit(tokens[1:])
            stream.finish()

        # Only the first token and the end are observable by LoadGen (TTFT, and TPOT from
        # the end-to-end latency), so the rest is released as one chunk at its due time.
        timer.call_at(start + self._duration_s(len(tokens)), rest)

    def close(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()

    def _duration_s(self, n_tokens: int) -> float:
        if n_tokens == 0:
            return 0.0
        return (self.params.ttft_ms + (n_tokens - 1) * self.params.tpot_ms) / 1000

    def _ensure_timer(self) -> TimerThread:
        with self._lock:
            if self._timer is None:
                self._timer = TimerThread(f"{self.name}-timer")
            return self._timer


class OracleSUT(EchoSUT):
    """Outputs the dataset reference verbatim (ignoring ``output_tokens``)."""

    Params = OracleParams
    name = "oracle"

    def output_for(self, sample: Sample) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(sample.reference or ""))


class FailingSUT(EchoSUT):
    """Echo, except that chosen samples raise or never answer."""

    Params = FailingParams
    name = "failing"
    params: FailingParams

    def fails(self, sample: Sample) -> bool:
        p = self.params
        return sample.index in p.fail_indices or (p.fail_every > 0 and sample.index % p.fail_every == 0)

    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        bad = [s.index for s in batch if self.fails(s)]
        if bad and self.params.failure == "hang":
            threading.Event().wait()  # never returns: the bridge's timeout must handle it
        if bad:
            raise RuntimeError(f"failing SUT: refused a batch holding {len(bad)} chosen samples")
        return super().generate(batch)

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        if not self.fails(sample):
            super().submit(sample, stream)
        elif self.params.failure != "hang":
            raise RuntimeError("failing SUT: refused a chosen sample")


class QueueSUT(EchoSUT):
    """Echo behind ``slots`` parallel slots with a FIFO queue: a server of known capacity."""

    Params = QueueParams
    name = "queue"
    params: QueueParams

    def __init__(self, params: QueueParams, tokenizer: WordTokenizer) -> None:
        if params.slots < 1:
            raise ConfigError(f"config key 'sut.slots' must be at least 1, got {params.slots}")
        super().__init__(params, tokenizer)
        self._free = params.slots
        self._waiting: deque[tuple[Sample, Any]] = deque()
        self._slots_lock = threading.Lock()

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        with self._slots_lock:
            if self._free == 0:
                self._waiting.append((sample, stream))
                return
            self._free -= 1
        self._serve(sample, stream, time.monotonic())

    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        # Offline goes through the same slots, so its throughput is the same capacity.
        collectors = [CollectingStream() for _ in batch]
        for sample, collector in zip(batch, collectors, strict=True):
            self.submit(sample, collector)
        for collector in collectors:
            collector.done.wait()
        return [Completion(s.index, tuple(c.tokens)) for s, c in zip(batch, collectors, strict=True)]

    def _serve(self, sample: Sample, stream: Any, start: float) -> None:
        tokens = self.output_for(sample)
        timer = self._ensure_timer()
        end = start + self._duration_s(len(tokens))
        timer.call_at(start + self.params.ttft_ms / 1000, lambda: stream.emit(tokens[:1]))

        def done() -> None:
            stream.emit(tokens[1:])
            stream.finish()
            self._release(end)

        timer.call_at(end, done)

    def _release(self, at: float) -> None:
        """The slot passes to the next request in line, which starts when this one was due to
        end (not when the timer got round to it), so the capacity is exact on a busy machine."""
        with self._slots_lock:
            if not self._waiting:
                self._free += 1
                return
            sample, stream = self._waiting.popleft()
        self._serve(sample, stream, at)


class NullSUT(_FakeBase):
    """Answers instantly, on the calling thread: the harness's overhead is all that is left."""

    Params = NullParams
    name = "null"
    streaming = True
    # submit answers at once and never blocks, so the bridge may call it on LoadGen's thread: what
    # is left to measure is the bridge's own per-sample path (StreamingSUT.submit_inline).
    submit_inline = True

    def __init__(self, params: NullParams, tokenizer: WordTokenizer) -> None:
        self.tokenizer = tokenizer
        self.max_batch_size = params.max_batch_size
        self.concurrency = params.concurrency
        self._tokens = tuple([tokenizer.eos_token_id or 0] * params.output_tokens)

    def load(self, samples: Sequence[Sample]) -> None:
        del samples

    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        return [Completion(s.index, self._tokens) for s in batch]

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        stream.emit(self._tokens)
        stream.finish()

    def close(self) -> None:
        pass
