"""The harness's verdict end to end, through the real LoadGen: a run whose samples failed is never a
result, a Server run that falls behind is never VALID, and neither crashes nor hangs LoadGen."""

import json
import time
from pathlib import Path

import pytest

from harness.errors import ResultError
from harness.results import summary
from harness.run import check_result
from tests.integration.test_scenarios import QUICK, TIMING


@pytest.mark.parametrize("scenario", ["server", "single_stream"])
def test_a_failed_streamed_sample_in_an_accuracy_test_does_not_crash_loadgen(run, scenario):
    # Before: LoadGen 6.0.17 segfaulted (exit -11) on QuerySamplesComplete without FirstTokenComplete.
    result = run("sut=failing", "sut.fail_every=0", "sut.fail_indices=[3]", f"scenario={scenario}", "mode=accuracy",
                 *TIMING, *QUICK[scenario], timeout_s=90)
    assert result.errors == 1 and result.verdict == "FAILED" and result.valid is False
    assert result.invalid_reasons[0].startswith("1 of 32 samples failed (first: accuracy: RuntimeError")
    assert json.loads((Path(result.output_dir) / "results.json").read_text())["verdict"] == "FAILED"


def test_single_stream_where_every_sample_fails_ends_with_a_failed_run(run):
    result = run("sut=failing", "sut.fail_every=1", "scenario=single_stream", "mode=performance", *TIMING,
                 *QUICK["single_stream"], timeout_s=90)
    assert result.errors == result.extra["samples_issued"]["performance"] > 0 and result.verdict == "FAILED"


def test_a_run_where_every_sample_failed_is_not_a_result(run):
    # Before: "result VALID", ~75,000 samples/s computed from the failed completions, MLflow valid=1.
    result = run("sut=failing", "sut.fail_every=1", "scenario=offline", "mode=performance", *TIMING)
    assert result.loadgen_valid is True and result.verdict == "FAILED" and result.valid is False
    assert result.samples_per_second is None and result.tokens_per_second is None and result.latency_ms is None
    assert result.extra["failed_run_figures"]["samples_per_second"] > 0  # LoadGen's, kept for the record
    text = summary(result)
    assert "result      FAILED: not a result, samples failed  (LoadGen: VALID)" in text
    assert "throughput" not in text and "VALID\n" not in text


def test_a_server_run_that_falls_behind_is_not_valid(run):
    # sut=queue serves 8 / 25 ms = 320 requests/s; 450 QPS arrivals for 2 s build a queue whose wait
    # (~0.8 s) stays under the 2000 ms TTFT limit, so LoadGen says VALID.
    result = run("sut=queue", "scenario=server", "scenario.target_qps=450", "scenario.min_duration_s=2",
                 "mode=performance", timeout_s=90)
    assert result.loadgen_valid is True, result.invalid_reasons
    assert result.verdict == "BEHIND" and result.valid is False
    assert result.pace["ratio"] < 0.95 and result.pace["completed_qps"] < result.pace["scheduled_qps"]
    assert result.invalid_reasons[0].startswith("falling behind: completions ")
    text = summary(result)
    assert "result      BEHIND: not a result at this rate, the queue grew  (LoadGen: VALID)" in text
    assert "pace        completed " in text
    check_result(result, fail_on_invalid=False)
    with pytest.raises(ResultError, match="result BEHIND"):
        check_result(result, fail_on_invalid=True)


def test_a_server_run_that_keeps_pace_is_valid(run):
    result = run("sut=queue", "scenario=server", "scenario.target_qps=100", "scenario.min_duration_s=1",
                 "mode=performance", timeout_s=90)
    assert result.verdict == "VALID" and result.valid and result.pace["ratio"] >= 0.95


def test_a_hung_sut_ends_the_run_within_one_timeout(run):
    # Before: every sample waited out run.sample_timeout_s in turn, run.max_errors (10) x 3 s here.
    started = time.monotonic()
    result = run("sut=failing", "sut.failure=hang", "sut.fail_every=1", "scenario=single_stream",
                 "mode=performance", "run.sample_timeout_s=3", *TIMING, *QUICK["single_stream"], timeout_s=90)
    assert time.monotonic() - started < 20
    assert result.verdict == "FAILED" and any("gave up on the SUT: sample" in m and "timed out" in m
                                              for m in result.error_messages)


def test_a_hung_server_run_is_ended_before_its_schedule(run):
    # 3,000 queries at 50 QPS is a 60 s schedule; the first timeout (2 s) gives up on the SUT, fails what
    # is in flight, and the test ends early, keeping LoadGen's logs as far as written.
    started = time.monotonic()
    result = run("sut=failing", "sut.failure=hang", "sut.fail_every=1", "scenario=server", "mode=performance",
                 "scenario.target_qps=50", "scenario.min_query_count=3000", "run.sample_timeout_s=2", *TIMING,
                 timeout_s=120)
    assert time.monotonic() - started < 30
    assert result.verdict == "FAILED" and result.errors == result.extra["samples_issued"]["performance"]
    assert (Path(result.output_dir) / "performance" / "mlperf_log_detail.txt").is_file()
