"""sut=hf on CUDA: bfloat16 by default, same greedy tokens on every path, the opt-in fast path.

Skipped (cleanly, at collection) where CUDA is not available.
"""

from __future__ import annotations

import pytest
import torch

from harness.sut import SUTContext
from harness.sut.base import CollectingStream, Sample
from harness.sut.hf.adapter import HFSUT, HFParams
from harness.sut.hf.tiny_model import TinyRecipe, build_tiny_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

PROMPTS = ["The council met on Tuesday.", "Prices rose.",
           "A storm closed the harbour for two days, and the ferries stayed in port."]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(TinyRecipe(vocab_size=1024, hidden_size=64, seed=3), tmp_path_factory.mktemp("tiny"))


def make(path, **params) -> HFSUT:
    return HFSUT.create(HFParams(model_path=str(path), **params), SUTContext(corpus=[], max_new_tokens=10))


def samples() -> list[Sample]:
    return [Sample(i, p, p) for i, p in enumerate(PROMPTS)]


def stream(sut: HFSUT, batch: list[Sample]) -> list[tuple[int, ...]]:
    sinks = [CollectingStream() for _ in batch]
    for s, sink in zip(batch, sinks, strict=True):
        sut.submit(s, sink)
    for sink in sinks:
        assert sink.done.wait(120) and sink.error is None, sink.error
    return [tuple(sink.tokens) for sink in sinks]


def test_auto_device_and_dtype_are_cuda_and_bfloat16(model_dir):
    sut = make(model_dir)
    try:
        param = next(sut.model.parameters())
        assert param.device.type == "cuda" and param.dtype == torch.bfloat16
        assert all(1 <= len(c.token_ids) <= 10 for c in sut.generate(samples()))
    finally:
        sut.close()


def test_offline_and_streaming_agree_on_cuda(model_dir):
    sut = make(model_dir, dtype="float32")  # float32: no bf16 rounding ties between batch shapes
    try:
        batch = samples()
        sut.load(batch)
        alone = [sut.generate([s])[0].token_ids for s in batch]
        assert [c.token_ids for c in sut.generate(batch)] == alone
        assert stream(sut, batch) == alone
    finally:
        sut.close()


def test_fast_decode_streams_the_same_tokens(model_dir):
    reference = make(model_dir, dtype="float32")
    try:
        expected = [reference.generate([s])[0].token_ids for s in samples()]
    finally:
        reference.close()
    fast = make(model_dir, dtype="float32", cuda_fast_decode=True)
    try:
        fast.load(samples())  # compiles for the longest prompt, outside the timed path
        assert stream(fast, samples()) == expected
    finally:
        fast.close()
