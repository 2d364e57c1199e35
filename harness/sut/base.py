"""The system-under-test interface: what the harness asks of any model or server.

The SUT knows nothing about LoadGen. It receives :class:`Sample` values and returns token ids:
in batches (:meth:`SUT.generate`, used by Offline) or streamed (:meth:`StreamingSUT.submit`,
used by Server and SingleStream), reporting tokens to a :class:`TokenStream` as they exist.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Sample:
    """One dataset sample as the SUT sees it.

    ``index`` is the QSL index; ``prompt`` is the templated model input, ``text`` the raw
    input it was built from, ``reference`` the expected output (known to fakes only by
    convention: real SUTs must not look at it).
    """

    index: int
    prompt: str
    text: str
    reference: str | None = None


@dataclass(frozen=True)
class Completion:
    """The output of one sample: generated token ids only, prompt excluded.

    ``error`` set: this sample failed (e.g. one request of a batch sent over HTTP) and the bridge
    completes it as an error, while the batch's other samples succeed. ``n_tokens`` set: the true
    output length when it differs from ``len(token_ids)`` (see :meth:`TokenStream.finish`).
    """

    index: int
    token_ids: tuple[int, ...]
    error: str | None = None
    n_tokens: int | None = None


class Tokenizer(Protocol):
    """The subset of a tokenizer the harness needs to count and decode outputs."""

    eos_token_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...


class TokenStream(Protocol):
    """Where a streaming SUT reports one sample's progress. Thread-safe.

    Call :meth:`emit` with each new chunk of token ids (the first non-empty chunk is the
    sample's first token), then exactly one of :meth:`finish` or :meth:`fail`.
    """

    def emit(self, token_ids: Sequence[int]) -> None: ...

    def finish(self, n_tokens: int | None = None) -> None:
        """The end. ``n_tokens``: how many tokens were generated, when that is known better than
        by the ids emitted (a server's own count while the ids are its text re-tokenized); LoadGen
        times with it (TPOT, tokens/s)."""

    def fail(self, error: BaseException) -> None: ...


class CollectingStream:
    """A TokenStream that gathers one request's tokens and signals the end: for callers that want
    the whole answer of a streaming path (a batch built on ``submit``, scripts, tests)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.n_tokens: int | None = None  # the count given to finish(), else len(tokens)
        self.done = threading.Event()
        self.error: BaseException | None = None

    def emit(self, token_ids: Sequence[int]) -> None:
        self.tokens.extend(token_ids)

    def finish(self, n_tokens: int | None = None) -> None:
        self.n_tokens = len(self.tokens) if n_tokens is None else n_tokens
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


@runtime_checkable
class SUT(Protocol):
    """A system under test that can generate for a batch of samples.

    ``max_batch_size`` bounds the batches the harness passes to :meth:`generate`;
    ``concurrency`` is how many :meth:`generate` calls may run at once.
    """

    name: str
    tokenizer: Tokenizer
    max_batch_size: int
    concurrency: int
    streaming: bool  # True when the SUT implements StreamingSUT.submit

    def load(self, samples: Sequence[Sample]) -> None:
        """Prepare samples (e.g. tokenize) before timing starts, as MLPerf allows."""

    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        """Generate for every sample of the batch; blocking."""

    def close(self) -> None:
        """Release threads, connections or memory."""


@runtime_checkable
class StreamingSUT(SUT, Protocol):
    """A SUT that streams tokens, as Server and SingleStream require.

    A SUT whose ``submit`` only hands the request on and never blocks (microseconds: an HTTP
    request written to a socket) may set ``submit_inline = True``: the bridge then calls it on
    LoadGen's issuing thread instead of handing the query to its dispatcher thread first, a
    thread wake-up that LoadGen would count in the time to first token.
    """

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        """Start generating for one sample and return at once; report to ``stream``."""


def supports_streaming(sut: SUT) -> bool:
    """Whether ``sut`` can serve Server/SingleStream."""
    return bool(getattr(sut, "streaming", False)) and callable(getattr(sut, "submit", None))
