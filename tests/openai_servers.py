"""Real HTTP servers on 127.0.0.1 for the sut=openai tests.

- ``serve``: harness-serve (an in-process SUT behind the OpenAI API); ``stub``: the harness's
  scripted stub (``harness.bench.stub_server``).
- ``fake``: an OpenAI-compatible fake written here on aiohttp, sharing no code with the harness,
  so the harness's figures are checked against a server it did not write: known TTFT, time per
  token and token count, usage or not, http or https, error statuses, answers past max_tokens.
- ``proxy``: an HTTP proxy (CONNECT tunnels and absolute-form forwarding) that prints one line per
  tunnel or forwarded request.
- ``transformers_serve``: Hugging Face's ``transformers serve`` (a third-party serving stack) on
  the embedded tiny model.

Each runs in its own process; start-up and shutdown are bounded, so a broken server fails the test
instead of hanging it. Run ``python -m tests.openai_servers fake|proxy --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

START_TIMEOUT_S = 60  # harness-serve sut=hf loads torch: tens of seconds on a loaded 2-core machine


@dataclass
class Served:
    """A server process: its base URL, and its later stdout lines (the proxy logs there)."""

    url: str
    proc: subprocess.Popen
    lines: queue.Queue

    def output(self, wait_s: float = 0.2) -> list[str]:
        """The lines printed since the first, waiting ``wait_s`` for stragglers."""
        out, deadline = [], time.monotonic() + wait_s
        while True:
            try:
                out.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())).rstrip("\n"))
            except queue.Empty:
                return out


@contextlib.contextmanager
def served(*argv: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Start ``python argv`` (its first line holds its URL), yield it, then kill it."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        try:
            first = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"{argv} did not start within {START_TIMEOUT_S}s") from None
        url = next((w for w in first.split() if w.startswith(("http://", "https://"))), None)
        assert url, f"no URL in {first!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield Served(url, proc, lines)
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def server(*argv: str) -> Iterator[str]:
    with served(*argv) as s:
        yield s.url


def stub(*args: str) -> contextlib.AbstractContextManager[str]:
    return server("-m", "harness.bench.stub_server", "--port", "0", *args)


def serve(*overrides: str) -> contextlib.AbstractContextManager[str]:
    return server("-m", "harness.serve", "--port", "0", *overrides)


def fake(*args: str) -> contextlib.AbstractContextManager[str]:
    return server("-m", "tests.openai_servers", "fake", *args)


def proxy() -> contextlib.AbstractContextManager[Served]:
    return served("-m", "tests.openai_servers", "proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- transformers serve -----------------------------------------------------------------------

TRANSFORMERS_START_S = 120  # imports torch, transformers and FastAPI, loads the model: ~15 s here, alone


@contextlib.contextmanager
def transformers_serve(model_dir: str, *, continuous_batching: bool = False) -> Iterator[str]:
    """``transformers serve MODEL_DIR`` on a free port of 127.0.0.1 (CPU, float32), waited for on
    /health, stopped by its pid at the end; yields its base URL (``.../v1``)."""
    import shutil

    exe = shutil.which("transformers") or os.path.join(os.path.dirname(sys.executable), "transformers")
    port = free_port()
    argv = [exe, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
            "--dtype", "float32", "--log-level", "warning"]
    if continuous_batching:
        # A small paged cache: sized by default from the machine's memory, its first request then
        # takes ~35 s on CPU (0.5 s with this one, which holds 8k tokens: ample for these tests).
        argv += ["--continuous-batching", "--cb-num-blocks", "256", "--cb-block-size", "32",
                 "--cb-max-batch-tokens", "1024"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TRANSFORMERS_START_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"transformers serve exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"transformers serve did not answer /health within {TRANSFORMERS_START_S}s")
            time.sleep(0.25)
        yield f"{base}/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and anything it started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# -- the fake server (runs as ``python -m tests.openai_servers fake``) ------------------------------

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def token_text(i: int) -> str:
    """The text of the fake's i-th token: a space and a word, one token to the server, two pieces to
    a word tokenizer (so a client counting text gets twice the truth)."""
    return f" {WORDS[i % len(WORDS)]}{i}"


async def _fake_app(a: argparse.Namespace):
    from aiohttp import web

    served_requests = [0]

    def refused(request):
        if a.require_header:
            name, _, value = a.require_header.partition(":")
            if request.headers.get(name) != value:
                return web.json_response({"error": {"message": f"missing header {name}"}}, status=401)
        if a.require_query and request.query_string != a.require_query:
            return web.json_response({"error": {"message": f"query {request.query_string!r}"}}, status=400)
        return None

    async def models(request):
        return refused(request) or web.json_response({"object": "list", "data": [{"id": a.model, "object": "model"}]})

    async def health(request):
        return web.json_response({})

    async def completions(request):
        arrival = time.perf_counter()
        served_requests[0] += 1
        body = await request.json()
        chat = request.path.endswith("chat/completions")
        if a.status and served_requests[0] <= a.status_times:
            headers = {"Retry-After": a.retry_after} if a.retry_after else {}
            return web.json_response({"error": {"message": f"fake status {a.status}"}}, status=a.status,
                                     headers=headers)
        if refused(request):
            return refused(request)
        n = a.tokens if a.ignore_max_tokens else min(a.tokens, int(body.get("max_tokens") or a.tokens))
        word = "x" * a.token_chars if a.token_chars else None

        def text(i: int) -> str:
            return f" {word}" if word else token_text(i)

        def choice(i: int, t: str, finish: str | None) -> dict:
            c = {"index": 0, "finish_reason": finish}
            if chat:
                c["delta"] = {"content": t}
            else:
                c["text"] = t
            if body.get("return_token_ids") and a.ids:
                c["token_ids"] = [1000 + i]
            return c

        usage = {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}
        if not body.get("stream"):
            await asyncio.sleep(max(0.0, arrival + (a.ttft_ms + (n - 1) * a.tpot_ms) / 1000 - time.perf_counter()))
            out = {"id": "fake", "object": "text_completion", "model": a.model,
                   "choices": [choice(0, "".join(text(i) for i in range(n)), "length")]}
            if body.get("return_token_ids") and a.ids:
                out["choices"][0]["token_ids"] = [1000 + i for i in range(n)]
            if a.usage:
                out["usage"] = usage
            return web.json_response(out)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(n):
            due = arrival + (a.ttft_ms + i * a.tpot_ms) / 1000  # absolute: lateness does not accumulate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            chunk = {"id": "fake", "object": "text_completion", "model": a.model,
                     "choices": [choice(i, text(i), "length" if i == n - 1 else None)]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if a.usage and (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + json.dumps({"id": "fake", "choices": [], "usage": usage}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", completions)
    return app


async def _run_fake(a: argparse.Namespace) -> None:
    import ssl

    from aiohttp import web

    runner = web.AppRunner(await _fake_app(a), access_log=None)
    await runner.setup()
    ctx = None
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(a.tls, "server.pem"), os.path.join(a.tls, "server.key"))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    print(f"fake: {'https' if a.tls else 'http'}://{a.host}:{port}/v1", flush=True)
    await asyncio.Event().wait()


# -- the proxy (runs as ``python -m tests.openai_servers proxy``) ------------------------------------

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _proxy_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, target, version = line.split(" ", 2)
    if method == "CONNECT":
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        print(f"CONNECT {target}", flush=True)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        return
    # absolute-form: GET http://host:port/path HTTP/1.1; forwarded as origin-form, this connection only
    rest = target.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
    print(f"{method} {target}", flush=True)
    up_writer.write(f"{method} /{path} {version}".encode("latin-1") + head[len(line):])
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _run_proxy() -> None:
    srv = await asyncio.start_server(_proxy_client, "127.0.0.1", 0)
    print(f"proxy: http://127.0.0.1:{srv.sockets[0].getsockname()[1]}", flush=True)
    await srv.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.openai_servers")
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fake", help="an OpenAI-compatible fake with known timings")
    f.add_argument("--tokens", type=int, default=32)
    f.add_argument("--ttft-ms", type=float, default=50.0)
    f.add_argument("--tpot-ms", type=float, default=5.0)
    f.add_argument("--no-usage", dest="usage", action="store_false", help="never report usage")
    f.add_argument("--ids", action="store_true", help="send token_ids when asked (return_token_ids)")
    f.add_argument("--ignore-max-tokens", action="store_true", help="always send --tokens tokens")
    f.add_argument("--token-chars", type=int, default=0, help="each token is a space and this many x's")
    f.add_argument("--status", type=int, default=0, help="answer the first --status-times requests with this")
    f.add_argument("--status-times", type=int, default=1)
    f.add_argument("--retry-after", default="", help="Retry-After header value sent with --status")
    f.add_argument("--require-header", default="", help="NAME:VALUE the requests must carry (else 401)")
    f.add_argument("--require-query", default="", help="the query string completions must carry (else 400)")
    f.add_argument("--tls", default="", help="directory with server.pem and server.key: serve https")
    f.add_argument("--host", default="127.0.0.1", help="host name printed in the URL (localhost for TLS)")
    f.add_argument("--model", default="fake")
    sub.add_parser("proxy", help="an HTTP proxy: CONNECT and absolute-form, one line per connection")
    a = p.parse_args(argv)
    try:
        asyncio.run(_run_fake(a) if a.what == "fake" else _run_proxy())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
