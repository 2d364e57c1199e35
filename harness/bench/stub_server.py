"""A scripted OpenAI-compatible streaming server: known delays, injected faults, server-side timestamps.

For the HTTP client's tests and its fidelity benchmark. Every response streams ``--tokens`` tokens
(``" t0 t1 ..."``, one token per chunk, ``token_ids`` included when asked): the first after
``--ttft-ms``, then one every ``--tpot-ms``, scheduled from the request's arrival (absolute
deadlines, so the server's own lateness does not accumulate). Faults, on every ``--fault-every``-th
request, in turn when several are given: ``500`` (HTTP 500), ``cut`` (the connection is
dropped half-way), ``hang`` (a role chunk, then silence). ``--exit-after N`` kills the process
after N requests. GET /stats returns
each streamed request's arrival, first-chunk and last-chunk times (``time.perf_counter()``:
CLOCK_MONOTONIC on Linux, comparable between processes), with what identifies it to a client: the
prompt, the response ``id`` and the ``X-Request-ID`` header (AIPerf sends one).

    python -m harness.bench.stub_server --port 0 --ttft-ms 20 --tpot-ms 5 --tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Script:
    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    tokens: int = 16
    faults: tuple[str, ...] = ()  # 500 | cut | hang, taken in turn by the faulty requests
    fault_every: int = 0
    exit_after: int = 0
    model: str = "stub"


class Stub:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.count = itertools.count(1)
        self.records: list[dict[str, float | int]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)  # vLLM's liveness route; GuideLLM checks it first
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/chat/completions", self.generate)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.script.model, "object": "model"}]})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.records)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        arrival = time.perf_counter()
        s = self.script
        n = next(self.count)
        if s.exit_after and n > s.exit_after:
            os._exit(1)  # a server that dies mid-run: every open connection drops
        body = await request.json()
        chat = request.path.endswith("chat/completions")
        faulty = s.faults and s.fault_every and n % s.fault_every == 0
        fault = s.faults[(n // s.fault_every - 1) % len(s.faults)] if faulty else None
        if fault == "500":
            return web.json_response({"error": {"message": "injected failure"}}, status=500)
        tokens = min(int(body.get("max_tokens") or s.tokens), s.tokens)
        with_ids = bool(body.get("return_token_ids"))
        if not body.get("stream"):
            await asyncio.sleep(3600 if fault == "hang" else 0)
            await asyncio.sleep((s.ttft_ms + (tokens - 1) * s.tpot_ms) / 1000)
            text = "".join(f" t{i}" for i in range(tokens))
            choice = {"index": 0, "finish_reason": "length",
                      **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
            if with_ids:
                choice["token_ids"] = list(range(100, 100 + tokens))
            return web.json_response({**envelope(chat, n, s.model, stream=False), "choices": [choice],
                                      "usage": {"completion_tokens": tokens}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        head = envelope(chat, n, s.model, stream=True)

        async def send(obj: dict) -> None:
            await resp.write(b"data: " + json.dumps({**head, **obj}).encode() + b"\n\n")

        if chat:
            await send({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        if fault == "hang":
            await asyncio.sleep(3600)
        first = last = 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(tokens):
            if fault == "cut" and i == tokens // 2:
                request.transport.close()  # no [DONE], no finish_reason: the stream is cut
                return resp
            due = start + (s.ttft_ms + i * s.tpot_ms) / 1000
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            piece = {"delta": {"content": f" t{i}"}} if chat else {"text": f" t{i}"}
            choice = {"index": 0, **piece, "finish_reason": "length" if i == tokens - 1 else None}
            if with_ids:
                choice["token_ids"] = [100 + i]
            await send({"choices": [choice]})
            last = time.perf_counter()
            first = first or last
        await send({"choices": [], "usage": {"completion_tokens": tokens}})
        await resp.write(b"data: [DONE]\n\n")
        prompt = body.get("prompt") if not chat else (body.get("messages") or [{}])[-1].get("content")
        self.records.append({"arrival": arrival, "first": first, "last": last, "tokens": tokens, "prompt": prompt,
                             "id": head["id"], "request_id": request.headers.get("X-Request-ID")})
        return resp


def envelope(chat: bool, n: int, model: str, *, stream: bool) -> dict:
    """The fields every OpenAI response object carries; clients such as AIPerf dispatch on ``object``."""
    kind = ("chat.completion.chunk" if stream else "chat.completion") if chat else "text_completion"
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{n}", "object": kind, "created": int(time.time()),
            "model": model}


async def _serve(stub: Stub, host: str, port: int) -> None:
    runner = web.AppRunner(stub.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    print(f"stub: http://{host}:{runner.addresses[0][1]}/v1", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=0.0)
    p.add_argument("--tpot-ms", type=float, default=0.0)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--fault", default="", help="comma-separated: 500, cut, hang (taken in turn)")
    p.add_argument("--fault-every", type=int, default=0)
    p.add_argument("--exit-after", type=int, default=0)
    a = p.parse_args()
    faults = tuple(f for f in a.fault.split(",") if f)
    if set(faults) - {"500", "cut", "hang"}:
        p.error(f"--fault: unknown fault in {a.fault!r} (known: 500, cut, hang)")
    script = Script(a.ttft_ms, a.tpot_ms, a.tokens, faults, a.fault_every, a.exit_after)
    try:
        asyncio.run(_serve(Stub(script), "127.0.0.1", a.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
