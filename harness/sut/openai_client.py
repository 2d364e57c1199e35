"""The HTTP side of ``sut=openai``: request bodies, SSE parsing and one timed request (``http1``).

Free of LoadGen and of the SUT protocol, so ``harness-providers`` and the client benchmark time
requests with exactly the code the SUT uses. Times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from harness.sut import http1

Api = Literal["completions", "chat"]
# Chat deltas: the answer, and the reasoning of reasoning models (vLLM/SGLang: reasoning_content,
# some servers: reasoning). Either one is a generated token, so either one is the first token.
_DELTA_KEYS = ("reasoning_content", "reasoning", "content")


class RequestError(Exception):
    """One request failed; the message is one short line, never holding the API key."""


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: ``base_url`` ends in ``/v1``; ``api_key`` is never shown."""

    base_url: str
    model: str
    api: Api = "completions"
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.route}"

    @property
    def route(self) -> str:
        return "chat/completions" if self.api == "chat" else "completions"

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def path(self) -> str:
        return f"{self.base_path}/{self.route}"

    @property
    def headers(self) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **auth}


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
    """What one request produced, filled in as it streams."""

    text: list[str] = field(default_factory=list)  # reasoning and content pieces, in order
    token_ids: list[int] | None = None  # when the server sent them
    usage_tokens: int | None = None  # the server's usage.completion_tokens
    finish_reason: str | None = None
    t_start: float = 0.0
    t_first: float | None = None  # first chunk carrying content, reasoning or token ids
    t_end: float = 0.0
    chunks: int = 0  # chunks carrying content

    @property
    def full_text(self) -> str:
        return "".join(self.text)


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
    for choice in (obj.get("choices") or [])[:1]:
        text = _delta(choice, api)
        ids = choice.get("token_ids")
        if text or ids:
            if reply.t_first is None:
                reply.t_first = time.perf_counter()
            reply.chunks += 1
            reply.text.append(text)
            if ids is not None:
                ids = [int(i) for i in ids]
                if reply.token_ids is None:
                    reply.token_ids = []
                reply.token_ids.extend(ids)  # not a new list per chunk: long answers stay linear
            if on_delta is not None:
                on_delta(text, ids)
        if choice.get("finish_reason"):
            reply.finish_reason = choice["finish_reason"]


class _SSE:
    """Server-sent events, fed as bytes arrive: each ``data:`` object is folded into the reply."""

    __slots__ = ("reply", "api", "on_delta", "rest", "done")

    def __init__(self, reply: Reply, api: Api, on_delta: OnDelta | None) -> None:
        self.reply, self.api, self.on_delta = reply, api, on_delta
        self.rest = b""  # an incomplete line waits for more bytes
        self.done = False  # data: [DONE] came

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        lines = (self.rest + data).split(b"\n") if self.rest else data.split(b"\n")
        self.rest = lines.pop()
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
    reply = Reply(t_start=time.perf_counter())
    sse = _SSE(reply, endpoint.api, on_delta) if body.get("stream") else None

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
                 on_body=sse.feed if sse is not None else None, on_done=done)


def request_error(exc: BaseException) -> RequestError:
    """Any failure of a request as one short line."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, http1.ReadTimeout):
        return RequestError("read timeout: no data from the server within sut.read_timeout_s")
    if isinstance(exc, http1.HTTPError):  # connect errors, lost connections, malformed HTTP
        return RequestError(str(exc)[:300])
    if isinstance(exc, ValueError):  # JSON
        return RequestError(f"malformed response: {str(exc)[:200]}")
    return RequestError(f"{type(exc).__name__}: {str(exc)[:200]}")


async def send(client: http1.Client, endpoint: Endpoint, body: Mapping[str, Any],
               on_delta: OnDelta | None = None) -> Reply:
    """``start``, awaited: the reply, or RequestError."""
    return await http1.awaited(lambda done: start(client, endpoint, body, on_delta, done))


def _raise_for_status(resp: http1.Response) -> None:
    if resp.status != 200:
        detail = resp.body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
        raise RequestError(f"HTTP {resp.status}: {detail[:200]}")


async def list_models(client: http1.Client, endpoint: Endpoint) -> list[str]:
    """GET /v1/models: the model ids the server serves; RequestError names what went wrong."""
    url = f"{endpoint.base_url.rstrip('/')}/models"
    try:
        resp = await client.request("GET", f"{endpoint.base_path}/models", headers=endpoint.headers)
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
        raise RequestError(f"GET {url}: cannot connect ({exc.reason}); is the server up?") from exc
    except (http1.HTTPError, ValueError) as exc:
        raise RequestError(f"GET {url}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, Mapping)]


def client(base_url: str, *, limit: int, connect_timeout_s: float, read_timeout_s: float) -> http1.Client:
    """A pooled client (call on the loop that will use it): ``limit`` keep-alive connections, bounded
    connect and per-read waits. No proxies from the environment: a benchmark measures the server,
    not a proxy in between."""
    return http1.Client(base_url, limit=limit, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
