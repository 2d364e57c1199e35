"""The detail-log parser, on logs the real LoadGen wrote in this test session."""

import pytest

from harness.config import compose
from harness.loadgen.logs import invalid_reasons, parse_detail_log, performance_result
from harness.run import run_benchmark

FAST_SERVER = ["scenario=server", "mode=performance", "sut=echo", "sut.ttft_ms=2", "sut.tpot_ms=0.2",
               "sut.output_tokens=8", "scenario.target_qps=400", "scenario.min_duration_s=1"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    out = {}
    for name, overrides in {"server": FAST_SERVER,
                            "offline": ["mode=performance", "sut=echo"],
                            "short_server": FAST_SERVER + ["scenario.min_query_count=50"]}.items():
        d = tmp_path_factory.mktemp(name)
        run_benchmark(compose(overrides), d)
        out[name] = parse_detail_log(d / "performance" / "mlperf_log_detail.txt")
    return out


def test_server_log_gives_validity_throughput_and_token_latencies(logs):
    perf = performance_result(logs["server"])
    assert perf.scenario == "Server" and perf.valid and perf.invalid_reasons == ()
    assert perf.samples_per_second == logs["server"].get("result_completed_samples_per_sec") > 0
    assert perf.tokens_per_second == pytest.approx(8 * perf.samples_per_second, rel=0.05)
    assert 2 <= perf.ttft_ms.p50 <= perf.ttft_ms.p90 <= perf.ttft_ms.p99
    assert perf.tpot_ms.p50 == pytest.approx(0.2, abs=0.1)
    assert perf.latency_ms.p50 >= perf.ttft_ms.p50
    assert perf.loadgen_version.startswith("6.") and perf.loadgen_errors == 0
    assert perf.query_count >= 500


def test_offline_log_has_no_token_latencies(logs):
    perf = performance_result(logs["offline"])
    assert perf.scenario == "Offline" and perf.valid
    assert perf.ttft_ms is None and perf.tpot_ms is None
    assert perf.tokens_per_second == logs["offline"].get("result_tokens_per_second")


def test_too_few_queries_is_invalid_with_the_reason(logs):
    perf = performance_result(logs["short_server"])
    assert not perf.valid
    assert "early stopping not met" in perf.invalid_reasons
    assert any("more queries" in r for r in invalid_reasons(logs["short_server"]))


def test_truncated_log_is_parsed_as_far_as_it_goes(tmp_path, logs):
    full = (tmp_path / "x").with_name("full.txt")
    lines = [f':::MLLOG {{"key": "{k}", "value": {v!r}}}'.replace("'", '"')
             for k, v in (("effective_scenario", "Server"), ("loadgen_version", "6.0.17 @ abc"))]
    full.write_text("\n".join(lines) + '\n:::MLLOG {"key": "result_valid')
    parsed = parse_detail_log(full)
    assert parsed.get("effective_scenario") == "Server"
    perf = performance_result(parsed)
    assert not perf.valid and perf.loadgen_version == "6.0.17"
    assert "no result in the detail log (run did not finish)" in perf.invalid_reasons
