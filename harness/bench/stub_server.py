"""A scripted OpenAI-compatible streaming server: known delays, injected faults, server-side timestamps.

For the HTTP client's tests and its fidelity benchmark. Every response streams ``--tokens`` tokens
(``" t0 t1 ..."``, one token per chunk, ``token_ids`` included when asked): the first after
``--ttft-ms``, then one every ``--tpot-ms``, scheduled from the request's arrival (absolute
deadlines, so the server's own lateness does not accumulate). Faults, on every ``--fault-every``-th
request, in turn when several are given: ``500`` (HTTP 500), ``401`` (HTTP 401 whose message
echoes the request's Authorization header, as many servers do), ``cut`` (the connection is
dropped half-way), ``hang`` (a role chunk, then silence). ``--exit-after N`` kills the process
after N requests. GET /stats returns
each streamed request's arrival, first-chunk and last-chunk times (``time.perf_counter()``:
CLOCK_MONOTONIC on Linux, comparable between processes), with what identifies it to a client: the
prompt, the response ``id`` and the ``X-Request-ID`` header (AIPerf sends one).

It is a measuring instrument, so it is written on bare asyncio protocols rather than a web
framework, and each chunk costs a timer callback and one socket write. A request's arrival is the
kernel's receive timestamp of its last bytes (``SO_TIMESTAMPNS``, Linux), not the moment this
process gets to read them: when the loop is busy sending other streams' chunks, or the process
waits to be scheduled (a few hundred µs on a VM, several ms when it is descheduled), the request
has still arrived, and the server's own lateness must not be counted against the client. Where
the kernel gives no timestamp, the time of the read is used.
HTTP/1.1 only, as the OpenAI clients speak it: keep-alive, Content-Length request bodies, chunked
streamed responses; over TLS with ``--tls DIR`` (``server.pem`` and ``server.key`` there, as
``harness.bench.tls`` writes them; the URL printed then names ``localhost``, the certificate's host).

    python -m harness.bench.stub_server --port 0 --ttft-ms 20 --tpot-ms 5 --tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

from harness import offline

MAX_HEAD = 64 * 1024  # bytes of request line + headers accepted
MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True)
class Script:
    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    tokens: int = 16
    faults: tuple[str, ...] = ()  # 500 | 401 | cut | hang, taken in turn by the faulty requests
    fault_every: int = 0
    exit_after: int = 0
    model: str = "stub"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    arrival: float  # perf_counter() when its last byte was read
    keep_alive: bool


class Stub:
    """The script, the request counter and the per-request records, shared by all connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.count = itertools.count(1)
        self.records: list[dict[str, Any]] = []


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them one at a time (no pipelining)."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.buf = b""
        self.busy = False  # a response is under way; later bytes wait in ``buf``
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.sock: StampedSocket | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        # asyncio hands protocols a guard around the socket; the stamps are on the one it reads
        self.sock = getattr(sock, "_sock", sock)

    def data_received(self, data: bytes) -> None:
        now = self.sock.stamp if isinstance(self.sock, StampedSocket) and self.sock.stamp else time.perf_counter()
        self.buf += data
        if not self.busy:
            self._next(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    # -- requests --------------------------------------------------------------------------
    def _next(self, now: float) -> None:
        request = self._parse(now)
        if request is not None:
            self.busy = True
            self._dispatch(request)

    def _parse(self, now: float) -> Request | None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._close_with(431, "request head too large")
            return None
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        try:
            method, path, version = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._close_with(400, "malformed request head")
            return None
        if "chunked" in headers.get("transfer-encoding", "").lower() or not 0 <= length <= MAX_BODY:
            self._close_with(411, "a Content-Length body is required")
            return None
        if len(self.buf) < end + 4 + length:
            return None  # the rest of the body is still on its way
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        conn = headers.get("connection", "").lower()
        keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        return Request(method, path.split("?", 1)[0], headers, body, now, keep_alive)

    def _dispatch(self, r: Request) -> None:
        stub = self.stub
        if r.method == "GET" and r.path == "/v1/models":
            self._json(r, 200, {"object": "list", "data": [{"id": stub.script.model, "object": "model"}]})
        elif r.method == "GET" and r.path == "/health":  # vLLM's liveness route; GuideLLM checks it first
            self._json(r, 200, {})
        elif r.method == "GET" and r.path == "/stats":
            self._json(r, 200, stub.records)
        elif r.method == "POST" and r.path in ("/v1/completions", "/v1/chat/completions"):
            self._generate(r)
        else:
            self._json(r, 404, {"error": {"message": f"no route {r.method} {r.path}"}})

    def _generate(self, r: Request) -> None:
        s = self.stub.script
        n = next(self.stub.count)
        if s.exit_after and n > s.exit_after:
            os._exit(1)  # a server that dies mid-run: every open connection drops
        try:
            body = json.loads(r.body)
        except ValueError:
            self._json(r, 400, {"error": {"message": "the body is not JSON"}})
            return
        chat = r.path.endswith("chat/completions")
        faulty = s.faults and s.fault_every and n % s.fault_every == 0
        fault = s.faults[(n // s.fault_every - 1) % len(s.faults)] if faulty else None
        if fault == "500":
            self._json(r, 500, {"error": {"message": "injected failure"}})
            return
        if fault == "401":  # echoes the credentials it got, as many servers do
            auth = r.headers.get("authorization", "(none)")
            self._json(r, 401, {"error": {"message": f"Incorrect API key provided: {auth}"}})
            return
        tokens = min(int(body.get("max_tokens") or s.tokens), s.tokens)
        stream = Stream(self, r, body, n, chat, tokens, fault)
        if body.get("stream"):
            stream.begin()
        elif fault != "hang":
            self.timer = asyncio.get_running_loop().call_at(stream.due(tokens - 1), stream.whole)

    # -- responses -------------------------------------------------------------------------
    def head(self, status: int, content_type: str, *, length: int | None, keep_alive: bool) -> bytes:
        framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
        return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {content_type}\r\n"
                f"{framing}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()

    def _write_json(self, status: int, obj: Any, *, keep_alive: bool) -> None:
        payload = json.dumps(obj).encode()
        assert self.transport is not None
        self.transport.write(self.head(status, "application/json", length=len(payload), keep_alive=keep_alive)
                             + payload)

    def _json(self, r: Request, status: int, obj: Any) -> None:
        self._write_json(status, obj, keep_alive=r.keep_alive)
        self.done(r)

    def _close_with(self, status: int, message: str) -> None:
        self._write_json(status, {"error": {"message": message}}, keep_alive=False)
        assert self.transport is not None
        self.transport.close()

    def done(self, r: Request) -> None:
        """The response is complete: close, or take the next request already buffered."""
        self.busy = False
        self.timer = None
        assert self.transport is not None
        if not r.keep_alive:
            self.transport.close()
        elif self.buf:
            self._next(time.perf_counter())


class Stream:
    """One generation: a timer callback whenever tokens come due, a socket write per token."""

    def __init__(self, conn: Connection, r: Request, body: dict, n: int, chat: bool, tokens: int,
                 fault: str | None) -> None:
        self.conn, self.r, self.chat, self.tokens, self.fault = conn, r, chat, tokens, fault
        self.with_ids = bool(body.get("return_token_ids"))
        self.envelope = envelope(chat, n, conn.stub.script.model, stream=bool(body.get("stream")))
        self.prompt = (body.get("messages") or [{}])[-1].get("content") if chat else body.get("prompt")
        self.i = 0
        self.first = 0.0
        assert conn.transport is not None
        self.transport = conn.transport
        # The schedule starts when the request arrived, in the loop's clock (also CLOCK_MONOTONIC).
        self.start = asyncio.get_running_loop().time() - (time.perf_counter() - r.arrival)

    def due(self, i: int) -> float:
        s = self.conn.stub.script
        return self.start + (s.ttft_ms + i * s.tpot_ms) / 1000

    def text(self, i: int) -> str:
        return f" t{i}"

    def choice(self, i: int, piece: dict) -> dict:
        c: dict[str, Any] = {"index": 0, **piece, "finish_reason": "length" if i == self.tokens - 1 else None}
        if self.with_ids:
            c["token_ids"] = [100 + i]
        return c

    def begin(self) -> None:
        self.transport.write(self.conn.head(200, "text/event-stream", length=None, keep_alive=self.r.keep_alive))
        if self.chat:
            self.transport.write(self.event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}))
        if self.fault != "hang":
            self.schedule()

    def schedule(self) -> None:
        self.conn.timer = asyncio.get_running_loop().call_at(self.due(self.i), self.tick)

    def event(self, obj: dict) -> bytes:
        """One SSE event carrying ``obj``, framed as one HTTP chunk."""
        return chunk(b"data: " + json.dumps({**self.envelope, **obj}).encode() + b"\n\n")

    def tick(self) -> None:
        """Send every token now due (one write each); then wait for the next, or end the stream."""
        loop = asyncio.get_running_loop()
        while True:
            i = self.i
            if self.transport.is_closing():
                return
            if self.fault == "cut" and i == self.tokens // 2:
                self.transport.close()  # no [DONE], no finish_reason, no last chunk: the stream is cut
                return
            piece = {"delta": {"content": self.text(i)}} if self.chat else {"text": self.text(i)}
            data = self.event({"choices": [self.choice(i, piece)]})
            self.i += 1
            if self.i == self.tokens:  # the usage chunk, [DONE] and the end of the body go with the last token
                data += (self.event({"choices": [], "usage": {"completion_tokens": self.tokens}})
                         + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            last = time.perf_counter()  # as the chunk goes to the kernel: the receiver may run before write returns
            self.transport.write(data)
            self.first = self.first or last
            if self.i == self.tokens:
                break
            if self.due(self.i) > loop.time():
                self.schedule()
                return
        self.conn.stub.records.append({
            "arrival": self.r.arrival, "first": self.first, "last": last, "tokens": self.tokens,
            "prompt": self.prompt, "id": self.envelope["id"], "request_id": self.r.headers.get("x-request-id")})
        self.conn.done(self.r)

    def whole(self) -> None:
        """The non-streamed answer, all at once when its last token is due."""
        text = "".join(self.text(i) for i in range(self.tokens))
        piece = {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
        self.conn._json(self.r, 200, {**self.envelope, "choices": [self.choice(self.tokens - 1, piece)],
                                      "usage": {"completion_tokens": self.tokens}})


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def envelope(chat: bool, n: int, model: str, *, stream: bool) -> dict:
    """The fields every OpenAI response object carries; clients such as AIPerf dispatch on ``object``."""
    kind = ("chat.completion.chunk" if stream else "chat.completion") if chat else "text_completion"
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{n}", "object": kind, "created": int(time.time()),
            "model": model}


class StampedSocket(socket.socket):
    """A connection whose reads note the kernel's receive time of the bytes they return.

    ``stamp``: ``time.perf_counter()`` of the last segment read, converted from the kernel's
    CLOCK_REALTIME stamp; 0.0 when the kernel gave none. asyncio's transports read with ``recv``,
    or ``recv_into`` under TLS (its protocol takes buffers).
    """

    stamp = 0.0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if _SO_TIMESTAMPNS is None:
            return super().recv(bufsize, flags)
        data, ancillary, _, _ = self.recvmsg(bufsize, _ANCILLARY, flags)
        self._note(ancillary)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if _SO_TIMESTAMPNS is None:
            return super().recv_into(buffer, nbytes, flags)
        view = memoryview(buffer)
        n, ancillary, _, _ = self.recvmsg_into([view[:nbytes] if nbytes else view], _ANCILLARY, flags)
        self._note(ancillary)
        return n

    def _note(self, ancillary: list) -> None:
        self.stamp = 0.0  # never an earlier read's time
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(raw) >= 16:
                sec, ns = _TIMESPEC.unpack_from(raw)
                self.stamp = sec + ns * 1e-9 - (time.time() - time.perf_counter())


class StampingListener(socket.socket):
    """The listening socket: accepted connections are StampedSockets, and inherit its timestamping.

    Timestamping is turned on here, before any connection: the kernel switches it on for the
    whole machine asynchronously when the first socket asks, so bytes arriving then carry none.
    """

    @classmethod
    def open(cls, host: str, port: int) -> StampingListener:
        listener = cls(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if _SO_TIMESTAMPNS is not None:
            with contextlib.suppress(OSError):  # no kernel timestamps: reads are stamped when they happen
                listener.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        listener.bind((host, port))
        listener.listen(1024)
        return listener

    def accept(self) -> tuple[socket.socket, Any]:
        fd, addr = self._accept()  # type: ignore[attr-defined]
        conn = StampedSocket(self.family, self.type, self.proto, fileno=fd)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each chunk goes out when written
        return conn, addr


# Linux's SO_TIMESTAMPNS (asm-generic; Python 3.11 has no constant for it), which is also the
# SCM_TIMESTAMPNS message carrying a struct timespec on CLOCK_REALTIME.
_SO_TIMESTAMPNS = _SCM_TIMESTAMPNS = 35 if sys.platform == "linux" else None
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 64


async def _serve(stub: Stub, host: str, port: int, tls: str = "") -> None:
    loop = asyncio.get_running_loop()
    listener = StampingListener.open(host, port)
    listener.setblocking(False)
    ctx = None
    if tls:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(tls, "server.pem"), os.path.join(tls, "server.key"))
    server = await loop.create_server(lambda: Connection(stub), sock=listener, ssl=ctx)
    scheme, name = ("https", "localhost") if tls else ("http", host)
    print(f"stub: {scheme}://{name}:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    await server.serve_forever()


def main() -> None:
    offline.enforce()  # before anything imports a Hugging Face library
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=0.0)
    p.add_argument("--tpot-ms", type=float, default=0.0)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--fault", default="", help="comma-separated: 500, 401, cut, hang (taken in turn)")
    p.add_argument("--fault-every", type=int, default=0)
    p.add_argument("--exit-after", type=int, default=0)
    p.add_argument("--tls", default="", metavar="DIR", help="serve https with DIR/server.pem and DIR/server.key")
    a = p.parse_args()
    faults = tuple(f for f in a.fault.split(",") if f)
    if set(faults) - {"500", "401", "cut", "hang"}:
        p.error(f"--fault: unknown fault in {a.fault!r} (known: 500, 401, cut, hang)")
    script = Script(a.ttft_ms, a.tpot_ms, a.tokens, faults, a.fault_every, a.exit_after)
    try:
        asyncio.run(_serve(Stub(script), "127.0.0.1", a.port, a.tls))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
