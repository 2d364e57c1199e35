"""The SUT contract: everything the harness asks of a model or server, in one place. Read this first.

A system under test (SUT) knows nothing about LoadGen. It receives :class:`Sample` values and
returns token ids: in batches (:meth:`SUT.generate`, used by Offline) or streamed
(:meth:`SUT.submit`, used by Server and SingleStream), reporting tokens to a :class:`TokenStream`
as they exist. An adapter is a subclass of :class:`SUT`:

- ``Params``: a frozen dataclass of its settings (``sut.<key>`` in the config, checked strictly,
  so a typo fails at start-up); its defaults are the adapter's default config.
- :meth:`SUT.create` ``(params, ctx)``: build the SUT (load weights, connect) in the test process.
- :meth:`SUT.check`, :meth:`SUT.load_tokenizer`: cheap class-level hooks (the run's preflight in
  the parent process; decoding a finished run without loading the model).
- :meth:`SUT.load`, :meth:`SUT.generate`, :meth:`SUT.submit`, :meth:`SUT.close`: the run.
- :meth:`SUT.describe`: a typed :class:`SUTInfo` (device, local or remote, decode batch, model,
  counters) that results.json, MLflow and the roofline estimates read; nothing is guessed from
  names or URLs.

Adapters are found by ``sut=<name>`` through :mod:`harness.sut.registry`: the built-in ones, and
those other packages declare in the ``harness.suts`` entry-point group (README "Write your own SUT").
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from typing import Self


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


@dataclass(frozen=True)
class SUTContext:
    """What an adapter may need from the rest of the run to build itself."""

    corpus: Sequence[str]  # every prompt and reference, for tokenizers built offline
    max_new_tokens: int


@dataclass(frozen=True)
class ModelInfo:
    """The model a SUT loaded itself (results.json ``extra.model``; MLflow tags its fingerprint;
    the roofline reads its size and, from ``path``/config.json, its layer shapes)."""

    path: str
    architecture: str
    fingerprint: str | None
    parameters: int
    dtype: str  # without "torch.", e.g. bfloat16
    weight_bytes: int
    num_draft_tokens: int | None = None  # a draft model (speculative decoding): tokens per verification
    draft: ModelInfo | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "architecture": self.architecture, "fingerprint": self.fingerprint,
                               "parameters": self.parameters, "dtype": self.dtype, "weight_bytes": self.weight_bytes}
        if self.num_draft_tokens is not None:
            out["num_draft_tokens"] = self.num_draft_tokens
        if self.draft is not None:
            out["draft"] = self.draft.to_json()
        return out


@dataclass(frozen=True)
class SUTInfo:
    """What a SUT says about itself (:meth:`SUT.describe`): read by results.json, MLflow and the roofline.

    ``runs_model`` false: a fake (no model runs, so there is no roofline). ``remote``: the model
    runs on another machine (a hosted API, a server elsewhere), so this machine's devices say
    nothing about it. ``device``: the device an in-process model runs on (``cpu``, ``cuda:0``) and
    ``device_name`` the GPU's name as the driver gives it; None for a server. ``decode_batch``:
    sequences decoded together in Offline, from the setting ``decode_batch_key`` (``sut.<key>``).
    ``context_length``: the model's positions, to which the run cuts prompts (None: no limit known).
    ``stats``: the adapter's own counters (results.json ``extra.sut_stats.<test>``).
    """

    name: str
    runs_model: bool = True
    remote: bool = False
    device: str | None = None
    device_name: str | None = None
    decode_batch: int | None = None
    decode_batch_key: str | None = None
    context_length: int | None = None
    model: ModelInfo | None = None
    stats: Mapping[str, Any] | None = None


class SUT(ABC):
    """A system under test: subclass it, set ``Params``, implement :meth:`create` and :meth:`generate`
    (and :meth:`submit` with ``streaming = True`` to serve Server and SingleStream).

    ``max_batch_size`` bounds the batches the harness passes to :meth:`generate`; ``concurrency``
    is how many :meth:`generate` calls may run at once. A SUT whose :meth:`submit` only hands the
    request on and never blocks (microseconds: an HTTP request written to a socket) sets
    ``submit_inline = True``: the bridge then calls it on LoadGen's issuing thread instead of
    handing the query to its dispatcher thread first, a thread wake-up that LoadGen would count in
    the time to first token. Every method but :meth:`load_tokenizer` and :meth:`describe` may be
    called from any thread; a SUT guards its own state.
    """

    Params: ClassVar[type]  # the frozen dataclass of sut.<key> settings; its defaults are the default config
    name: ClassVar[str] = ""  # the sut=<name> it is registered under
    tokenizer: Tokenizer  # decodes its outputs (accuracy) and counts prompt tokens (roofline)
    max_batch_size: int = 1
    concurrency: int = 1
    streaming: bool = False  # True: implements submit (Server, SingleStream)
    submit_inline: bool = False

    @classmethod
    @abstractmethod
    def create(cls, params: Any, ctx: SUTContext) -> Self:
        """Build the SUT from its checked ``Params`` (in the test process, before LoadGen starts)."""

    @classmethod
    def check(cls, params: Any, ctx: SUTContext) -> None:
        """What can be checked without loading a model or calling a server (the run's preflight, in
        the parent process, before any test starts): raise ConfigError naming ``sut.<key>``."""
        del params, ctx

    @classmethod
    def load_tokenizer(cls, params: Any, ctx: SUTContext) -> Tokenizer:
        """The tokenizer alone, e.g. to decode a finished run's accuracy log. This default builds
        the SUT and closes it again; a model SUT overrides it so no weights are loaded."""
        sut = cls.create(params, ctx)
        try:
            return sut.tokenizer
        finally:
            sut.close()

    def load(self, samples: Sequence[Sample]) -> None:
        """Prepare samples (e.g. tokenize) before timing starts, as MLPerf allows."""
        del samples

    @abstractmethod
    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        """Generate for every sample of the batch; blocking (Offline)."""

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        """Start generating for one sample and return at once; report to ``stream`` (Server, SingleStream)."""
        raise NotImplementedError(f"sut={self.name} cannot stream")

    def close(self) -> None:
        """Release threads, connections or memory (nothing by default)."""
        return None

    def describe(self) -> SUTInfo:
        """What ran, for results.json, MLflow and the roofline: this default says a local SUT that
        decodes ``max_batch_size`` sequences together and reports no model or counters."""
        return SUTInfo(name=self.name, decode_batch=self.max_batch_size, decode_batch_key="max_batch_size")


StreamingSUT = SUT  # the streaming call is part of the one contract (``streaming = True``)


def supports_streaming(sut: SUT) -> bool:
    """Whether ``sut`` can serve Server/SingleStream."""
    return sut.streaming
