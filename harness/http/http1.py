"""A small HTTP/1.1 client on asyncio protocols, built for timing streamed LLM responses.

A streamed response is handed to a callback from inside the protocol's ``data_received``: no
stream reader, no task wake-up, no per-read timer for each chunk. Measured against the stub
server at 32 streams ticking together, aiohttp's path cost about 100 µs of CPU per streamed
chunk and, queued behind the other streams' chunks, added 2-3 ms to the TTFT of a new request;
this one costs a fraction of that (``python -m harness.bench.http_client``).

A request submitted from another thread (LoadGen's) is written from that thread when a pooled
connection is idle (``Client.start_threadsafe``): no hand-over to the loop's thread, which may be
asleep or busy with other streams' chunks, before its bytes leave. Only the write happens there;
the answer is read and handed on by the loop as usual. That holds for https too: TLS is done here
on memory buffers (``ssl.SSLObject``) over a plain TCP socket, under the connection's lock, so
either thread can encrypt a request and write it in order (asyncio's own TLS transport lives on
the loop's thread only).

Scope, what OpenAI-compatible servers need: http and https (certificate checks by the given
``ssl.SSLContext``; ALPN offers ``http/1.1`` only), an ``http://`` proxy (CONNECT tunnels for
https, absolute-form requests for http), a keep-alive pool with a connection limit and a FIFO
queue beyond it, Content-Length, chunked and close-delimited bodies, gzip and deflate, connect and
read timeouts, a cap on a collected body. Not: redirects, HTTP/2 (a server answering in HTTP/2
gets one clear error), pipelining, cookies.

A request that finds its pooled connection closed by the server before any byte of the answer
came back (an idle keep-alive connection the server had just dropped) is sent once more on a new
connection: the server never answered it. Every other failure is the caller's to count.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import os
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

log = logging.getLogger(__name__)

OnBody = Callable[[bytes], None]
OnDone = Callable[["Response | None", "BaseException | None"], None]
MAX_HEAD = 64 * 1024  # bytes of status line and headers accepted
MAX_COLLECTED = 16 * 1024 * 1024  # bytes of a response body kept in memory (an error body is cut there)
_TLS_READ = 256 * 1024  # bytes of plaintext the TLS layer may hand over per call (one buffer per client)
# An HTTP/2 server reading an HTTP/1.1 request answers with frames: a 9-byte header whose type
# byte is SETTINGS (4) or GOAWAY (7), on stream 0.
_H2_FRAME_TYPES = (4, 7)
H2_ONLY = ("the server answered in HTTP/2; this client speaks HTTP/1.1 only (use the server's HTTP/1.1 "
           "endpoint or an HTTP/1.1 proxy in front of it)")


class HTTPError(Exception):
    """A request failed below HTTP status codes; the message is one short line."""


class ConnectError(HTTPError):
    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot connect to {host}:{port} ({reason})")
        self.host, self.port, self.reason = host, port, reason


class ReadTimeout(HTTPError):
    pass


class ConnectionLost(HTTPError):
    pass


class ProtocolError(HTTPError):
    pass


class BodyTooLarge(ProtocolError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"response body larger than {limit:,} bytes")
        self.limit = limit


def _h2_frame(head: bytes) -> bool:
    """Whether the first bytes of an answer are an HTTP/2 frame (or preface), not a status line."""
    if head.startswith(b"PRI * HTTP/2"):
        return True
    return len(head) >= 9 and head[3] in _H2_FRAME_TYPES and head[5:9] == b"\0\0\0\0"


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes  # empty when the body went to ``on_body``


@dataclass(eq=False)
class Exchange:
    """One request: its bytes, where its body goes, and whom to tell how it ended (once)."""

    request: bytes
    on_body: OnBody | None
    on_done: OnDone
    max_body: int = MAX_COLLECTED  # a 2xx body collected (no on_body) larger than this fails the request
    may_resend: bool = True
    done: bool = False
    conn: _Connection | None = None  # while it is being sent or answered

    def cancel(self) -> None:
        """Abandon the request: a queued one is dropped; one under way closes its connection,
        since the rest of its answer cannot be skipped. ``on_done`` hears ConnectionLost."""
        if self.conn is not None and self.conn.ex is self:
            self.conn.fail(ConnectionLost("cancelled"))
        else:
            self.settle(None, ConnectionLost("cancelled"))

    def settle(self, response: Response | None, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.on_done(response, error)
        except Exception:  # the caller's bug must not break the connection's bookkeeping
            log.exception("an HTTP completion callback failed")


@dataclass
class _Framing:
    """How the body of the response under way is delimited, and where it goes."""

    kind: str = "head"  # head | length | chunk-size | chunk-data | chunk-crlf | trailer | close
    left: int = 0  # bytes left of a Content-Length body or of the current chunk
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    deliver: OnBody | None = None  # the caller's on_body, for a 2xx answer
    collected: list[bytes] = field(default_factory=list)
    size: int = 0
    limit: int = 0  # a collected 2xx body may not pass this (BodyTooLarge); others are cut at MAX_COLLECTED
    inflate: Any = None  # a zlib decompressor, for gzip or deflate bodies


class _Connection(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.ex: Exchange | None = None
        self.f = _Framing()
        self.buf = b""
        self.used = False
        self.reused = False
        self.got_bytes = False  # any byte of the current answer
        self.last = 0.0  # time.monotonic() of the last write or read, for the read timeout
        self.fd = -1  # the socket, for writes from other threads (POSIX)
        self.dead = False  # connection_lost has begun: no other thread may write any more
        # Held by another thread's write, by connection_lost, and around every use of the TLS
        # state: encrypting and writing happen together, so records reach the socket in order.
        self.writing = threading.Lock()
        self.rest = b""  # bytes a partial write from another thread left for the loop to write
        self.tls: ssl.SSLObject | None = None
        self.tls_in = self.tls_out = None  # its memory BIOs (ssl.MemoryBIO)
        self.tunneling = False  # CONNECT sent to the proxy, its answer not yet read
        self.tunnel = b""  # that answer so far
        self.ready: asyncio.Future = client.loop.create_future()  # connected (tunnel and TLS handshake done)

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and self.client.writes_from_any_thread:
            self.fd = sock.fileno()
        c = self.client
        if c.tunnel_request:  # through a proxy to an https origin: CONNECT first
            self.tunneling = True
            transport.write(c.tunnel_request)
        else:
            self._secure()

    def _secure(self) -> None:
        """Begin the TLS handshake (https), or be ready at once (http)."""
        c = self.client
        if c.ssl is None:
            self._ready()
            return
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = c.ssl.wrap_bio(self.tls_in, self.tls_out, server_hostname=c.host)
        self._handshake()

    def _ready(self, error: BaseException | None = None) -> None:
        if self.ready.done():
            return
        if error is None:
            self.ready.set_result(self)
        else:
            self.ready.set_exception(error)
            self.close()

    def _handshake(self) -> None:
        assert self.tls is not None and self.transport is not None
        with self.writing:
            try:
                self.tls.do_handshake()
                done, error = True, None
            except ssl.SSLWantReadError:
                done, error = False, None
            except (ssl.SSLError, ssl.CertificateError) as exc:
                done, error = False, exc
            out = self.tls_out.read()
            if out:
                self.transport.write(out)
        if error is not None:
            self._ready(ConnectError(self.client.host, self.client.port, tls_reason(error)))
        elif done:
            self._ready()

    def _tunnel_answer(self, data: bytes) -> None:
        """The proxy's answer to CONNECT: 200, then the tunnel carries TLS."""
        self.tunnel += data
        end = self.tunnel.find(b"\r\n\r\n")
        if end < 0:
            if len(self.tunnel) > MAX_HEAD:
                self._ready(ProtocolError("the proxy's answer to CONNECT is too large"))
            return
        status_line = self.tunnel[:end].split(b"\r\n", 1)[0].decode("latin-1")
        self.tunneling, self.tunnel = False, b""
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            c = self.client
            self._ready(ConnectError(c.host, c.port, f"the proxy {c.proxy_host}:{c.proxy_port} refused CONNECT: "
                                                     f"{status_line[:80]!r}"))
            return
        self._secure()

    def _decrypt(self, data: bytes) -> bytes:
        """TLS records in, plaintext out (b"" while the handshake runs or a record is incomplete)."""
        assert self.tls is not None and self.transport is not None
        if not self.ready.done():
            self.tls_in.write(data)
            self._handshake()
            data = b""  # the handshake consumed it; any early application data is read below
            if not self.ready.done() or self.ready.exception() is not None:
                return b""
        out: list[bytes] = []
        view = self.client.tls_buffer  # read into one buffer: a fresh 256 KiB object per call costs more
        with self.writing:
            if data:
                self.tls_in.write(data)
            while True:
                try:
                    n = self.tls.read(_TLS_READ, view)
                except ssl.SSLWantReadError:  # the rest is an incomplete record
                    break
                except ssl.SSLZeroReturnError:  # close_notify: the server is done with this connection
                    break
                if not n:
                    break
                out.append(bytes(view[:n]))
                if not self.tls_in.pending and not self.tls.pending():  # all read: no exception needed
                    break
            reply = self.tls_out.read()  # e.g. a TLS 1.3 key update needs an answer
            if reply:
                self.transport.write(reply)
        return b"".join(out)

    def _write(self, data: bytes) -> None:
        """Write from the loop's thread: after any bytes another thread's partial write left."""
        assert self.transport is not None
        with self.writing:
            if self.tls is not None:
                self.tls.write(data)
                data = self.tls_out.read()
            if self.rest:
                data, self.rest = self.rest + data, b""
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.tunneling:
            self._tunnel_answer(data)
            return
        if self.tls is not None:
            try:
                data = self._decrypt(data)
            except (ssl.SSLError, OSError) as exc:  # a corrupt record: this connection is done
                self._ready(ConnectError(self.client.host, self.client.port, tls_reason(exc)))
                self.fail(ConnectionLost(f"TLS failed: {tls_reason(exc)}"))
                return
            if not data:
                return
        if self.ex is None:  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        self.got_bytes = True
        if self.client.incoming:  # a request submitted from another thread goes out before this chunk
            self.client._drain()
        try:
            self._feed(data)
        except Exception as exc:  # a malformed answer, or the caller's on_body raised
            self.fail(exc)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost tells the rest

    def connection_lost(self, exc: Exception | None) -> None:
        # asyncio closes the socket after this returns; a write from another thread either
        # finished before (it holds ``writing``) or sees ``dead`` and leaves the fd alone.
        with self.writing:
            self.dead = True
        if not self.ready.done():
            c = self.client
            why = "the proxy closed the tunnel" if self.tunneling else (
                "closed during the TLS handshake" if self.tls is not None else "closed at once")
            self._ready(ConnectError(c.host, c.port, why))
        ex = self.ex
        self.ex = None
        if ex is not None and not ex.done:
            if self.f.kind == "close":  # a close-delimited body ends here
                self.ex = ex
                self._finish(reusable=False)
            elif self.reused and not self.got_bytes and ex.may_resend:
                ex.may_resend = False
                self.client._send_on_new(ex)
            else:
                what = "before the response was complete" if self.got_bytes else "before any response"
                ex.settle(None, ConnectionLost(f"connection lost {what}"))
        self.client._lost(self)

    # -- one exchange ----------------------------------------------------------------------
    def start(self, ex: Exchange) -> None:
        assert self.transport is not None
        self._begin(ex)
        try:
            self._write(ex.request)
        except Exception as exc:  # the request must end either way, never wait forever
            self.fail(exc)

    def start_here(self, ex: Exchange) -> bool:
        """``start`` from a thread other than the loop's, on an idle connection taken from the
        pool; False (nothing written) when this connection cannot be written from here: the
        caller hands the request to the loop instead."""
        with self.writing:
            transport = self.transport
            if (self.fd < 0 or self.dead or transport is None or transport.is_closing()
                    or transport.get_write_buffer_size() or self.rest or not self.ready.done()):
                return False
            self._begin(ex)  # before the write: the answer may be read before os.write returns
            data = ex.request
            try:
                if self.tls is not None:
                    self.tls.write(data)
                    data = self.tls_out.read()
            except ssl.SSLError as exc:  # a TLS session that cannot send any more: the loop fails it
                self.client.loop.call_soon_threadsafe(self.fail, ConnectionLost(f"TLS failed: {tls_reason(exc)}"))
                return True
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # the peer is gone: the loop's connection_lost settles or resends
                log.debug("writing a request from another thread failed: %s", exc)
                return True
            if sent < len(data):  # the socket buffer is full: the loop writes the rest, before anything else
                self.rest = data[sent:]
        if sent < len(data):
            self.client.loop.call_soon_threadsafe(self._write_rest)
        return True

    def _write_rest(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with self.writing:
                rest, self.rest = self.rest, b""
                if rest:
                    self.transport.write(rest)

    def _begin(self, ex: Exchange) -> None:
        self.last = time.monotonic()  # first: the watchdog reads it once ``ex`` is set
        self.f, self.buf, ex.conn = _Framing(), b"", self
        self.reused, self.used, self.got_bytes = self.used, True, False
        self.ex = ex

    def fail(self, exc: BaseException) -> None:
        ex, self.ex = self.ex, None
        if ex is not None:
            ex.settle(None, exc)
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _feed(self, data: bytes) -> None:
        f = self.f
        if f.kind == "head":
            self.buf += data
            if not self._head():
                return
            data, self.buf = self.buf, b""
        if f.kind == "length":
            take = data[:f.left]
            f.left -= len(take)
            self._body(take)
            if f.left == 0:
                self._finish(reusable=True)
        elif f.kind == "close":
            self._body(data)
        else:
            self._chunked(data)

    def _head(self) -> bool:
        """Parse the status line and headers once they are all in; True when the body begins."""
        f = self.f
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if _h2_frame(self.buf):
                    raise ProtocolError(H2_ONLY)
                if len(self.buf) > MAX_HEAD:
                    raise ProtocolError("response head too large")
                return False
            if not self.buf.startswith(b"HTTP/") and _h2_frame(self.buf):
                raise ProtocolError(H2_ONLY)
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            self.buf = self.buf[end + 4:]
            try:
                version, code = lines[0].split(" ", 2)[:2]
                f.status = int(code)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, value = line.split(":", 1)
                    name = name.strip().lower()
                    headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
            except ValueError:
                raise ProtocolError(f"malformed response head: {lines[0][:80]!r}") from None
            if version.startswith("HTTP/2"):
                raise ProtocolError(H2_ONLY)
            if not version.startswith("HTTP/1."):
                raise ProtocolError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
            if 100 <= f.status < 200:  # 100 Continue and friends: the real answer follows
                continue
            f.headers = headers
            break
        ex = self.ex
        assert ex is not None
        f.deliver = ex.on_body if 200 <= f.status < 300 else None
        f.limit = ex.max_body if 200 <= f.status < 300 else MAX_COLLECTED
        encoding = f.headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            f.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)
        elif encoding != "identity":
            raise ProtocolError(f"unsupported Content-Encoding: {encoding}")
        if f.status in (204, 304):
            f.kind, f.left = "length", 0
        elif "chunked" in f.headers.get("transfer-encoding", "").lower():
            f.kind = "chunk-size"
        elif "content-length" in f.headers:
            try:
                f.kind, f.left = "length", int(f.headers["content-length"])
            except ValueError:
                raise ProtocolError(f"bad Content-Length: {f.headers['content-length'][:40]!r}") from None
        else:
            f.kind = "close"
        if f.kind == "length" and f.left == 0:
            self._finish(reusable=True)
            return False
        return True

    def _chunked(self, data: bytes) -> None:
        f = self.f
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)  # parsed up to ``pos``: a read of many chunks is not copied over and over
        while pos < end and self.ex is not None:
            if f.kind == "chunk-data":
                take = buf[pos:pos + f.left]
                pos += len(take)
                f.left -= len(take)
                self._body(take)
                if f.left == 0:
                    f.kind = "chunk-crlf"
            elif f.kind == "chunk-crlf":
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise ProtocolError("malformed chunked body")
                pos += 2
                f.kind = "chunk-size"
            else:  # chunk-size or trailer: one line
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > MAX_HEAD:
                        raise ProtocolError("malformed chunked body")
                    break
                line, pos = buf[pos:i], i + 2
                if f.kind == "trailer":
                    if not line:
                        self._finish(reusable=True)
                        return
                    continue
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"malformed chunk size {line[:20]!r}") from None
                f.kind, f.left = ("chunk-data", size) if size else ("trailer", 0)
        self.buf = buf[pos:] if pos else buf

    def _body(self, data: bytes) -> None:
        f = self.f
        if f.inflate is not None:
            data = f.inflate.decompress(data)
        if not data:
            return
        if f.deliver is not None:
            f.deliver(data)
        elif f.size + len(data) <= f.limit:
            f.collected.append(data)
            f.size += len(data)
        elif 200 <= f.status < 300:  # an answer far larger than asked for: stop reading it, keep nothing
            raise BodyTooLarge(f.limit)
        elif f.size < f.limit:  # an error body: its start says enough
            f.collected.append(data[:f.limit - f.size])
            f.size = f.limit

    def _finish(self, *, reusable: bool) -> None:
        f = self.f
        if f.inflate is not None:
            rest, f.inflate = f.inflate.flush(), None
            if rest:
                self._body(rest)
        ex, self.ex = self.ex, None
        assert ex is not None
        if reusable and f.headers.get("connection", "").lower() != "close":
            self.client._idle(self)  # first, so that a request started by the callback below can have it
        else:
            self.close()
        ex.settle(Response(f.status, f.headers, b"".join(f.collected)))


def tls_reason(exc: BaseException) -> str:
    """A failed TLS handshake as a short reason, with what to do about a certificate."""
    reason = getattr(exc, "reason", None) or ""
    text = (getattr(exc, "verify_message", None) or str(exc)).split(" (_ssl.c")[0]
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or isinstance(exc, ssl.CertificateError):
        return (f"TLS certificate not trusted: {text[:160]} (sut.ca_bundle names the CA file that signed it; "
                "sut.verify_tls=false skips the check)")
    if "NO_APPLICATION_PROTOCOL" in reason or "NO_APPLICATION_PROTOCOL" in str(exc):
        return "TLS: the server refused HTTP/1.1 (ALPN): it speaks HTTP/2 only; this client speaks HTTP/1.1"
    return f"TLS failed: {text[:200]}"


def proxy_authorization(proxy: SplitResult) -> str | None:
    """A Basic Proxy-Authorization value from a proxy URL's user and password, if it has them."""
    if proxy.username is None:
        return None
    pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def parse_url(url: str) -> SplitResult:
    """``url`` split; ValueError unless it is http:// or https:// with a host."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url}")
    return u


async def awaited(start: Callable[[Callable[[Any, BaseException | None], None]], Exchange]) -> Any:
    """Await a callback API: ``start(on_done)`` begins an exchange and returns it; the result, or
    the error raised. Cancelling the awaiting task cancels the exchange."""
    future: asyncio.Future = asyncio.get_running_loop().create_future()

    def done(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    exchange = start(done)
    try:
        return await future
    except asyncio.CancelledError:
        exchange.cancel()
        raise


class Client:
    """A pool of up to ``limit`` keep-alive connections to one origin (scheme, host, port).

    Create, use and close it on one event loop. Requests beyond ``limit`` wait in a FIFO queue;
    the read timeout counts from the request's write or the last byte received, so a queued
    request is not timed out, and a stream that keeps sending is never cut.

    ``ssl_context`` checks an https origin's certificate (default: the system's CAs); ``proxy``,
    an ``http://[user:password@]host:port`` URL, is used for every connection.
    """

    def __init__(self, base_url: str, *, limit: int, connect_timeout_s: float, read_timeout_s: float,
                 ssl_context: ssl.SSLContext | None = None, proxy: str | None = None) -> None:
        u = parse_url(base_url)
        assert u.hostname is not None
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        default = u.port is None or u.port == (443 if u.scheme == "https" else 80)
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname  # an IPv6 literal
        self.authority = host if default else f"{host}:{self.port}"
        self.ssl: ssl.SSLContext | None = None
        self.tls_buffer = memoryview(bytearray(_TLS_READ if u.scheme == "https" else 0))  # decrypted on the loop
        if u.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
            self.ssl.set_alpn_protocols(["http/1.1"])
        # start_threadsafe writes the socket itself (TLS too: see _Connection._write)
        self.writes_from_any_thread = os.name == "posix"
        self.proxy_host = self.proxy_port = None
        self.absolute_form = False  # http through a proxy: the request line names the whole URL
        self.tunnel_request = b""  # https through a proxy: CONNECT first
        self.proxy_auth: str | None = None
        if proxy:
            pu = urlsplit(proxy)
            if pu.scheme != "http" or not pu.hostname:
                raise ValueError(f"not an http:// proxy URL: {pu.scheme}://{pu.hostname or ''}")
            self.proxy_host, self.proxy_port = pu.hostname, pu.port or 80
            self.proxy_auth = proxy_authorization(pu)
            auth = f"Proxy-Authorization: {self.proxy_auth}\r\n" if self.proxy_auth else ""
            if self.ssl is not None:
                target = f"{host}:{self.port}"
                self.tunnel_request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode("latin-1")
            else:
                self.absolute_form = True
        self.limit = limit
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.loop = asyncio.get_running_loop()
        self.conns: set[_Connection] = set()
        self.opening = 0
        self.idle: list[_Connection] = []  # most recently used last: the least likely to be stale
        self.queue: collections.deque[Exchange] = collections.deque()
        self.closed = False
        self.incoming: collections.deque[tuple[Callable[..., None], tuple]] = collections.deque()
        # Guards ``idle`` between the loop's thread and threads calling start_threadsafe; held
        # for list operations only, never across a system call.
        self.lock = threading.Lock()
        self._watch = self.loop.call_later(self._watch_every(), self._watchdog)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def request_bytes(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        target = f"http://{self.authority}{path}" if self.absolute_form else path
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.authority}", "Accept-Encoding: identity"]
        if self.absolute_form and self.proxy_auth:
            head.append(f"Proxy-Authorization: {self.proxy_auth}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def start(self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None,
              on_body: OnBody | None = None, on_done: OnDone, max_body: int = MAX_COLLECTED) -> Exchange:
        """Send one request from the loop's thread; its bytes are written now when a pooled
        connection is free (no task, no loop iteration in between). A 2xx body goes to ``on_body``
        as it arrives when one is given, else is collected up to ``max_body`` bytes (BodyTooLarge
        beyond); ``on_done(response, None)`` or ``on_done(None, error)`` comes once, with
        ConnectError, ReadTimeout, ConnectionLost, ProtocolError, or what ``on_body`` raised. The
        exchange returned can be cancelled."""
        ex = Exchange(self.request_bytes(method, path, headers or {}, body), on_body, on_done, max_body)
        self._dispatch_new(ex)
        return ex

    def start_threadsafe(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                         body: bytes | None = None, on_body: OnBody | None = None, on_done: OnDone,
                         max_body: int = MAX_COLLECTED) -> None:
        """``start`` from any thread. The request is written from the calling thread when an idle
        pooled connection can take it, else handed to the loop (``call_soon_threadsafe``); the
        answer and ``on_done`` come on the loop's thread either way."""
        ex = Exchange(self.request_bytes(method, path, headers or {}, body), on_body, on_done, max_body)
        if self.writes_from_any_thread:
            with self.lock:
                conn = self.idle.pop() if self.idle and not self.closed else None
            if conn is not None:
                if conn.start_here(ex):
                    return
                self.call_soon_threadsafe(self._take_back, conn)  # closing, say: the loop decides
        self.call_soon_threadsafe(self._dispatch_new, ex)

    def _take_back(self, conn: _Connection) -> None:
        if conn.transport is not None and not conn.transport.is_closing() and not conn.dead:
            self._idle(conn)

    def _dispatch_new(self, ex: Exchange) -> None:
        if self.closed:
            ex.settle(None, HTTPError("the HTTP client is closed"))
        else:
            self._dispatch(ex)

    def call_soon_threadsafe(self, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)`` on the loop, from any thread, as soon as possible: before the next
        chunk of any response is handled, or in the loop's next iteration if that comes first.

        With many streams, their chunks come in bursts (a server's decode step answers them all);
        a request submitted during a burst would otherwise wait for the rest of it, and that wait
        would be counted in its time to first token.
        """
        self.incoming.append((fn, args))
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        while self.incoming:
            fn, args = self.incoming.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("a submitted call failed on the HTTP client's loop")

    async def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                      body: bytes | None = None, on_body: OnBody | None = None,
                      max_body: int = MAX_COLLECTED) -> Response:
        """``start``, awaited: the response, or the error raised."""
        return await awaited(lambda done: self.start(method, path, headers=headers, body=body, on_body=on_body,
                                                     on_done=done, max_body=max_body))

    async def warm(self, n: int) -> int:
        """Open up to ``n`` idle connections now (bounded by ``limit``); how many are open."""
        want = max(0, min(n, self.limit) - len(self.conns) - self.opening)
        self.opening += want
        try:
            results = await asyncio.gather(*(self._connect() for _ in range(want)), return_exceptions=True)
        finally:
            self.opening -= want
        for r in results:
            if isinstance(r, _Connection):
                self._idle(r)
        return len(self.conns)

    async def close(self) -> None:
        self.closed = True
        self._watch.cancel()
        while self.queue:
            self.queue.popleft().settle(None, HTTPError("the HTTP client was closed"))
        for conn in list(self.conns):
            conn.fail(HTTPError("the HTTP client was closed"))
        await asyncio.sleep(0)  # let the transports close

    # -- the pool --------------------------------------------------------------------------
    def _dispatch(self, ex: Exchange) -> None:
        while True:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                break
            if conn.transport is not None and not conn.transport.is_closing():
                conn.start(ex)
                return
        if len(self.conns) + self.opening < self.limit:
            self._send_on_new(ex)
        else:
            self.queue.append(ex)

    def _send_on_new(self, ex: Exchange) -> None:
        if self.closed:
            ex.settle(None, HTTPError("the HTTP client was closed"))
            return
        self.opening += 1  # counted now, not when the task runs: the limit holds for a burst of requests
        self.loop.create_task(self._connect_and_send(ex))

    async def _connect_and_send(self, ex: Exchange) -> None:
        try:
            conn = await self._connect()
        except Exception as exc:  # whatever happened, the request ends: never left waiting
            self.opening -= 1
            ex.settle(None, exc if isinstance(exc, HTTPError) else ConnectError(self.host, self.port, repr(exc)))
            self._next()
            return
        self.opening -= 1
        if ex.done:  # cancelled while connecting
            self._idle(conn)
        else:
            conn.start(ex)

    async def _connect(self) -> _Connection:
        """A new connection (through the proxy, TLS handshake done), counted in ``conns``; the
        caller counts it in ``opening`` meanwhile."""
        host, port = (self.proxy_host, self.proxy_port) if self.proxy_host else (self.host, self.port)

        async def connect() -> _Connection:
            _, conn = await self.loop.create_connection(lambda: _Connection(self), host, port)
            try:
                return await conn.ready
            except BaseException:
                conn.close()
                raise

        try:
            conn = await asyncio.wait_for(connect(), self.connect_timeout_s)
        except TimeoutError:
            raise ConnectError(self.host, self.port, f"no connection within {self.connect_timeout_s:g} s") from None
        except HTTPError:
            raise
        except OSError as exc:
            via = f" (via the proxy {host}:{port})" if self.proxy_host else ""
            raise ConnectError(self.host, self.port, (exc.strerror or type(exc).__name__) + via) from None
        self.conns.add(conn)
        return conn

    def _idle(self, conn: _Connection) -> None:
        """A connection is free: the next queued request takes it, or it waits in the pool."""
        if self.closed:
            conn.close()
            return
        while self.queue:
            ex = self.queue.popleft()
            if not ex.done:
                conn.start(ex)
                return
        with self.lock:
            self.idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        self.conns.discard(conn)
        with self.lock:
            if conn in self.idle:
                self.idle.remove(conn)
        self._next()

    def _next(self) -> None:
        """A slot opened: a queued request gets a new connection."""
        while self.queue and not self.closed and len(self.conns) + self.opening < self.limit:
            ex = self.queue.popleft()
            if not ex.done:
                self._send_on_new(ex)

    def _watch_every(self) -> float:
        return max(0.02, min(1.0, self.read_timeout_s / 8))

    def _watchdog(self) -> None:
        """Fail requests whose server stayed silent longer than the read timeout (one timer for all)."""
        now = time.monotonic()
        for conn in list(self.conns):
            if conn.ex is not None and now - conn.last > self.read_timeout_s:
                conn.fail(ReadTimeout(f"no data from the server within {self.read_timeout_s:g} s"))
        if not self.closed:
            self._watch = self.loop.call_later(self._watch_every(), self._watchdog)
