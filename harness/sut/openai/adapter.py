"""``sut=openai``: any OpenAI-compatible server (vLLM, SGLang, TGI, TensorRT-LLM, llama.cpp, hosted APIs).

One asyncio loop on a background thread owns a pooled HTTP client (``harness.http.http1``);
``submit`` (Server, SingleStream) and ``generate`` (Offline) only schedule coroutines on it. The
pool's ``sut.max_concurrency`` connections bound the requests in flight, later ones wait in its
queue; LoadGen's clock starts at the query's scheduled time, so that wait is counted in TTFT, not
hidden. The preflight also opens the pool's connections, so the first queries of a run do not
pay for TCP (and TLS) set-up that later ones do not.

Token counts: the count LoadGen times with (TPOT, tokens/s) is the best truth the server gives:
its token ids (``sut.return_token_ids``), else its usage (``completion_tokens``, asked for with
``stream_options.include_usage``), else the text re-tokenized by the model's tokenizer
(``sut.tokenizer_path``), else by the dataset's word tokenizer, which makes the run's token
figures approximate (results.json, the summary; ``harness-submit`` refuses it for the closed
division). The ids in the accuracy log are the server's when it sent them, else the text
re-tokenized; they are decoded only with the model's tokenizer, so ids without one are refused.

Failure policy: no retries by default (MLPerf counts a failed query). A failed request (HTTP
error, cut stream, read timeout, lost server, an answer past ``max_tokens``) is a
completed-with-error sample, counted by the bridge, whose ``run.max_errors`` then fails the rest
fast, so a dead server ends the run in bounded time. ``sut.max_retries`` resends a request the
server answered with 429 or 5xx, after its Retry-After (at most ``sut.retry_max_wait_s``); the
wait counts in the sample's latency. Error statuses are counted per status either way. ``create``
runs a preflight (GET /v1/models) that fails at once when the server is down or does not serve
``sut.model``. The API key is read from the environment variable named by ``sut.api_key_env`` and
only ever placed in the Authorization header; ``sut.headers`` values written ``env:NAME`` are
read from the environment too.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import re
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from harness.config import bounded
from harness.errors import ConfigError, SUTError
from harness.http.http1 import Client, parse_url
from harness.sut.base import SUT, Completion, Sample, SUTContext, SUTInfo, TokenStream
from harness.sut.openai.client import (
    RETRY_STATUSES,
    Endpoint,
    OverLimit,
    Reply,
    RequestError,
    client,
    env_proxy,
    list_models,
    request_body,
    send,
    start,
    tls_context,
)
from harness.sut.openai.tokens import (
    APPROXIMATE_SOURCES,
    COUNT_SOURCES,
    SERVER_IDS,
    SERVER_USAGE,
    load_output_tokenizer,
)

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
    return_token_ids: bool = False  # ask for output token ids (vLLM >= 0.10.2, harness-serve); needs tokenizer_path
    tokenizer_path: str | None = None  # local HF tokenizer dir, "embedded", or null: dataset word tokenizer
    extra_body: dict[str, Any] = field(default_factory=dict)  # merged into every request body
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request; "env:NAME" reads $NAME
    ca_bundle: str | None = None  # PEM file of the CA(s) to trust for https (default: the system's)
    verify_tls: bool = True  # false: accept any certificate (a test server's self-signed one)
    proxy_from_env: bool = True  # honour HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY
    max_retries: int = bounded(0, ge=0)  # resend a request answered 429/5xx this often (MLPerf: 0, a failure counts)
    retry_max_wait_s: float = bounded(30.0, ge=0)  # longest wait before a retry; a longer Retry-After fails the request
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
    counted_tokens: int = 0  # what LoadGen was given
    ids_from_server: int = 0
    first_token_retokenized: int = 0
    sources: collections.Counter = field(default_factory=collections.Counter)  # count source -> requests
    http_status: collections.Counter = field(default_factory=collections.Counter)  # error status -> answers
    retries: int = 0
    over_limit: int = 0  # samples failed for an answer past max_tokens
    over_limit_tokens: int = 0  # tokens past max_tokens seen in those (where the server's ids or usage said)


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")


def api_key(params: OpenAIParams, environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    if not params.api_key_env:
        return None
    key = environ.get(params.api_key_env)
    if not key:
        raise ConfigError(f"sut.api_key_env={params.api_key_env}: that environment variable is not set")
    return key


def headers(params: OpenAIParams, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``sut.headers`` with ``env:NAME`` values read from the environment; ConfigError (naming the
    header) for a bad name, a line break in a value, or an unset variable."""
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name, raw in params.headers.items():
        key = f"sut.headers.{name}"
        if not _HEADER_NAME.match(str(name)):
            raise ConfigError(f"{key}: not a valid HTTP header name")
        value = str(raw)
        ref = _ENV_REF.match(value)
        if ref:
            if not environ.get(ref[1]):
                raise ConfigError(f"{key}=env:{ref[1]}: that environment variable is not set")
            value = environ[ref[1]]
        if "\r" in value or "\n" in value:
            raise ConfigError(f"{key}: a header value may not hold a line break")
        out[str(name)] = value
    return out


def proxy(params: OpenAIParams, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy for ``sut.base_url`` from the environment (None: direct); ConfigError for a proxy
    this client cannot use."""
    if not params.proxy_from_env:
        return None
    url = env_proxy(params.base_url, environ)
    if url is not None and (urlsplit(url).scheme != "http" or not urlsplit(url).hostname):
        scheme = urlsplit(params.base_url).scheme
        raise ConfigError(f"{scheme}_proxy / {scheme.upper()}_PROXY: {urlsplit(url).scheme}://{urlsplit(url).hostname}"
                          " is not an http:// proxy; sut.proxy_from_env=false connects directly")
    return url


def _check_url(base_url: str) -> None:
    try:
        parse_url(base_url)
    except ValueError:
        raise ConfigError(f"sut.base_url={base_url}: not an http:// or https:// URL") from None


def _check(params: OpenAIParams) -> None:
    """Settings that need no server: one line naming the key for each mistake."""
    if params.max_concurrency < 1:
        raise ConfigError(f"sut.max_concurrency must be at least 1, got {params.max_concurrency}")
    if params.max_retries < 0:
        raise ConfigError(f"sut.max_retries must be 0 or more, got {params.max_retries}")
    if not params.retry_max_wait_s >= 0:
        raise ConfigError(f"sut.retry_max_wait_s must be 0 or more, got {params.retry_max_wait_s}")
    _check_url(params.base_url)
    if params.return_token_ids and not params.tokenizer_path:
        raise ConfigError("sut.return_token_ids=true needs sut.tokenizer_path (the model's tokenizer): the server's "
                          "ids are decoded only with it; or drop sut.return_token_ids to score the returned text")
    if params.ca_bundle is not None and not Path(params.ca_bundle).expanduser().is_file():
        raise ConfigError(f"sut.ca_bundle: no CA file at {params.ca_bundle}")
    _tls(params)


def _tls(params: OpenAIParams) -> ssl.SSLContext | None:
    """The certificate checks for an https base URL (None for http); ConfigError for a CA file
    that holds no usable certificate."""
    if urlsplit(params.base_url).scheme != "https" and params.ca_bundle is None:
        return None
    ca = str(Path(params.ca_bundle).expanduser()) if params.ca_bundle else None
    try:
        return tls_context(ca, params.verify_tls)
    except ssl.SSLError as exc:
        raise ConfigError(f"sut.ca_bundle: {params.ca_bundle} holds no usable PEM certificate ({exc.reason})") from None


def loopback(url: str | None) -> bool:
    """Whether ``url`` names this machine (127.x, localhost, ::1): the server then runs here."""
    host = (urlsplit(url or "").hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class OpenAISUT(SUT):
    """The SUT protocol over HTTP; thread-safe, all I/O on one event loop."""

    Params = OpenAIParams
    name = "openai"
    streaming = True
    submit_inline = True  # submit writes the request from the caller's thread (or queues it), never blocks
    concurrency = 1  # one Offline worker: generate() itself sends a whole batch concurrently

    def __init__(self, params: OpenAIParams, tokenizer: Any, max_new_tokens: int, key: str | None) -> None:
        _check(params)
        if max_new_tokens < 1:
            raise ConfigError(f"benchmark.max_new_tokens must be at least 1, got {max_new_tokens}")
        self.params = params
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.max_batch_size = params.max_batch_size
        self.counts = _Counts()
        self._key = key
        self._headers = headers(params)
        self._proxy = proxy(params)
        self._tls = _tls(params)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-client", daemon=True)
        self._thread.start()
        self.endpoint = Endpoint(params.base_url, params.model or "", params.api, key, self._headers)
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
        via = f" through the proxy {urlsplit(sut._proxy).hostname}:{urlsplit(sut._proxy).port or 80}" \
            if sut._proxy else ""
        log.info("sut=openai: %s%s model %s, %s API, up to %d requests in flight; output token counts: %s",
                 params.base_url, via, sut.endpoint.model, params.api, params.max_concurrency,
                 "the server's token ids" if params.return_token_ids
                 else f"the server's usage, else the {sut.tokenizer.name}")
        return sut

    @classmethod
    def check(cls, params: OpenAIParams, ctx: SUTContext) -> None:
        """The run's preflight (parent process): settings, the API key's and headers' variables,
        the proxy; the server itself is asked (GET /v1/models) when the SUT is created."""
        _check(params)
        api_key(params)
        headers(params)
        proxy(params)

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
            self.endpoint = dataclasses.replace(self.endpoint, model=models[0])
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

    def describe(self) -> SUTInfo:
        """A server: remote unless ``sut.base_url`` is this machine; in Offline the server batches the
        requests in flight, at most ``sut.max_concurrency`` (and ``sut.max_batch_size`` per call)."""
        p = self.params
        key = "max_batch_size" if p.max_batch_size <= p.max_concurrency else "max_concurrency"
        return SUTInfo(name=self.name, remote=not loopback(p.base_url), decode_batch=getattr(p, key),
                       decode_batch_key=key, stats=self.stats())

    def stats(self) -> dict[str, Any]:
        """Request and token accounting for results.json (``extra.sut_stats.<test>``).

        ``token_count_source``: where the counts LoadGen timed with came from (the weakest source
        any request needed; ``token_count_sources`` per source); ``token_counts_approximate``: some
        were the dataset word tokenizer's. ``output_token_ids``: whether the accuracy log holds the
        server's own ids (``server``), the text re-tokenized (``re-tokenized``) or both (``mixed``)."""
        c = self.counts
        rate = c.usage_mismatches / c.usage_reported if c.usage_reported else None
        used = [s for s in COUNT_SOURCES if c.sources[s]]
        answered = sum(c.sources.values())
        ids = "server" if answered and c.ids_from_server == answered else (
            "re-tokenized" if not c.ids_from_server else "mixed")
        return {"requests": c.requests, "errors": c.errors, "usage_reported": c.usage_reported,
                "usage_mismatches": c.usage_mismatches, "usage_mismatch_rate": rate,
                "server_completion_tokens": c.server_tokens, "client_completion_tokens": c.client_tokens,
                "counted_tokens": c.counted_tokens,
                "token_ids_from_server": c.ids_from_server, "first_token_retokenized": c.first_token_retokenized,
                "token_count_source": used[-1] if used else None,
                "token_count_sources": {s: c.sources[s] for s in used},
                "token_counts_approximate": any(s in APPROXIMATE_SOURCES for s in used),
                "output_token_ids": ids if answered else None,
                "retokenizer": None if c.ids_from_server == answered else self.tokenizer.name,
                "http_errors": {str(k): v for k, v in sorted(c.http_status.items())}, "retries": c.retries,
                "over_max_tokens": {"samples": c.over_limit, "tokens_past_limit": c.over_limit_tokens}}

    # -- the loop side ---------------------------------------------------------------------
    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self) -> Client:
        p = self.params
        return client(p.base_url, limit=p.max_concurrency, connect_timeout_s=p.connect_timeout_s,
                      read_timeout_s=p.read_timeout_s, ssl_context=self._tls, proxy=self._proxy)

    async def _close(self) -> None:
        await self._client.close()

    def _body(self, sample: Sample, stream: bool) -> dict[str, Any]:
        p = self.params
        return request_body(self.endpoint, sample.prompt, max_tokens=self.max_new_tokens, stream=stream,
                            ignore_eos=p.ignore_eos, min_tokens=p.min_tokens, return_token_ids=p.return_token_ids,
                            extra=p.extra_body)

    async def _request(self, sample: Sample, stream: bool) -> Reply:
        self.counts.requests += 1
        body = self._body(sample, stream)
        attempt = 0
        while True:
            try:
                return await send(self._client, self.endpoint, body)
            except RequestError as exc:
                delay = self._on_failure(exc, attempt)
                if delay is None:
                    self.counts.errors += 1
                    raise
            attempt += 1
            await asyncio.sleep(delay)

    def _on_failure(self, error: BaseException, attempt: int, may_retry: bool = True) -> float | None:
        """Count a failed answer (its status, an answer past max_tokens); the seconds to wait before
        resending it, or None to fail the sample.

        Only statuses that say "later" (429, 5xx) are retried, at most ``sut.max_retries`` times,
        after the server's Retry-After, else 0.5 s, 1 s, 2 s...; a Retry-After longer than
        ``sut.retry_max_wait_s`` fails at once rather than holding the sample."""
        c, p = self.counts, self.params
        status = getattr(error, "status", None)
        if status is not None:
            c.http_status[status] += 1
        if isinstance(error, OverLimit):
            c.over_limit += 1
            c.over_limit_tokens += error.excess or 0
        if not may_retry or status not in RETRY_STATUSES or attempt >= p.max_retries:
            return None
        wait = getattr(error, "retry_after", None)
        wait = 0.5 * 2 ** attempt if wait is None else wait
        if wait > p.retry_max_wait_s:
            return None
        c.retries += 1
        return wait

    def _stream(self, sample: Sample, stream: TokenStream) -> None:
        """One streamed request, sent from the calling thread; tokens go to ``stream`` as chunks
        arrive, on the loop's thread."""
        first: list[int] = []  # what was emitted as the first token, when counting client-side
        emitted = 0  # ids handed to the stream so far
        attempt = 0

        def on_delta(text: str, ids: list[int] | None) -> None:
            nonlocal emitted
            if ids is not None:
                stream.emit(ids)  # exact: the server's own ids
                emitted += len(ids)
            elif not first and text:
                # TTFT: the first chunk with content or reasoning. Its first token is emitted now;
                # the whole text is tokenized once at the end and the rest follows.
                first.extend(self.tokenizer.encode(text)[:1])
                stream.emit(first)
                emitted += len(first)

        def on_done(reply: Reply | None, error: RequestError | None) -> None:
            nonlocal emitted, attempt
            if error is not None or reply is None:
                error = error or RequestError("no reply")
                delay = self._on_failure(error, attempt, may_retry=not emitted)
                if delay is None:
                    self.counts.errors += 1
                    stream.fail(error)
                else:  # the server said "later" before any token: the same request again, on the loop
                    attempt += 1
                    self._loop.call_later(delay, lambda: start(self._client, self.endpoint, body, on_delta, on_done))
                return
            try:
                ids, n = self._output_ids(reply)
                if reply.token_ids is None:
                    if first and ids[:1] != first:
                        self.counts.first_token_retokenized += 1
                    rest = ids[1:] if first else ids
                    stream.emit(rest)
                    emitted += len(rest)
            except Exception as exc:
                stream.fail(exc)
                return
            if n == emitted:
                stream.finish()
            else:  # the server's count, beside ids re-tokenized from its text
                stream.finish(n)

        self.counts.requests += 1
        try:
            body = self._body(sample, True)
            start(self._client, self.endpoint, body, on_delta, on_done, threadsafe=True)
        except Exception as exc:  # e.g. a body json cannot encode: the sample fails, the run goes on
            self._loop.call_soon_threadsafe(self._fail, stream, exc)  # counts change on the loop's thread only

    def _fail(self, stream: TokenStream, error: BaseException) -> None:
        self.counts.errors += 1
        stream.fail(error)

    async def _batch(self, batch: Sequence[Sample]) -> list[Completion]:
        stream = self.params.stream_offline

        async def one(s: Sample) -> Completion:
            try:
                ids, n = self._output_ids(await self._request(s, stream))
                return Completion(s.index, tuple(ids), n_tokens=None if n == len(ids) else n)
            except Exception as exc:
                return Completion(s.index, (), error=f"{type(exc).__name__}: {exc}")

        return list(await asyncio.gather(*(one(s) for s in batch)))

    def _output_ids(self, reply: Reply) -> tuple[list[int], int]:
        """The output ids for the accuracy log (the server's, else its text re-tokenized) and the
        count LoadGen gets: the best truth of server ids, server usage, re-tokenized text."""
        c = self.counts
        if reply.token_ids is not None:
            ids, n, source = reply.token_ids, len(reply.token_ids), SERVER_IDS
            c.ids_from_server += 1
        else:
            ids = self.tokenizer.encode(reply.full_text)
            usage = reply.usage_tokens
            if usage is not None and (usage > 0 or not ids):  # 0 tokens for a non-empty text is no count
                n, source = usage, SERVER_USAGE
            else:
                n, source = len(ids), self.tokenizer.source
        c.client_tokens += len(ids)
        c.counted_tokens += n
        c.sources[source] += 1
        if reply.usage_tokens is not None:
            c.usage_reported += 1
            c.server_tokens += reply.usage_tokens
            if reply.usage_tokens != len(ids):
                c.usage_mismatches += 1
        return ids, n

    def _warn_mismatches(self) -> None:
        s = self.stats()
        approximate = sum(n for src, n in s["token_count_sources"].items() if src in APPROXIMATE_SOURCES)
        if approximate:
            log.warning("sut=openai: %d of %d answers came with neither token ids nor a usage count and were "
                        "counted with the dataset's word tokenizer: TPOT and tokens/s are approximate (set "
                        "sut.tokenizer_path to the model's tokenizer, or use a server that reports usage)",
                        approximate, sum(s["token_count_sources"].values()))
        rate = s["usage_mismatch_rate"]
        if rate is not None and rate > self.params.usage_mismatch_warn and s["output_token_ids"] != "server":
            log.info("sut=openai: re-tokenizing the text gives another count than the server's usage on %d of %d "
                     "answers (%.0f%%; server %d, re-tokenized %d tokens); LoadGen timed with the server's count, "
                     "the accuracy log holds the re-tokenized ids", s["usage_mismatches"], s["usage_reported"],
                     100 * rate, s["server_completion_tokens"], s["client_completion_tokens"])
