"""In-flight (continuous) batching for streaming requests: one greedy decode loop on the torch thread.

Requests wait in a queue. At every step boundary the loop admits waiting requests (up to
``max_batch_size`` running), prefills them together with left padding, reports each one's first
token, and merges their KV cache into the running batch; then one decode step advances every
running request by one token. Requests that produced EOS or ``max_new_tokens`` tokens finish and
leave the batch at once, so concurrent requests share decode steps instead of queueing.

The running batch keeps, per row, a left-padded KV cache and an attention mask over it; position
ids are counted per row (real tokens only), so padding never shifts a request's positions. The
merge works on plain ``DynamicLayer`` caches (Llama, Mistral, Qwen and most decoder-only models);
for other cache layouts (sliding windows, linear attention) requests are batched only when the
running batch is empty, which is still correct.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

from harness.sut.base import TokenStream
from harness.sut.hf.kv_cache import cache_keyword, output_cache
from harness.sut.hf.torch_thread import torch_thread

log = logging.getLogger(__name__)


@dataclass
class _Row:
    """One request in the running batch."""

    stream: TokenStream
    prompt: Sequence[int]
    generated: int = 0
    done: bool = False


@dataclass
class _Batch:
    """The running batch: B rows over T cache positions."""

    rows: list[_Row]
    cache: DynamicCache
    mask: torch.Tensor  # [B, T] long, 1 where the cache holds a real token
    last: torch.Tensor  # [B, 1] the token each row feeds into the next step (not cached yet)
    pos: torch.Tensor  # [B] position id of ``last``: the row's real tokens before it


@dataclass
class DecoderStats:
    """What the loop did, for tests and benchmarks."""

    steps: int = 0  # decode steps (one token for every running request)
    prefills: int = 0  # prefill calls (each admits one or more requests)
    max_running: int = 0  # the widest batch a decode step advanced
    joined_running: int = 0  # requests admitted while others were already running
    running_widths: list[int] = field(default_factory=list)  # batch width of each step (first 10,000)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """input ids, attention mask and per-row position ids for left-padded prompts."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
    positions = (mask.cumsum(-1) - 1).clamp_(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _pad_cache_left(t: torch.Tensor, n: int) -> torch.Tensor:
    return F.pad(t, (0, 0, n, 0)) if n else t  # [B, H, T, D]: pads T on the left


class InflightDecoder:
    """Greedy streaming decode with requests joining and leaving at step boundaries."""

    def __init__(self, model: torch.nn.Module, *, eos_ids: frozenset[int], max_new_tokens: int,
                 max_batch_size: int, pad_id: int) -> None:
        self.model = model
        self.eos_ids = eos_ids
        self.max_new_tokens = max_new_tokens
        self.max_batch_size = max(1, max_batch_size)
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.stats = DecoderStats()
        # Computing the vocabulary's logits for the last position only saves memory on long prompts.
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        self._cache_keyword = cache_keyword(model)
        self._waiting: deque[tuple[Sequence[int], TokenStream]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._running = False  # the decode loop is queued or running on the torch thread
        self._loop_done: threading.Event | None = None
        self._batch: _Batch | None = None
        self._mergeable: bool | None = None  # known after the first prefill

    # -- called from other threads ---------------------------------------------------------
    def submit(self, prompt_ids: Sequence[int], stream: TokenStream) -> None:
        """Queue one request; it joins the running batch at the next step boundary."""
        if not prompt_ids:
            raise ValueError("empty prompt")
        with self._cv:
            if self._closed:
                raise RuntimeError("the decoder is closed")
            self._waiting.append((prompt_ids, stream))
            if not self._running:
                self._running = True
                self._loop_done = torch_thread().start(self._loop)
            self._cv.notify()

    @property
    def running(self) -> int:
        batch = self._batch
        return len(batch.rows) if batch else 0

    def close(self) -> None:
        """Stop the loop after its current step; unfinished requests fail."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            done = self._loop_done
        stopped = done is None or done.wait(timeout=30)
        error = RuntimeError("the SUT was closed before this sample finished")
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for _, stream in waiting:
            stream.fail(error)
        if self._batch is not None and stopped:
            self._fail_running(error)

    # -- the decode loop (on the torch thread) ---------------------------------------------
    def _loop(self) -> None:
        """Decode until nothing is running or waiting (or the decoder closes), then give the
        torch thread back; the next submit starts the loop again."""
        with torch.inference_mode():
            while True:
                with self._cv:
                    if self._closed or (not self._waiting and self._batch is None):
                        self._running = False
                        return
                    admitted = self._take_waiting()
                try:
                    if admitted:
                        self._prefill(admitted)
                    if self._batch is not None:
                        self._step()
                except Exception as exc:  # e.g. out of memory: fail what is in flight, keep serving
                    log.exception("decode loop failed; failing %d running and %d new requests",
                                  self.running, len(admitted))
                    for row in admitted:
                        if not row.done:
                            row.done = True
                            row.stream.fail(exc)
                    self._fail_running(exc)

    def _take_waiting(self) -> list[_Row]:
        running = self.running
        if running and self._mergeable is False:
            return []  # this cache layout cannot merge: wait for the batch to drain
        n = min(len(self._waiting), self.max_batch_size - running)
        if running:
            self.stats.joined_running += n
        return [_Row(stream, prompt) for prompt, stream in (self._waiting.popleft() for _ in range(n))]

    def _prefill(self, rows: list[_Row]) -> None:
        ids, mask, positions = left_pad([row.prompt for row in rows], self.pad_id, self.device)
        # Without padding the mask says nothing: leaving it out lets attention take its causal fast
        # path (about 15% of a single prompt's prefill on CPU), as generate() does.
        unpadded = len({len(row.prompt) for row in rows}) == 1
        out = self.model(input_ids=ids, attention_mask=None if unpadded else mask, position_ids=positions,
                         use_cache=True, **self._keep)
        self.stats.prefills += 1
        cache = output_cache(out)
        if self._mergeable is None:
            self._mergeable = isinstance(cache, DynamicCache) and all(type(la) is DynamicLayer for la in cache.layers)
            if not self._mergeable:
                log.warning("%s's KV cache cannot be merged; requests join only an empty batch",
                            type(self.model).__name__)
        first = out.logits[:, -1, :].argmax(-1)
        new = _Batch(rows, cache, mask, first[:, None], mask.sum(-1))
        self._advance(new, first.tolist())  # the first token: FirstTokenComplete fires now
        new = self._drop_finished(new)
        if new is not None:
            self._batch = new if self._batch is None else self._merge(self._batch, new)

    def _step(self) -> None:
        b = self._batch
        assert b is not None
        mask = F.pad(b.mask, (0, 1), value=1)  # the fed token's own column
        out = self.model(input_ids=b.last, attention_mask=mask, position_ids=b.pos[:, None],
                         use_cache=True, **{self._cache_keyword: b.cache}, **self._keep)
        nxt = out.logits[:, -1, :].argmax(-1)
        b.cache, b.mask, b.last, b.pos = output_cache(out), mask, nxt[:, None], b.pos + 1
        self.stats.steps += 1
        self.stats.max_running = max(self.stats.max_running, len(b.rows))
        if len(self.stats.running_widths) < 10_000:
            self.stats.running_widths.append(len(b.rows))
        self._advance(b, nxt.tolist())
        self._batch = self._drop_finished(b)

    def _advance(self, batch: _Batch, tokens: list[int]) -> None:
        """Report one new token per row; rows at EOS (reported once) or the token limit finish."""
        for row, tok in zip(batch.rows, tokens, strict=True):
            row.stream.emit((tok,))
            row.generated += 1
            if tok in self.eos_ids or row.generated >= self.max_new_tokens:
                row.done = True
                row.stream.finish()

    def _drop_finished(self, b: _Batch) -> _Batch | None:
        keep = [i for i, row in enumerate(b.rows) if not row.done]
        if not keep:
            return None
        if len(keep) == len(b.rows):
            return b
        idx = torch.tensor(keep, device=self.device)
        b.cache.batch_select_indices(idx)
        b = _Batch([b.rows[i] for i in keep], b.cache, b.mask[idx], b.last[idx], b.pos[idx])
        if self._mergeable:
            # Columns that are padding in every remaining row cost attention time: cut them.
            start = int(b.mask.any(0).int().argmax())
            if start:
                for layer in b.cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
                b.mask = b.mask[:, start:]
        return b

    def _merge(self, a: _Batch, b: _Batch) -> _Batch:
        """One batch of a's and b's rows, both left-padded to the longer cache."""
        width = max(a.mask.shape[1], b.mask.shape[1])
        pa, pb = width - a.mask.shape[1], width - b.mask.shape[1]
        for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
            la.keys = torch.cat([_pad_cache_left(la.keys, pa), _pad_cache_left(lb.keys, pb)])
            la.values = torch.cat([_pad_cache_left(la.values, pa), _pad_cache_left(lb.values, pb)])
        mask = torch.cat([F.pad(a.mask, (pa, 0)), F.pad(b.mask, (pb, 0))])
        return _Batch(a.rows + b.rows, a.cache, mask, torch.cat([a.last, b.last]), torch.cat([a.pos, b.pos]))

    def _fail_running(self, error: BaseException) -> None:
        batch, self._batch = self._batch, None
        for row in batch.rows if batch else ():
            if not row.done:
                row.done = True
                row.stream.fail(error)
