"""The harness's verdict (harness.verdict): FAILED, INVALID, BEHIND and VALID, each with its reasons."""

import pytest

from harness.config import LatencyLimits
from harness.loadgen.logs import DetailLog, Percentiles
from harness.verdict import falling_behind, judge, pace_ratio

LIMITS = LatencyLimits(ttft_ms=60, tpot_ms=100)


def verdict(values: dict, ttft99: float = 10.0, tpot99: float = 1.0, *, errors: int = 0, sps: float = 100.0,
            latency_p50: float = 10.0, loadgen_errors: int = 0, server: bool = True, ratio: float | None = 0.95):
    return judge(detail=DetailLog(values, (), ()), ttft=Percentiles(5, 8, ttft99), tpot=Percentiles(1, 1, tpot99),
                 latency=Percentiles(latency_p50, 20, 30), samples_per_second=sps, streaming_server=server,
                 limits=LIMITS, errors=errors, issued=512, loadgen_errors=loadgen_errors,
                 loadgen_error_messages=("error_runtime: bad n_tokens",) if loadgen_errors else (),
                 first_error="RuntimeError: boom" if errors else None, min_completed_ratio=ratio)


VALID = {"result_validity": "VALID"}
INVALID = {"result_validity": "INVALID", "result_perf_constraints_met": False}


def test_failed_samples_make_a_run_failed_even_when_loadgen_says_valid():
    v = verdict(VALID, errors=32)
    assert v.status == "FAILED" and not v.valid and v.loadgen_valid is True
    assert v.lines() == ["32 of 512 samples failed (first: RuntimeError: boom)"]


def test_a_run_without_a_performance_test_is_judged_only_on_failures():
    assert judge(detail=None, ttft=None, tpot=None, latency=None, samples_per_second=None, streaming_server=False,
                 limits=None, errors=0, issued=32, loadgen_errors=0) is None
    failed = judge(detail=None, ttft=None, tpot=None, latency=None, samples_per_second=None, streaming_server=False,
                   limits=None, errors=1, issued=32, loadgen_errors=0)
    assert failed.status == "FAILED" and failed.loadgen_valid is None


def test_each_failed_constraint_is_one_reason_with_its_figure_and_limit():
    [over] = verdict(INVALID, 75.3).reasons
    assert (over.metric, over.text, over.value, over.limit) == ("ttft_p99_ms", "TTFT p99 75.3 ms > limit 60 ms",
                                                              75.3, 60)
    assert [r.metric for r in verdict(INVALID, 75.3, 120.0).reasons] == ["ttft_p99_ms", "tpot_p99_ms"]
    # LoadGen's raw words: "TTFT constrain not met ... * Run unsuccessful. ... * Run successful." become one line.
    early = verdict({"result_validity": "INVALID", "early_stopping_met": False, "result_query_count": 512,
                     "early_stopping_tpot_result": " * Run successful.",
                     "early_stopping_ttft_result": " * Run unsuccessful. * Processed 512 queries. * Would need to "
                                                   "run at least 645 more queries, with ..."}, 57.4)
    [reason] = early.reasons
    assert reason.metric == "early_stopping_ttft" and reason.value == 645
    assert reason.text == ("early stopping TTFT: p99 57.4 ms <= limit 60 ms; 512 queries run, at least 645 more "
                           "needed to prove the p99")
    short = verdict({"result_validity": "INVALID", "result_min_queries_met": False, "result_query_count": 400,
                     "effective_min_query_count": 500, "result_min_duration_met": False,
                     "effective_min_duration_ms": 5000}, server=False)
    assert short.lines() == ["min duration not met (limit 5 s)", "400 queries < min 500"]


def test_an_unfinished_test_and_loadgen_errors_are_invalid():
    assert verdict({}).lines() == ["no result in LoadGen's detail log (the test did not finish)"]
    v = verdict(VALID, loadgen_errors=2)
    assert v.status == "INVALID" and v.lines() == ["LoadGen logged 2 errors: error_runtime: bad n_tokens"]


def test_a_valid_server_run_whose_completions_fall_behind_is_behind():
    # Figures of a real sut=queue run (capacity 320/s) at 400 QPS under a 2000 ms TTFT limit, 5 s: LoadGen VALID.
    values = {**VALID, "result_scheduled_samples_per_sec": 413.73, "result_query_count": 2080}
    v = verdict(values, sps=318.84, latency_p50=763.0)
    assert v.status == "BEHIND" and v.loadgen_valid and not v.valid
    assert v.reasons[0].value == pytest.approx(0.873, abs=0.001)  # 5.03 s / (6.52 s - 0.763 s)
    assert v.pace.completed_qps == 318.84 and v.pace.scheduled_qps == 413.73
    assert verdict(values, sps=318.84, latency_p50=763.0, ratio=None).status == "VALID"  # LoadGen alone
    # Offline and SingleStream have no arrival schedule to fall behind.
    assert verdict(values, sps=318.84, latency_p50=763.0, server=False).status == "VALID"


def test_keeping_pace_is_valid_despite_the_drain():
    # The raw completed/scheduled ratio (0.962) is low only by the last requests' drain.
    kept = verdict({**VALID, "result_scheduled_samples_per_sec": 322.5, "result_query_count": 1632}, sps=310.72,
                   latency_p50=117.0)
    assert kept.status == "VALID" and kept.pace.ratio == pytest.approx(0.985, abs=0.001)
    # An LLM server at 25 QPS with 5 s requests: 500 queries in 20 s, the drain alone is 20%.
    assert falling_behind(500, 20.0, 25.0, 5000.0, 0.95) is None
    assert pace_ratio(500, 20.0, 25.0, None) is None
