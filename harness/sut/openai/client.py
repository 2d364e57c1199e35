"""The HTTP side of ``sut=openai``: request bodies, SSE parsing and one timed request (``http1``).

Free of LoadGen and of the SUT protocol, so ``harness-providers`` and the client benchmark time
requests with exactly the code the SUT uses. Times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

import email.utils
import json
import math
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from harness.http import http1

Api = Literal["completions", "chat"]
# Chat deltas: the answer, and the reasoning of reasoning models (vLLM/SGLang: reasoning_content,
# some servers: reasoning). Either one is a generated token, so either one is the first token.
_DELTA_KEYS = ("reasoning_content", "reasoning", "content")
# What one output token may hold, at most, in characters: far above any real vocabulary's longest
# piece, so only a server ignoring max_tokens passes max_tokens x this. It bounds the text kept
# per request and the size of a non-streamed answer (JSON may spell a character in 6 bytes).
MAX_CHARS_PER_TOKEN = 256
_BODY_SLACK = 1 << 20  # bytes of JSON around the text of a non-streamed answer (ids, logprobs, usage)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RequestError(Exception):
    """One request failed; the message is one short line, never holding the API key.

    ``status``: the HTTP status when the server answered with an error; ``retry_after``: seconds
    from its Retry-After header, when it sent one."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RequestTimeout(RequestError, TimeoutError):
    """The server stayed silent past ``sut.read_timeout_s``: a TimeoutError, so the bridge treats the
    server as hung and fails the rest at once instead of waiting out the timeout for every sample."""


class OverLimit(RequestError):
    """The server sent more than the request's max_tokens; ``excess`` tokens past it, where known
    (the server's ids or usage), else None (the text passed max_tokens x MAX_CHARS_PER_TOKEN)."""

    def __init__(self, message: str, excess: int | None) -> None:
        super().__init__(message)
        self.excess = excess


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: ``base_url`` ends in ``/v1``, its query string (Azure's
    ``?api-version=...``) is sent with every request; ``api_key`` and ``extra_headers`` (values
    resolved from the environment, so possibly secret) are never shown."""

    base_url: str
    model: str
    api: Api = "completions"
    api_key: str | None = field(default=None, repr=False)
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        base = urlsplit(self.base_url)
        return f"{base.scheme}://{base.netloc}{self.path}"

    @property
    def route(self) -> str:
        return "chat/completions" if self.api == "chat" else "completions"

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path.rstrip("/")

    def route_path(self, route: str) -> str:
        """The request target of ``route`` under the base URL, with the base URL's query string."""
        query = urlsplit(self.base_url).query
        return f"{self.base_path}/{route}" + (f"?{query}" if query else "")

    @property
    def path(self) -> str:
        return self.route_path(self.route)

    @property
    def headers(self) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **auth,
                **self.extra_headers}


def request_body(endpoint: Endpoint, prompt: str, *, max_tokens: int, stream: bool, ignore_eos: bool = False,
                 min_tokens: int | None = None, return_token_ids: bool = False,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A completions or chat request: greedy (temperature 0, MLPerf rule), at most ``max_tokens``."""
    body: dict[str, Any] = {"model": endpoint.model, "max_tokens": max_tokens, "temperature": 0.0, "stream": stream}
    if endpoint.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}  # the server's own token count, in the last chunk
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM, SGLang, TensorRT-LLM; others ignore unknown fields or reject them
    if min_tokens:
        body["min_tokens"] = min_tokens
    if return_token_ids:
        body["return_token_ids"] = True  # vLLM >= 0.10.2 and harness-serve: exact output token ids
    body.update(extra or {})
    return body


@dataclass
class Reply:
    """What one request produced, filled in as it streams. ``max_tokens`` (the request's limit)
    bounds what is kept: more ids, more usage or more than max_tokens x MAX_CHARS_PER_TOKEN
    characters of text raise OverLimit, which ends the request."""

    text: list[str] = field(default_factory=list)  # reasoning and content pieces, in order
    token_ids: list[int] | None = None  # when the server sent them
    usage_tokens: int | None = None  # the server's usage.completion_tokens
    finish_reason: str | None = None
    t_start: float = 0.0
    t_first: float | None = None  # first chunk carrying content, reasoning or token ids
    t_end: float = 0.0
    chunks: int = 0  # chunks carrying content
    chars: int = 0  # characters of text so far
    max_tokens: int | None = None

    @property
    def full_text(self) -> str:
        return "".join(self.text)

    def check_limit(self) -> None:
        """OverLimit when what came so far is already past the request's max_tokens."""
        limit = self.max_tokens
        if limit is None:
            return
        if self.token_ids is not None and len(self.token_ids) > limit:
            raise OverLimit(f"the server sent more than max_tokens={limit} token ids ({len(self.token_ids)} so far; "
                            "the request's limit was ignored)", len(self.token_ids) - limit)
        if self.usage_tokens is not None and self.usage_tokens > limit:
            raise OverLimit(f"the server generated {self.usage_tokens} tokens (its usage), more than "
                            f"max_tokens={limit}", self.usage_tokens - limit)
        if self.chars > limit * MAX_CHARS_PER_TOKEN:
            raise OverLimit(f"the server sent more than {limit * MAX_CHARS_PER_TOKEN:,} characters for max_tokens="
                            f"{limit} (over {MAX_CHARS_PER_TOKEN} per token: the request's limit was ignored)", None)


OnDelta = Callable[[str, "list[int] | None"], None]


def _delta(choice: Mapping[str, Any], api: Api) -> str:
    if api == "completions":
        return choice.get("text") or ""
    delta = choice.get("delta") or choice.get("message") or {}
    return "".join(delta.get(k) or "" for k in _DELTA_KEYS)


def _take(reply: Reply, obj: Mapping[str, Any], api: Api, on_delta: OnDelta | None) -> None:
    """Fold one response object (an SSE chunk, or a whole non-streamed response) into ``reply``."""
    if "error" in obj and not obj.get("choices"):
        err = obj["error"]
        raise RequestError(f"server error: {err.get('message', err) if isinstance(err, Mapping) else err}"[:300])
    usage = obj.get("usage")
    if usage and usage.get("completion_tokens") is not None:
        reply.usage_tokens = int(usage["completion_tokens"])
        reply.check_limit()
    for choice in (obj.get("choices") or [])[:1]:
        text = _delta(choice, api)
        ids = choice.get("token_ids")
        if text or ids:
            if reply.t_first is None:
                reply.t_first = time.perf_counter()
            reply.chunks += 1
            reply.text.append(text)
            reply.chars += len(text)
            if ids is not None:
                ids = [int(i) for i in ids]
                if reply.token_ids is None:
                    reply.token_ids = []
                reply.token_ids.extend(ids)  # not a new list per chunk: long answers stay linear
            reply.check_limit()  # before the SUT sees it: nothing past the limit is emitted
            if on_delta is not None:
                on_delta(text, ids)
        if choice.get("finish_reason"):
            reply.finish_reason = choice["finish_reason"]


class _SSE:
    """Server-sent events, fed as bytes arrive: each ``data:`` object is folded into the reply."""

    __slots__ = ("reply", "api", "on_delta", "rest", "done", "max_line")

    def __init__(self, reply: Reply, api: Api, on_delta: OnDelta | None, max_line: int) -> None:
        self.reply, self.api, self.on_delta = reply, api, on_delta
        self.rest = b""  # an incomplete line waits for more bytes
        self.done = False  # data: [DONE] came
        self.max_line = max_line  # bytes one event line may hold: what is kept stays bounded

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        lines = (self.rest + data).split(b"\n") if self.rest else data.split(b"\n")
        self.rest = lines.pop()
        if len(self.rest) > self.max_line:
            raise OverLimit(f"an event of more than {self.max_line:,} bytes (max_tokens={self.reply.max_tokens}): "
                            "the request's limit was ignored", None)
        for line in lines:
            if not line.startswith(b"data:"):  # SSE comments, event names, blank separators
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                return
            _take(self.reply, _decode(payload), self.api, self.on_delta)


_decoder = json.JSONDecoder()


def _decode(payload: bytes) -> Any:
    # raw_decode skips json.loads' type checks and whitespace pass: a few µs per chunk, 32 streams at a time
    return _decoder.raw_decode(payload.decode())[0]


OnReply = Callable[["Reply | None", "RequestError | None"], None]


def start(client: http1.Client, endpoint: Endpoint, body: Mapping[str, Any], on_delta: OnDelta | None,
          on_done: OnReply, *, threadsafe: bool = False) -> http1.Exchange | None:
    """Send one request, written at once when a pooled connection is free; streamed (SSE) when
    ``body["stream"]``. From the loop's thread (returns the exchange), or from any thread with
    ``threadsafe`` (``http1.Client.start_threadsafe``; returns None). ``on_delta`` and
    ``on_done(reply, None)`` or ``on_done(None, error)`` (once) come on the loop's thread.

    A stream counts as complete on ``data: [DONE]`` or a finish_reason; a connection that ends
    before either is an error (a cut stream must not pass as a short answer).
    """
    max_tokens = body.get("max_tokens")
    reply = Reply(t_start=time.perf_counter(), max_tokens=max_tokens if isinstance(max_tokens, int) else None)
    body_limit = http1.MAX_COLLECTED if reply.max_tokens is None else \
        _BODY_SLACK + 6 * MAX_CHARS_PER_TOKEN * reply.max_tokens
    sse = _SSE(reply, endpoint.api, on_delta, body_limit) if body.get("stream") else None

    def done(resp: http1.Response | None, error: BaseException | None) -> None:
        try:
            if error is not None:
                raise error
            assert resp is not None
            _raise_for_status(resp)
            if sse is None:
                _take(reply, json.loads(resp.body), endpoint.api, on_delta)
            elif not sse.done and reply.finish_reason is None:
                raise RequestError("stream ended before [DONE] or a finish_reason (cut mid-way)")
        except Exception as exc:
            on_done(None, request_error(exc))
            return
        reply.t_end = time.perf_counter()
        on_done(reply, None)

    send_ = client.start_threadsafe if threadsafe else client.start
    return send_("POST", endpoint.path, headers=endpoint.headers, body=json.dumps(body).encode(),
                 on_body=sse.feed if sse is not None else None, on_done=done, max_body=body_limit)


def request_error(exc: BaseException) -> RequestError:
    """Any failure of a request as one short line."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, http1.ReadTimeout):
        return RequestTimeout("read timeout: no data from the server within sut.read_timeout_s")
    if isinstance(exc, http1.BodyTooLarge):  # only a non-streamed answer is collected
        return OverLimit(f"a response of more than {exc.limit:,} bytes: far more than the request's max_tokens "
                         "allows (the limit was ignored)", None)
    if isinstance(exc, http1.HTTPError):  # connect errors, lost connections, malformed HTTP
        return RequestError(str(exc)[:300])
    if isinstance(exc, ValueError):  # JSON
        return RequestError(f"malformed response: {str(exc)[:200]}")
    return RequestError(f"{type(exc).__name__}: {str(exc)[:200]}")


async def send(client: http1.Client, endpoint: Endpoint, body: Mapping[str, Any],
               on_delta: OnDelta | None = None) -> Reply:
    """``start``, awaited: the reply, or RequestError."""
    return await http1.awaited(lambda done: start(client, endpoint, body, on_delta, done))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _raise_for_status(resp: http1.Response) -> None:
    if resp.status != 200:
        detail = resp.body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
        if resp.status == 505:
            detail = "HTTP version not supported: the server refuses HTTP/1.1 (HTTP/2 only?); " + detail
        raise RequestError(f"HTTP {resp.status}: {detail[:200]}", status=resp.status,
                           retry_after=retry_after(resp.headers.get("retry-after")))


async def list_models(client: http1.Client, endpoint: Endpoint) -> list[str]:
    """GET /v1/models: the model ids the server serves; RequestError names what went wrong."""
    url = f"{endpoint.base_url.split('?', 1)[0].rstrip('/')}/models"
    try:
        resp = await client.request("GET", endpoint.route_path("models"), headers=endpoint.headers)
        if resp.status in (401, 403):
            raise RequestError(f"GET {url}: HTTP {resp.status}, the server refused the API key "
                               "(check the variable named by sut.api_key_env)")
        _raise_for_status(resp)
        data = json.loads(resp.body)
    except RequestError:
        raise
    except http1.ReadTimeout as exc:
        raise RequestError(f"GET {url}: no answer within the timeout") from exc
    except http1.ConnectError as exc:
        hint = "" if "TLS" in exc.reason or "proxy" in exc.reason else "; is the server up?"
        raise RequestError(f"GET {url}: cannot connect ({exc.reason}){hint}") from exc
    except (http1.HTTPError, ValueError) as exc:
        raise RequestError(f"GET {url}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, Mapping)]


def tls_context(ca_bundle: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """Certificate checks for https: the system's CAs, or those of ``ca_bundle`` (a PEM file);
    none at all when ``verify`` is false."""
    ctx = ssl.create_default_context(cafile=ca_bundle)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def env_proxy(base_url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy the environment names for ``base_url`` (https_proxy, http_proxy, all_proxy, in
    either case, as curl and requests read them), unless no_proxy covers its host; None: direct."""
    if environ is None:
        proxies = urllib.request.getproxies_environment()
    else:  # the same reading, of the mapping given (upper case first, lower case wins)
        proxies = {}
        for upper in (True, False):
            for name, value in environ.items():
                if value and name.lower().endswith("_proxy") and name.isupper() == upper:
                    proxies[name.lower()[:-6]] = value
    u = urlsplit(base_url)
    proxy = proxies.get(u.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(u.hostname or "", proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def client(base_url: str, *, limit: int, connect_timeout_s: float, read_timeout_s: float,
           ssl_context: ssl.SSLContext | None = None, proxy: str | None = None) -> http1.Client:
    """A pooled client (call on the loop that will use it): ``limit`` keep-alive connections, bounded
    connect and per-read waits, through ``proxy`` when given (see ``env_proxy``)."""
    return http1.Client(base_url, limit=limit, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
                        ssl_context=ssl_context, proxy=proxy)
