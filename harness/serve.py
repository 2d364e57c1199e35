"""``harness-serve``: an OpenAI-compatible server over an in-process SUT (``sut=hf``, ``sut=echo``...).

Serves GET /v1/models, POST /v1/completions and /v1/chat/completions, streamed (SSE) or not, so
the HTTP path (``sut=openai``) can be tested against a real server and in-process and HTTP
numbers compared. Greedy only. A prompt equal to a prompt of the configured dataset is served as
that sample (so ``sut=oracle`` answers with its reference); any other prompt is served as is.
Output token ids are returned in ``choices[].token_ids`` when the request asks for
``return_token_ids`` (as vLLM does). Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from harness import offline
from harness.errors import HarnessError
from harness.invocation import invoked_as
from harness.sut.base import SUT, Sample, supports_streaming

log = logging.getLogger("harness.serve")

EXAMPLES = """examples:
  harness-serve sut=echo sut.ttft_ms=20 sut.tpot_ms=5      a fake with known latencies
  harness-serve sut=hf                                     the embedded tiny model
  harness-serve sut=hf sut.model_path=/models/Llama-3.1-8B-Instruct --port 8000 --model-name llama
then: harness sut=openai sut.base_url=http://127.0.0.1:8000/v1 scenario=server"""


class _QueueStream:
    """A TokenStream that hands the SUT's events (any thread) to the request's coroutine."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()

    def _put(self, item: tuple[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def emit(self, token_ids: Sequence[int]) -> None:
        if token_ids:
            self._put(("ids", list(token_ids)))

    def finish(self, n_tokens: int | None = None) -> None:  # in-process SUTs emit every id: no count of their own
        self._put(("end", None))

    def fail(self, error: BaseException) -> None:
        self._put(("error", error))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": status}},
                             status=status)


class Server:
    """The HTTP handlers over one SUT."""

    def __init__(self, sut: SUT, model_name: str, samples: Sequence[Sample], max_new_tokens: int) -> None:
        self.sut = sut
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        self.by_prompt = {s.prompt: s for s in samples}
        self.ids = itertools.count(len(samples))  # indices of prompts not in the dataset

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": 0, "owned_by": "harness"}]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=True)

    def _sample(self, prompt: str) -> Sample:
        return self.by_prompt.get(prompt) or Sample(index=next(self.ids), prompt=prompt, text=prompt)

    async def _handle(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON")
        if body.get("model") not in (None, self.model_name):
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        if chat:
            messages = body.get("messages") or []
            prompt = "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        else:
            prompt = body.get("prompt", "")
            prompt = prompt[0] if isinstance(prompt, list) and prompt else prompt
        if not isinstance(prompt, str):
            return _error(400, "prompt must be a string")
        limit = min(int(body.get("max_tokens") or self.max_new_tokens), self.max_new_tokens)
        generation = _Generation(self, self._sample(prompt), limit, chat, bool(body.get("return_token_ids")))
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await generation.stream(request, usage)
        return await generation.whole()


class _Generation:
    """One request: runs the SUT and turns its token ids into text deltas."""

    def __init__(self, server: Server, sample: Sample, limit: int, chat: bool, with_ids: bool) -> None:
        self.server = server
        self.sample = sample
        self.limit = limit
        self.chat = chat
        self.with_ids = with_ids
        self.tokenizer = server.sut.tokenizer
        self.ids: list[int] = []
        self.text = ""
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:16]}"
        self.created = int(time.time())

    async def tokens(self):
        """Yields lists of new token ids until the SUT finishes or ``limit`` is reached."""
        loop = asyncio.get_running_loop()
        sut = self.server.sut
        stream = _QueueStream(loop)
        if supports_streaming(sut):
            sut.submit(self.sample, stream)  # type: ignore[attr-defined]
        else:
            def run() -> None:
                try:
                    (completion,) = sut.generate([self.sample])
                    stream.emit(completion.token_ids)
                    stream.finish()
                except Exception as exc:
                    stream.fail(exc)
            loop.run_in_executor(None, run)
        while len(self.ids) < self.limit:
            kind, value = await stream.queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise RuntimeError(f"{type(value).__name__}: {value}")
            new = value[:self.limit - len(self.ids)]
            self.ids += new
            yield new

    def delta(self, final: bool) -> str:
        """Text added since the last delta; a trailing partial UTF-8 character waits for the next token."""
        full = self.tokenizer.decode(self.ids)
        if not final and full.endswith("\ufffd"):
            return ""
        new, self.text = full[len(self.text):], full
        return new

    @property
    def finish_reason(self) -> str:
        return "length" if len(self.ids) >= self.limit else "stop"

    def usage(self) -> dict[str, int]:
        prompt = len(self.tokenizer.encode(self.sample.prompt))
        return {"prompt_tokens": prompt, "completion_tokens": len(self.ids), "total_tokens": prompt + len(self.ids)}

    def choice(self, text: str, ids: list[int] | None, finish: str | None, whole: bool = False) -> dict[str, Any]:
        if not self.chat:
            c: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        elif whole:
            c = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        else:
            c = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
        if self.with_ids and ids is not None:
            c["token_ids"] = ids
        return c

    def envelope(self, choices: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        return {"id": self.id, "object": kind + ("" if more.pop("whole", False) or not self.chat else ".chunk"),
                "created": self.created, "model": self.server.model_name, "choices": choices, **more}

    async def whole(self) -> web.Response:
        try:
            async for _ in self.tokens():
                pass
        except RuntimeError as exc:
            return _error(500, str(exc))
        choice = self.choice(self.delta(True), list(self.ids), self.finish_reason, whole=True)
        return web.json_response(self.envelope([choice], whole=True, usage=self.usage()))

    async def stream(self, request: web.Request, include_usage: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(obj: dict[str, Any]) -> None:
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        if self.chat:  # as OpenAI and vLLM do: an empty role chunk first, which is not a token
            await send(self.envelope([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "finish_reason": None}]))
        try:
            async for new in self.tokens():
                text = self.delta(False)
                if text or self.with_ids:
                    await send(self.envelope([self.choice(text, new, None)]))
        except RuntimeError as exc:
            await send({"error": {"message": str(exc), "type": "server_error", "code": 500}})
            await resp.write_eof()
            return resp
        await send(self.envelope([self.choice(self.delta(True), [] if self.with_ids else None, self.finish_reason)]))
        if include_usage:
            await send(self.envelope([], usage=self.usage()))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def build(overrides: Sequence[str]) -> tuple[SUT, list[Sample], int]:
    """The configured SUT, the dataset's samples, and max_new_tokens, from Hydra-style overrides."""
    from harness.config import compose
    from harness.datasets import load_dataset
    from harness.datasets.prompts import build_samples
    from harness.run import sut_context
    from harness.sut import build_sut

    config = compose(list(overrides))
    if config.sut.name == "openai":
        raise HarnessError("harness-serve serves an in-process SUT; sut=openai would only forward to another server")
    samples = build_samples(config.benchmark, load_dataset(config.dataset))
    sut = build_sut(config.sut, sut_context(config, samples))
    sut.load(samples)
    return sut, samples, config.benchmark.max_new_tokens


async def serve(server: Server, host: str, port: int) -> None:
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    sys.stdout.write(f"harness-serve: http://{host}:{bound}/v1 model {server.model_name} "
                     f"(sut={server.sut.name})\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    parser = argparse.ArgumentParser(
        prog=invoked_as("harness-serve"), epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve an in-process SUT over the OpenAI API (completions and chat, streamed or not).")
    parser.add_argument("overrides", nargs="*", help="Hydra-style config overrides as for harness: sut=hf, "
                        "sut.model_path=..., benchmark=..., dataset.path=... (default: sut=hf, the tiny model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--model-name", help="the model id served in /v1/models (default: the SUT's name)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(levelname)s] %(message)s")
    try:
        sut, samples, max_new_tokens = build(args.overrides)
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except Exception as exc:  # Hydra's own override errors: one line, not a traceback
        sys.stderr.write(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}\n")
        return 2
    server = Server(sut, args.model_name or sut.name, samples, max_new_tokens)
    try:
        asyncio.run(serve(server, args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        sys.stderr.write(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
        return 2
    finally:
        sut.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
