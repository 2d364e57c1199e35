"""The HTTP side of ``sut=openai``: request bodies, SSE parsing and one timed request (aiohttp).

Free of LoadGen and of the SUT protocol, so ``harness-providers`` and the client benchmark time
requests with exactly the code the SUT uses. Times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

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
        return f"{self.base_url.rstrip('/')}/{'chat/completions' if self.api == 'chat' else 'completions'}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


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
                reply.token_ids = (reply.token_ids or []) + [int(i) for i in ids]
            if on_delta is not None:
                on_delta(text, [int(i) for i in ids] if ids is not None else None)
        if choice.get("finish_reason"):
            reply.finish_reason = choice["finish_reason"]


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    if resp.status != 200:
        detail = (await resp.content.read(300)).decode("utf-8", "replace").strip().replace("\n", " ")
        raise RequestError(f"HTTP {resp.status}: {detail[:200]}")


async def send(session: aiohttp.ClientSession, endpoint: Endpoint, body: Mapping[str, Any],
               on_delta: OnDelta | None = None) -> Reply:
    """One request, streamed (SSE) when ``body["stream"]``; RequestError on any failure.

    A stream counts as complete on ``data: [DONE]`` or a finish_reason; a connection that ends
    before either is an error (a cut stream must not pass as a short answer).
    """
    reply = Reply(t_start=time.perf_counter())
    api = endpoint.api
    try:
        async with session.post(endpoint.url, json=body, headers=endpoint.headers) as resp:
            await _raise_for_status(resp)
            if not body.get("stream"):
                _take(reply, await resp.json(content_type=None), api, on_delta)
            else:
                done = False
                rest = b""
                # Whatever bytes arrived, split into lines here: aiohttp's line iterator costs about
                # as much CPU per chunk as all the rest of the client (profiled at 64 streams).
                async for data in resp.content.iter_any():
                    lines = (rest + data).split(b"\n")
                    rest = lines.pop()  # an incomplete line waits for more bytes
                    for line in lines:
                        if not line.startswith(b"data:"):  # SSE comments, event names, blank separators
                            continue
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            done = True
                            break
                        _take(reply, json.loads(payload.decode()), api, on_delta)
                    if done:
                        break
                if not done and reply.finish_reason is None:
                    raise RequestError("stream ended before [DONE] or a finish_reason (cut mid-way)")
    except RequestError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise RequestError("read timeout: no data from the server within sut.read_timeout_s") from exc
    except aiohttp.ClientConnectorError as exc:
        raise RequestError(f"cannot connect to {exc.host}:{exc.port} ({exc.strerror or exc.os_error})") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise RequestError(f"connection lost mid-response ({type(exc).__name__})") from exc
    except aiohttp.ClientError as exc:
        raise RequestError(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    except ValueError as exc:  # JSON
        raise RequestError(f"malformed response: {str(exc)[:200]}") from exc
    reply.t_end = time.perf_counter()
    return reply


async def list_models(session: aiohttp.ClientSession, base_url: str, headers: Mapping[str, str]) -> list[str]:
    """GET /v1/models: the model ids the server serves; RequestError names what went wrong."""
    url = f"{base_url.rstrip('/')}/models"
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status in (401, 403):
                raise RequestError(f"GET {url}: HTTP {resp.status}, the server refused the API key "
                                   "(check the variable named by sut.api_key_env)")
            await _raise_for_status(resp)
            data = await resp.json(content_type=None)
    except RequestError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise RequestError(f"GET {url}: no answer within the timeout") from exc
    except aiohttp.ClientConnectorError as exc:
        raise RequestError(f"GET {url}: cannot connect ({exc.strerror or exc.os_error}); is the server up?") from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise RequestError(f"GET {url}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, Mapping)]


def session(*, limit: int, connect_timeout_s: float, read_timeout_s: float) -> aiohttp.ClientSession:
    """A pooled session: ``limit`` keep-alive connections, bounded connect and per-read waits."""
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_connect=connect_timeout_s,
                                    sock_read=read_timeout_s)
    # No proxies from the environment: a benchmark measures the server, not a proxy in between.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
                                 timeout=timeout, trust_env=False)
