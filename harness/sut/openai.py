"""``sut=openai``: any OpenAI-compatible server (vLLM, SGLang, TGI, TensorRT-LLM, llama.cpp, hosted APIs).

One asyncio loop on a background thread owns a pooled HTTP client (``harness.sut.http1``);
``submit`` (Server, SingleStream) and ``generate`` (Offline) only schedule coroutines on it. The
pool's ``sut.max_concurrency`` connections bound the requests in flight, later ones wait in its
queue; LoadGen's clock starts at the query's scheduled time, so that wait is counted in TTFT, not
hidden. The preflight also opens the pool's connections, so the first queries of a run do not
pay for TCP (and TLS) set-up that later ones do not.

Failure policy: no retries. A failed request (HTTP error, cut stream, read timeout, lost server)
is a completed-with-error sample, counted by the bridge, whose ``run.max_errors`` then fails the
rest fast, so a dead server ends the run in bounded time. ``create`` runs a preflight
(GET /v1/models) that fails at once when the server is down or does not serve ``sut.model``.
The API key is read from the environment variable named by ``sut.api_key_env`` and only ever
placed in the Authorization header.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from harness.config import bounded
from harness.errors import ConfigError, SUTError
from harness.sut.base import Completion, Sample, TokenStream
from harness.sut.http1 import Client, parse_url
from harness.sut.openai_client import Endpoint, Reply, RequestError, client, list_models, request_body, send, start
from harness.sut.openai_tokens import load_output_tokenizer

if TYPE_CHECKING:
    from harness.sut import SUTContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAIParams:
    """Settings of ``sut=openai`` (conf/sut/openai.yaml)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None  # null: the first model GET /v1/models lists
    api: Literal["completions", "chat"] = "completions"
    api_key_env: str | None = None  # NAME of the environment variable holding the key, never the key
    max_concurrency: int = bounded(64, ge=1)  # requests in flight (and pooled connections)
    connect_timeout_s: float = bounded(5.0, gt=0)
    read_timeout_s: float = bounded(30.0, gt=0)  # longest silence allowed while waiting for bytes of a response
    stream_offline: bool = False  # Offline: false sends non-streamed requests
    ignore_eos: bool = False  # ask the server to generate max_tokens tokens (vLLM/SGLang/TRT-LLM)
    min_tokens: int | None = bounded(None, ge=0)
    return_token_ids: bool = False  # ask for output token ids (vLLM >= 0.10.2, harness-serve)
    tokenizer_path: str | None = None  # local HF tokenizer dir, "embedded", or null: dataset word tokenizer
    extra_body: dict[str, Any] = field(default_factory=dict)  # merged into every request body
    max_batch_size: int = bounded(4096, ge=1)  # Offline: samples handed to one generate() call (sent concurrently)
    # warn when more than this fraction of requests disagree on counts
    usage_mismatch_warn: float = bounded(0.05, ge=0, le=1)
    preflight: bool = True


@dataclass
class _Counts:
    """Per-run request accounting (touched only on the loop thread)."""

    requests: int = 0
    errors: int = 0
    usage_reported: int = 0
    usage_mismatches: int = 0
    server_tokens: int = 0
    client_tokens: int = 0
    ids_from_server: int = 0
    first_token_retokenized: int = 0


def api_key(params: OpenAIParams, environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    if not params.api_key_env:
        return None
    key = environ.get(params.api_key_env)
    if not key:
        raise ConfigError(f"sut.api_key_env={params.api_key_env}: that environment variable is not set")
    return key


def _check_url(base_url: str) -> None:
    try:
        parse_url(base_url)
    except ValueError:
        raise ConfigError(f"sut.base_url={base_url}: not an http:// or https:// URL") from None


class OpenAISUT:
    """The SUT protocol over HTTP; thread-safe, all I/O on one event loop."""

    name = "openai"
    streaming = True
    submit_inline = True  # submit writes the request from the caller's thread (or queues it), never blocks
    concurrency = 1  # one Offline worker: generate() itself sends a whole batch concurrently

    def __init__(self, params: OpenAIParams, tokenizer: Any, max_new_tokens: int, key: str | None) -> None:
        if params.max_concurrency < 1:
            raise ConfigError(f"sut.max_concurrency must be at least 1, got {params.max_concurrency}")
        if max_new_tokens < 1:
            raise ConfigError(f"benchmark.max_new_tokens must be at least 1, got {max_new_tokens}")
        _check_url(params.base_url)
        self.params = params
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.max_batch_size = params.max_batch_size
        self.counts = _Counts()
        self._key = key
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-client", daemon=True)
        self._thread.start()
        self.endpoint = Endpoint(params.base_url, params.model or "", params.api, key)
        self._client: Client = self._call(self._open())

    @classmethod
    def create(cls, params: OpenAIParams, ctx: SUTContext) -> OpenAISUT:
        key = api_key(params)
        sut = cls(params, cls.load_tokenizer(params, ctx), ctx.max_new_tokens, key)
        try:
            if params.preflight or params.model is None:
                sut.preflight()
        except BaseException:
            sut.close()
            raise
        log.info("sut=openai: %s model %s, %s API, up to %d requests in flight; output tokens: %s",
                 params.base_url, sut.endpoint.model, params.api, params.max_concurrency,
                 "server token ids" if params.return_token_ids else sut.tokenizer.name)
        return sut

    @classmethod
    def check(cls, params: OpenAIParams, ctx: SUTContext) -> None:
        """The run's preflight (parent process): settings and the API key's variable; the server
        itself is asked (GET /v1/models) when the SUT is created."""
        if params.max_concurrency < 1:
            raise ConfigError(f"sut.max_concurrency must be at least 1, got {params.max_concurrency}")
        _check_url(params.base_url)
        api_key(params)

    @classmethod
    def load_tokenizer(cls, params: OpenAIParams, ctx: SUTContext) -> Any:
        return load_output_tokenizer(params.tokenizer_path, ctx.corpus)

    def preflight(self) -> None:
        """GET /v1/models: SUTError (one line) when the server is down or lacks ``sut.model``."""
        p = self.params
        try:
            models = self._call(list_models(self._client, self.endpoint),
                                timeout=p.connect_timeout_s + p.read_timeout_s + 1)
        except RequestError as exc:
            raise SUTError(f"sut.base_url={p.base_url}: {exc}") from None
        if p.model is None:
            if not models:
                raise SUTError(f"sut.base_url={p.base_url}: GET /models lists no model; set sut.model")
            self.endpoint = Endpoint(p.base_url, models[0], p.api, self._key)
        elif p.model not in models:
            raise SUTError(f"sut.model={p.model} is not served by {p.base_url} (it serves: "
                           f"{', '.join(models[:10]) or 'nothing'})")
        opened = self._call(self._client.warm(p.max_concurrency), timeout=p.connect_timeout_s + 1)
        log.debug("sut=openai: %d connections open", opened)

    # -- the SUT protocol ------------------------------------------------------------------
    def load(self, samples: Sequence[Sample]) -> None:
        del samples  # the server tokenizes its own prompts

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        # Written from LoadGen's thread when a pooled connection is idle: no wait for the loop's
        # thread to wake or to finish other streams' chunks, which would count in TTFT.
        self._stream(sample, stream)

    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        return self._call(self._batch(batch))

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self._close(), timeout=5)
            except Exception:  # closing must not hide the run's own outcome
                log.debug("closing the HTTP session failed", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._warn_mismatches()

    def stats(self) -> dict[str, Any]:
        """Client vs server token accounting for results.json (``extra.sut_stats``)."""
        c = self.counts
        rate = c.usage_mismatches / c.usage_reported if c.usage_reported else None
        return {"requests": c.requests, "errors": c.errors, "usage_reported": c.usage_reported,
                "usage_mismatches": c.usage_mismatches, "usage_mismatch_rate": rate,
                "server_completion_tokens": c.server_tokens, "client_completion_tokens": c.client_tokens,
                "token_ids_from_server": c.ids_from_server, "first_token_retokenized": c.first_token_retokenized,
                "token_source": "server token ids" if self.params.return_token_ids else self.tokenizer.name}

    # -- the loop side ---------------------------------------------------------------------
    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self) -> Client:
        p = self.params
        return client(p.base_url, limit=p.max_concurrency, connect_timeout_s=p.connect_timeout_s,
                      read_timeout_s=p.read_timeout_s)

    async def _close(self) -> None:
        await self._client.close()

    def _body(self, sample: Sample, stream: bool) -> dict[str, Any]:
        p = self.params
        return request_body(self.endpoint, sample.prompt, max_tokens=self.max_new_tokens, stream=stream,
                            ignore_eos=p.ignore_eos, min_tokens=p.min_tokens, return_token_ids=p.return_token_ids,
                            extra=p.extra_body)

    async def _request(self, sample: Sample, stream: bool) -> Reply:
        self.counts.requests += 1
        try:
            return await send(self._client, self.endpoint, self._body(sample, stream))
        except RequestError:
            self.counts.errors += 1
            raise

    def _stream(self, sample: Sample, stream: TokenStream) -> None:
        """One streamed request, sent from the calling thread; tokens go to ``stream`` as chunks
        arrive, on the loop's thread."""
        first: list[int] = []  # what was emitted as the first token, when counting client-side

        def on_delta(text: str, ids: list[int] | None) -> None:
            if ids is not None:
                stream.emit(ids)  # exact: the server's own ids
            elif not first and text:
                # TTFT: the first chunk with content or reasoning. Its first token is emitted now;
                # the whole text is tokenized once at the end and the rest follows.
                first.extend(self.tokenizer.encode(text)[:1])
                stream.emit(first)

        def on_done(reply: Reply | None, error: RequestError | None) -> None:
            if error is not None or reply is None:
                self._fail(stream, error or RequestError("no reply"))
                return
            try:
                ids = self._output_ids(reply)
                if reply.token_ids is None:
                    if first and ids[:1] != first:
                        self.counts.first_token_retokenized += 1
                    stream.emit(ids[1:] if first else ids)
            except Exception as exc:
                stream.fail(exc)
                return
            stream.finish()

        self.counts.requests += 1
        try:
            start(self._client, self.endpoint, self._body(sample, True), on_delta, on_done, threadsafe=True)
        except Exception as exc:  # e.g. a body json cannot encode: the sample fails, the run goes on
            self._loop.call_soon_threadsafe(self._fail, stream, exc)  # counts change on the loop's thread only

    def _fail(self, stream: TokenStream, error: BaseException) -> None:
        self.counts.errors += 1
        stream.fail(error)

    async def _batch(self, batch: Sequence[Sample]) -> list[Completion]:
        stream = self.params.stream_offline

        async def one(s: Sample) -> Completion:
            try:
                return Completion(s.index, tuple(self._output_ids(await self._request(s, stream))))
            except Exception as exc:
                return Completion(s.index, (), error=f"{type(exc).__name__}: {exc}")

        return list(await asyncio.gather(*(one(s) for s in batch)))

    def _output_ids(self, reply: Reply) -> list[int]:
        """Output token ids (server's, else the tokenizer's) and the usage comparison."""
        c = self.counts
        if reply.token_ids is not None:
            ids = reply.token_ids
            c.ids_from_server += 1
        else:
            ids = self.tokenizer.encode(reply.full_text)
        c.client_tokens += len(ids)
        if reply.usage_tokens is not None:
            c.usage_reported += 1
            c.server_tokens += reply.usage_tokens
            if reply.usage_tokens != len(ids):
                c.usage_mismatches += 1
        return ids

    def _warn_mismatches(self) -> None:
        s = self.stats()
        rate = s["usage_mismatch_rate"]
        if rate is not None and rate > self.params.usage_mismatch_warn:
            log.warning("sut=openai: the server's usage count differs from the client's on %d of %d requests "
                        "(%.0f%%; server %d, client %d tokens): set sut.tokenizer_path to the model's tokenizer "
                        "or sut.return_token_ids=true", s["usage_mismatches"], s["usage_reported"], 100 * rate,
                        s["server_completion_tokens"], s["client_completion_tokens"])
