"""The test process's side of the progress display: LoadGen's expected count, running latency bounds."""

import json
import math
from types import SimpleNamespace

import pytest

from harness.loadgen.live import SEND_EVERY_S, LatencyWatch, LiveReport, Median, read_schedule

TIMEOUT = 60.0


def handle(handed_over: float) -> SimpleNamespace:
    """What a look reads of a bridge handle (``_Pending``): deadline, first_sent, tokens."""
    return SimpleNamespace(deadline=handed_over + TIMEOUT, first_sent=False, tokens=[])


def test_a_weighted_median_within_its_bins():
    m = Median()
    for v in (0.010, 0.020, 0.030):
        m.add(v)
    m.add(0.5, weight=0.5)
    assert m.value() == pytest.approx(0.020, rel=0.02)
    m.add(0.0, weight=10)
    assert m.value() == 0.0
    assert Median().value() is None


def test_latency_bounds_hold_the_true_values():
    """Each sample's TTFT/TPOT is only seen at the looks; the bounds of the medians hold the true ones."""
    watch = LatencyWatch(TIMEOUT)
    a, b = handle(10.00), handle(10.05)  # handed over at 10.00 and 10.05
    watch.look(10.1, [a, b], completed=0)
    a.first_sent, a.tokens = True, [1]  # a: first token at 10.15
    watch.look(10.2, [a, b], completed=0)
    b.first_sent, b.tokens = True, [1]  # b: first token at 10.25
    a.tokens = [1] * 11  # a: 10 more tokens by 10.35, then done
    watch.look(10.3, [a, b], completed=0)
    b.tokens = [1] * 5
    watch.look(10.4, [b], completed=1)  # a left between 10.3 and 10.4
    watch.look(10.5, [], completed=3)  # b left, and one sample came and went unseen
    ttft, tpot = watch.ttft.value(), watch.tpot.value()
    # True TTFTs: a 0.15, b 0.20; the unseen one in [0, 0.1]. Bounds per sample: a [0.1, 0.2], b [0.15, 0.25].
    assert ttft[0] <= 0.15 <= ttft[1] and ttft[1] == pytest.approx(0.2, rel=0.02)
    # a: 10 gaps between 10.15 and ~10.35 (~0.02 s each), known within [(10.3-10.2)/10, (10.4-10.1)/10].
    assert tpot[0] <= 0.02 <= tpot[1] <= 0.1


def test_samples_too_fast_for_the_looks_give_an_upper_bound_only():
    watch = LatencyWatch(TIMEOUT)
    watch.look(1.0, [], completed=0)
    watch.look(1.1, [], completed=50)
    lo, hi = watch.ttft.value()
    assert lo == 0.0 and hi == pytest.approx(0.1, rel=0.02)


def test_the_expected_count_is_loadgens_own(tmp_path):
    log = tmp_path / "mlperf_log_detail.txt"
    assert read_schedule(log) is None

    def event(key, value):
        return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1, "namespace": "mlperf::logging",
                                         "event_type": "POINT_IN_TIME", "metadata": {}}) + "\n"

    log.write_text(event("effective_min_duration_ms", 5000) + event("effective_target_qps", 4))
    assert read_schedule(log) is None  # not yet generated
    with log.open("a") as fh:
        fh.write(event("effective_samples_per_query", 1) + event("generated_query_count", 512))
    schedule = read_schedule(log)
    assert (schedule.queries, schedule.samples, schedule.min_duration_s, schedule.target_qps) == (512, 512, 5.0, 4.0)


def test_snapshots_about_once_a_second_with_the_bridge_counts(tmp_path):
    sent = []
    clock = SimpleNamespace(now=0.0)
    report = LiveReport(sent.append, test="performance", scenario="Server", mode="performance", streaming=True,
                        timeout_s=TIMEOUT, detail_log=tmp_path / "none.txt", clock=lambda: clock.now)
    stats = SimpleNamespace(issued=0, completed=0, errors=0, output_tokens=0)
    for step in range(25):  # 2.5 s of watchdog periods
        clock.now = step * 0.1
        stats.issued, stats.completed = step * 4, step * 3
        report.tick(clock.now, stats, [])
    assert len(sent) == math.ceil(2.5 / SEND_EVERY_S)
    assert [(s.issued, s.completed) for s in sent] == [(0, 0), (40, 30), (80, 60)]
    assert sent[-1].elapsed_s == pytest.approx(2.0) and sent[-1].expected is None
    report.finish(2.5, stats)
    assert sent[-1].completed == 72 and sent[-1].ttft_s is not None
