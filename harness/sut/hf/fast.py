"""The opt-in CUDA fast path for single-stream decode (``sut.cuda_fast_decode=true``).

One request at a time goes through ``model.generate`` with a static KV cache. On CUDA,
transformers then compiles the decode step (``torch.compile``, mode ``reduce-overhead``, i.e.
CUDA graphs), which removes most of the per-token Python and kernel-launch cost that dominates
batch-1 decoding. A static cache has a fixed length, so :meth:`SerialDecoder.warm_up` generates
once at the longest prompt's length before timing starts: later requests reuse that cache size
and the compiled graphs instead of recompiling. There is no in-flight batching here, which is
why this path is for SingleStream, not Server.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from harness.sut.base import TokenStream
from harness.sut.hf.torch_thread import torch_thread

log = logging.getLogger(__name__)


class _Emitter(BaseStreamer):
    """generate()'s streamer interface, forwarding new tokens to a TokenStream."""

    def __init__(self, stream: TokenStream) -> None:
        self.stream = stream
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() puts the prompt first
            self.prompt_seen = True
            return
        self.stream.emit(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


class SerialDecoder:
    """Streams requests one at a time through ``model.generate`` on the torch thread."""

    def __init__(self, model: Any, generation_config: Any, *, static_cache: bool) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.generation_config = copy.deepcopy(generation_config)
        if static_cache:
            self.generation_config.cache_implementation = "static"
        self._waiting: deque[tuple[Sequence[int], TokenStream]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._running = False  # the loop is queued or running on the torch thread
        self._loop_done: threading.Event | None = None

    def warm_up(self, prompt_ids: Sequence[int]) -> None:
        """Generate once at this prompt's length: sizes the static cache and compiles."""
        torch_thread().call(self._generate, prompt_ids, None)

    def submit(self, prompt_ids: Sequence[int], stream: TokenStream) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the decoder is closed")
            self._waiting.append((prompt_ids, stream))
            if not self._running:
                self._running = True
                self._loop_done = torch_thread().start(self._loop)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            done = self._loop_done
        if done is not None:
            done.wait(timeout=30)
        error = RuntimeError("the SUT was closed before this sample finished")
        with self._lock:
            waiting, self._waiting = list(self._waiting), deque()
        for _, stream in waiting:
            stream.fail(error)

    def _loop(self) -> None:
        """Serve waiting requests one at a time until none is left (or the decoder closes), then
        give the torch thread back; the next submit starts the loop again."""
        while True:
            with self._lock:
                if self._closed or not self._waiting:
                    self._running = False
                    return
                prompt_ids, stream = self._waiting.popleft()
            try:
                self._generate(prompt_ids, stream)
            except Exception as exc:
                log.exception("generate failed")
                stream.fail(exc)
            else:
                stream.finish()

    def _generate(self, prompt_ids: Sequence[int], stream: TokenStream | None) -> None:
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            # Batch 1: generate() stops right after the first EOS, so at most one EOS is streamed.
            self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                generation_config=self.generation_config,
                                streamer=_Emitter(stream) if stream is not None else None)
