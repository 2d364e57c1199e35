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
import queue
import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from harness.sut.base import TokenStream

log = logging.getLogger(__name__)
_STOP = object()


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
    """Streams requests one at a time through ``model.generate`` on one thread."""

    def __init__(self, model: Any, generation_config: Any, *, static_cache: bool) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.generation_config = copy.deepcopy(generation_config)
        if static_cache:
            self.generation_config.cache_implementation = "static"
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def warm_up(self, prompt_ids: Sequence[int]) -> None:
        """Generate once at this prompt's length: sizes the static cache and compiles."""
        self._generate(prompt_ids, None)

    def submit(self, prompt_ids: Sequence[int], stream: TokenStream) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the decoder is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hf-fast-decode", daemon=True)
                self._thread.start()
        self._queue.put((prompt_ids, stream))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout=30)
        error = RuntimeError("the SUT was closed before this sample finished")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                item[1].fail(error)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            prompt_ids, stream = item
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
