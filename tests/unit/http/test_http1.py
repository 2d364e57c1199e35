"""harness.http.http1 against real scripted servers on 127.0.0.1: framing, pooling, faults."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time
from collections.abc import Callable

import pytest

from harness.bench.tls import make_certificates
from harness.http import http1

CHUNKED_SSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"8;ext=1\r\ndata: a\n\r\n"  # a chunk extension
               b"10\r\ndata: bcdefghij\n\r\n"
               b"0\r\nX-Trailer: yes\r\n\r\n")


def length_response(body: bytes, *, status: int = 200, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


class ScriptedServer:
    """Answers the n-th request on any connection with ``answers[n]`` (bytes, or a callable taking
    the writer), written ``piece`` bytes at a time so the client sees them split anywhere."""

    def __init__(self, answers: list[bytes | Callable], piece: int = 0, close_after: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.answers, self.piece, self.close_after, self.tls = answers, piece, close_after, tls
        self.requests: list[bytes] = []
        self.arrivals: list[float] = []  # perf_counter() when each request had been read
        self.connections = 0
        self.open = 0
        self.most_open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                self.arrivals.append(time.perf_counter())
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                if callable(answer):
                    await answer(writer)
                else:
                    step = self.piece or len(answer)
                    for i in range(0, len(answer), step):
                        writer.write(answer[i:i + step])
                        await writer.drain()
                        if self.piece:
                            await asyncio.sleep(0.0005)
                if self.close_after:
                    writer.close()
                    return
        finally:
            self.open -= 1

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def client(url: str, **kw) -> http1.Client:
    return http1.Client(url, **{"limit": 4, "connect_timeout_s": 2, "read_timeout_s": 2, **kw})


def run(coro) -> object:
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.mark.parametrize("piece", [0, 1, 3])
def test_a_chunked_stream_split_anywhere_reaches_on_body_whole_and_in_order(piece):
    async def go():
        async with ScriptedServer([CHUNKED_SSE], piece=piece) as url, client(url) as c:
            got: list[bytes] = []
            resp = await c.request("POST", "/v1/completions", body=b"{}", on_body=got.append)
            return resp, b"".join(got)

    resp, body = run(go())
    assert resp.status == 200 and resp.body == b"" and resp.headers["content-type"] == "text/event-stream"
    assert body == b"data: a\ndata: bcdefghij\n"


def test_content_length_close_delimited_gzip_and_interim_bodies():
    zipped = gzip.compress(b'{"ok": true}')

    async def close_delimited(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ")
        await writer.drain()
        writer.write(b"the end")
        writer.close()

    answers = [length_response(b"hello"),
               b"HTTP/1.1 100 Continue\r\n\r\n" + length_response(b"after continue"),
               length_response(zipped, extra="Content-Encoding: gzip\r\n"),
               close_delimited]

    async def go():
        async with ScriptedServer(answers, piece=2) as url, client(url) as c:
            return [(await c.request("GET", "/x")).body for _ in answers]

    assert run(go()) == [b"hello", b"after continue", b'{"ok": true}', b"until the end"]


def test_one_connection_is_kept_alive_and_the_request_is_well_formed():
    async def go():
        server = ScriptedServer([length_response(b"a")])
        async with server as url, client(url) as c:
            for _ in range(3):
                resp = await c.request("POST", "/v1/x", headers={"Authorization": "Bearer k"}, body=b"{}")
                assert resp.body == b"a"
        return server

    server = run(go())
    assert server.connections == 1 and len(server.requests) == 3
    head = server.requests[0].decode()
    assert head.startswith("POST /v1/x HTTP/1.1\r\n") and "\r\nHost: 127.0.0.1:" in head
    assert "Authorization: Bearer k" in head and head.endswith("Content-Length: 2\r\n\r\n{}")


def test_requests_beyond_the_limit_wait_their_turn():
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        writer.write(length_response(b"done"))

    async def go():
        server = ScriptedServer([slow])
        async with server as url, client(url, limit=2) as c:
            bodies = await asyncio.gather(*(c.request("GET", f"/{i}") for i in range(7)))
        return server, bodies

    server, bodies = run(go())
    assert [b.body for b in bodies] == [b"done"] * 7
    assert server.most_open == 2 and server.connections == 2


def test_warm_opens_the_pool_before_the_first_request():
    async def go():
        server = ScriptedServer([length_response(b"a")])
        async with server as url, client(url, limit=3) as c:
            assert await c.warm(10) == 3  # bounded by the limit
            await asyncio.gather(*(c.request("GET", "/") for _ in range(3)))
        return server

    assert run(go()).connections == 3


def test_a_pooled_connection_the_server_dropped_is_replaced_without_failing_the_request():
    async def go():
        server = ScriptedServer([length_response(b"a")], close_after=True)  # closes without saying so
        async with server as url, client(url) as c:
            first = await c.request("GET", "/")
            await asyncio.sleep(0.05)  # the close reaches the client: the idle connection is dropped
            second = await c.request("GET", "/")
            return server, first, second

    server, first, second = run(go())
    assert first.body == second.body == b"a" and server.connections == 2


def test_a_new_connection_dropped_before_any_answer_is_an_error_not_a_resend():
    async def drop(writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    async def go():
        server = ScriptedServer([drop])
        async with server as url, client(url) as c:
            with pytest.raises(http1.ConnectionLost, match="before any response"):
                await c.request("POST", "/", body=b"{}")
        return server

    assert len(run(go()).requests) == 1


def test_a_stream_cut_mid_body_is_connection_lost():
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED_SSE[:90])
        await writer.drain()
        writer.transport.abort()

    async def go():
        async with ScriptedServer([cut]) as url, client(url) as c:
            with pytest.raises(http1.ConnectionLost, match="before the response was complete"):
                await c.request("POST", "/", body=b"{}", on_body=lambda _: None)

    run(go())


def test_silence_past_the_read_timeout_fails_in_bounded_time():
    async def hang(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(30)

    async def go():
        async with ScriptedServer([hang]) as url, client(url, read_timeout_s=0.3) as c:
            start = time.monotonic()
            with pytest.raises(http1.ReadTimeout):
                await c.request("POST", "/", body=b"{}", on_body=lambda _: None)
            return time.monotonic() - start

    assert 0.3 <= run(go()) < 2


def test_a_cancelled_request_frees_its_connection_or_its_place_in_the_queue():
    async def never(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def go():
        server = ScriptedServer([never, length_response(b"a")])
        async with server as url, client(url, limit=1) as c:
            stuck = asyncio.ensure_future(c.request("GET", "/stuck"))
            queued = asyncio.ensure_future(c.request("GET", "/queued"))
            await asyncio.sleep(0.05)
            queued.cancel()  # dropped from the queue: never sent
            stuck.cancel()  # under way: its connection is closed, the slot is free again
            second = await c.request("GET", "/after")
            return server, second

    server, second = run(go())
    assert second.body == b"a" and [r.split(b" ")[1] for r in server.requests] == [b"/stuck", b"/after"]
    assert server.connections == 2


def test_nobody_listening_is_a_connect_error_at_once():
    from tests.unit.sut.openai.test_adapter import free_port

    async def go():
        async with client(f"http://127.0.0.1:{free_port()}/v1") as c:
            with pytest.raises(http1.ConnectError, match=r"cannot connect to 127.0.0.1:\d+"):
                await c.request("GET", "/")

    start = time.monotonic()
    run(go())
    assert time.monotonic() - start < 2


def test_an_on_body_failure_fails_that_request_and_the_client_goes_on():
    def explode(_: bytes) -> None:
        raise ValueError("bad chunk")

    async def go():
        async with ScriptedServer([CHUNKED_SSE]) as url, client(url) as c:
            with pytest.raises(ValueError, match="bad chunk"):
                await c.request("POST", "/", body=b"{}", on_body=explode)
            got: list[bytes] = []
            await c.request("POST", "/", body=b"{}", on_body=got.append)
            return b"".join(got)

    assert run(go()) == b"data: a\ndata: bcdefghij\n"


def test_an_error_status_keeps_its_body_away_from_on_body():
    async def go():
        async with ScriptedServer([length_response(b'{"error": "no"}', status=503)]) as url, client(url) as c:
            got: list[bytes] = []
            resp = await c.request("POST", "/", body=b"{}", on_body=got.append)
            return resp, got

    resp, got = run(go())
    assert resp.status == 503 and resp.body == b'{"error": "no"}' and got == []


def test_calls_from_another_thread_run_on_the_loop():
    async def go():
        async with ScriptedServer([length_response(b"a")]) as url, client(url) as c:
            loop_thread = threading.get_ident()
            ran = asyncio.Event()
            seen: list[int] = []

            def on_loop(tag: str) -> None:
                seen.append(threading.get_ident())
                ran.set()

            threading.Thread(target=c.call_soon_threadsafe, args=(on_loop, "x")).start()
            await asyncio.wait_for(ran.wait(), 5)
            return loop_thread, seen

    loop_thread, seen = run(go())
    assert seen == [loop_thread]


def test_not_an_http_url_is_refused():
    async def go():
        with pytest.raises(ValueError, match="not an http"):
            http1.Client("ftp://x/v1", limit=1, connect_timeout_s=1, read_timeout_s=1)

    run(go())


class LoopThread:
    """An event loop on its own thread, as OpenAISUT runs its client; ``call`` runs a coroutine there."""

    def __enter__(self) -> LoopThread:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def call(self, coro) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_start_threadsafe_writes_from_the_calling_thread_while_the_loop_is_busy(scheme, certs):
    """The request leaves at once even when the client's loop cannot run (busy with other
    streams' chunks, or not yet awake); the answer is then read, and on_done called, on the loop.
    Over TLS too: the request is encrypted on the calling thread."""
    tls = certs.server_context() if scheme == "https" else None
    server = ScriptedServer([length_response(b"a")], tls=tls)
    with LoopThread() as srv, LoopThread() as cli:
        url = srv.call(server.__aenter__())

        async def make() -> http1.Client:
            c = client(url, limit=1, ssl_context=ssl.create_default_context(cafile=str(certs.ca)))
            await c.warm(1)
            return c

        c = cli.call(make())
        done = threading.Event()
        result: list = []

        def on_done(resp, error) -> None:
            result.append((threading.get_ident(), resp, error, time.perf_counter()))
            done.set()

        busy = threading.Event()

        def block() -> None:
            busy.set()
            time.sleep(0.5)  # the client's loop is stuck here (the GIL is free)

        cli.loop.call_soon_threadsafe(block)
        busy.wait(5)
        sent = time.perf_counter()
        c.start_threadsafe("POST", "/v1/x", body=b"{}", on_done=on_done)
        assert done.wait(5)
        cli.call(c.close())
        srv.call(server.__aexit__())
    thread, resp, error, answered = result[0]
    assert error is None and resp.status == 200 and resp.body == b"a"
    assert thread == cli.thread.ident
    assert server.arrivals[0] - sent < 0.25  # read by the server while the client's loop was blocked
    assert answered - sent >= 0.4  # ... and answered only once the loop ran again


def test_start_threadsafe_with_no_idle_connection_hands_the_request_to_the_loop():
    server = ScriptedServer([length_response(b"a"), length_response(b"b"), length_response(b"c")])
    with LoopThread() as srv, LoopThread() as cli:
        url = srv.call(server.__aenter__())

        async def make() -> http1.Client:
            return client(url, limit=1)

        c = cli.call(make())  # no connection open yet: the first request waits for one, the rest queue
        results: list = []
        all_done = threading.Semaphore(0)

        def on_done(resp, error) -> None:
            results.append((threading.get_ident(), resp.body if resp else error))
            all_done.release()

        for _ in range(3):
            c.start_threadsafe("POST", "/v1/x", body=b"{}", on_done=on_done)
        assert all(all_done.acquire(timeout=5) for _ in range(3))
        cli.call(c.close())
        c.start_threadsafe("POST", "/v1/x", body=b"{}", on_done=on_done)  # closed: fails, on the loop
        assert all_done.acquire(timeout=5)
        srv.call(server.__aexit__())
    assert [r[1] for r in results[:3]] == [b"a", b"b", b"c"] and server.connections == 1
    assert isinstance(results[3][1], http1.HTTPError) and "closed" in str(results[3][1])
    assert {r[0] for r in results} == {cli.thread.ident}


@pytest.mark.parametrize("piece", [0, 7])
def test_https_keeps_alive_streams_and_checks_the_certificate(certs, piece):
    async def go():
        server = ScriptedServer([length_response(b"hello"), CHUNKED_SSE], piece=piece, tls=certs.server_context())
        async with server as url:
            trusted = ssl.create_default_context(cafile=str(certs.ca))
            async with client(url, ssl_context=trusted) as c:
                first = await c.request("GET", "/x")
                got: list[bytes] = []
                await c.request("POST", "/v1", body=b"{}", on_body=got.append)
            async with client(url) as c:  # the system's CAs do not know this one
                with pytest.raises(http1.ConnectError, match=r"TLS certificate not trusted.*sut.ca_bundle"):
                    await c.request("GET", "/x")
        return server, first, b"".join(got)

    server, first, body = run(go())
    # one keep-alive connection; the untrusting client never got past its handshake
    assert first.body == b"hello" and body == b"data: a\ndata: bcdefghij\n" and server.connections == 1


def test_a_collected_2xx_body_past_max_body_fails_the_request_and_its_connection():
    big = b"x" * 100_000

    async def go():
        server = ScriptedServer([length_response(big), length_response(big, status=500), length_response(b"ok")])
        async with server as url, client(url) as c:
            with pytest.raises(http1.BodyTooLarge, match="larger than 1,000 bytes"):
                await c.request("POST", "/", body=b"{}", max_body=1000)
            error = await c.request("POST", "/", body=b"{}", max_body=1000)  # an error body: kept (to MAX_COLLECTED)
            after = await c.request("GET", "/")
        return error, after, server

    error, after, server = run(go())
    assert error.status == 500 and len(error.body) == 100_000  # under MAX_COLLECTED: whole
    assert after.body == b"ok" and server.connections == 2  # the cut connection was not reused


@pytest.mark.parametrize("answer", [
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x08\x07\x00\x00\x00\x00\x00" + bytes(8),  # SETTINGS, GOAWAY
    b"HTTP/2 200\r\ncontent-length: 0\r\n\r\n",
])
def test_an_http2_answer_is_named_in_one_line(answer):
    async def go():
        async with ScriptedServer([answer]) as url, client(url) as c:
            with pytest.raises(http1.ProtocolError, match=r"^the server answered in HTTP/2; this client speaks"):
                await c.request("GET", "/")

    run(go())


def test_a_proxy_refusing_connect_is_a_connect_error():
    async def go():
        async with ScriptedServer([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"]) as proxy_url:
            proxy = proxy_url.removesuffix("/v1")
            async with client("https://example.invalid/v1", proxy=proxy) as c:
                with pytest.raises(http1.ConnectError, match=r"refused CONNECT: 'HTTP/1.1 403 Forbidden'"):
                    await c.request("GET", "/")

    run(go())
