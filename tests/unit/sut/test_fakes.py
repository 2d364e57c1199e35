import threading
import time

import pytest

from harness.sut import Sample
from harness.sut.fakes import (
    EchoParams,
    EchoSUT,
    FailingParams,
    FailingSUT,
    NullParams,
    NullSUT,
    OracleParams,
    OracleSUT,
)
from harness.sut.tokenizer import WordTokenizer

SAMPLES = [Sample(0, "P: one two three", "one two three", "ref one"),
           Sample(1, "P: four five", "four five", "ref two")]
TOK = WordTokenizer([s.prompt for s in SAMPLES] + [s.reference for s in SAMPLES])


class Recorder:
    """A TokenStream that records when each chunk arrived."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.chunks: list[tuple[float, list[int]]] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def emit(self, ids):
        self.chunks.append((time.monotonic() - self.start, list(ids)))

    def finish(self):
        self.done.set()

    def fail(self, error):
        self.error = error
        self.done.set()

    @property
    def tokens(self) -> list[int]:
        return [t for _, ids in self.chunks for t in ids]


def test_echo_outputs_the_inputs_tokens_cycled_to_length():
    sut = EchoSUT(EchoParams(ttft_ms=0, tpot_ms=0, output_tokens=7), TOK)
    out = sut.generate(SAMPLES)
    assert [c.index for c in out] == [0, 1]
    src = TOK.encode("one two three")
    assert list(out[0].token_ids) == (src * 3)[:7]
    assert out == sut.generate(SAMPLES)  # deterministic


def test_echo_streams_first_token_at_ttft_and_ends_after_tpot_per_token():
    sut = EchoSUT(EchoParams(ttft_ms=40, tpot_ms=5, output_tokens=9), TOK)
    rec = Recorder()
    sut.submit(SAMPLES[0], rec)
    assert rec.done.wait(2)
    sut.close()
    (t_first, first), (t_last, rest) = rec.chunks
    assert len(first) == 1 and len(first + rest) == 9
    assert 0.040 <= t_first < 0.060
    assert 0.080 <= t_last < 0.100  # 40 ms + 8 x 5 ms


def test_echo_batch_takes_the_longest_samples_time():
    sut = EchoSUT(EchoParams(ttft_ms=30, tpot_ms=2, output_tokens=11), TOK)
    t = time.monotonic()
    sut.generate(SAMPLES)
    assert 0.050 <= time.monotonic() - t < 0.150


def test_oracle_returns_the_reference():
    sut = OracleSUT(OracleParams(), TOK)
    assert [TOK.decode(c.token_ids) for c in sut.generate(SAMPLES)] == ["ref one", "ref two"]


def test_failing_raises_on_chosen_samples_only():
    sut = FailingSUT(FailingParams(ttft_ms=0, tpot_ms=0, fail_indices=(1,)), TOK)
    assert len(sut.generate(SAMPLES[:1])) == 1
    with pytest.raises(RuntimeError, match="failing SUT"):
        sut.generate(SAMPLES)
    with pytest.raises(RuntimeError):
        sut.submit(SAMPLES[1], Recorder())
    sut.close()


def test_null_answers_inline():
    sut = NullSUT(NullParams(output_tokens=3), TOK)
    rec = Recorder()
    sut.submit(SAMPLES[0], rec)
    assert rec.done.is_set() and len(rec.tokens) == 3
