import threading
import time

import pytest

from harness.errors import ConfigError
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
    QueueParams,
    QueueSUT,
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


def test_queue_capacity_is_slots_over_service_time():
    params = QueueParams(slots=8, ttft_ms=10, tpot_ms=1, output_tokens=16)
    assert params.service_s == pytest.approx(0.025)  # 10 ms + 15 x 1 ms
    assert params.capacity_qps == pytest.approx(320)
    with pytest.raises(ConfigError, match="sut.slots"):
        QueueSUT(QueueParams(slots=0), TOK)


def test_queue_serves_in_arrival_order_and_waiting_adds_to_ttft():
    # One slot, 40 ms per request (20 ms + 4 x 5 ms): the second request's first token comes only
    # after the first request ends plus its own TTFT, the third after two full services.
    sut = QueueSUT(QueueParams(slots=1, ttft_ms=20, tpot_ms=5, output_tokens=5), TOK)
    recs = [Recorder() for _ in range(3)]
    for rec in recs:
        sut.submit(SAMPLES[0], rec)
    assert all(rec.done.wait(2) for rec in recs)
    sut.close()
    first_tokens = [rec.chunks[0][0] for rec in recs]
    assert 0.018 <= first_tokens[0] < 0.035
    assert 0.058 <= first_tokens[1] < 0.080  # 40 ms waiting + 20 ms
    assert 0.098 <= first_tokens[2] < 0.125
    assert all(len(rec.tokens) == 5 for rec in recs)


def test_queue_slots_serve_in_parallel_and_batches_go_through_them():
    sut = QueueSUT(QueueParams(slots=2, ttft_ms=30, tpot_ms=0, output_tokens=3), TOK)
    t = time.monotonic()
    out = sut.generate(SAMPLES * 2)  # 4 requests, 2 slots: two rounds of 30 ms
    took = time.monotonic() - t
    sut.close()
    assert [c.index for c in out] == [0, 1, 0, 1] and all(len(c.token_ids) == 3 for c in out)
    assert 0.055 <= took < 0.150
