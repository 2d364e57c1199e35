import pytest

from harness.config import compose
from harness.errors import ConfigError
from harness.loadgen.settings import latency_limits, model_key, render_user_conf


def _lines(text: str) -> dict[str, str]:
    return dict(line.split(" = ") for line in text.splitlines() if not line.startswith("#"))


def test_quick_server_conf_overrides_durations_counts_and_limits():
    conf = _lines(render_user_conf(compose(["scenario=server", "scenario.target_qps=20"]), 32))
    assert conf == {
        "llama3_1-8b.Server.target_qps": "20",
        "llama3_1-8b.Server.min_duration": "5000",
        "llama3_1-8b.Server.min_query_count": "500",
        "llama3_1-8b.Server.performance_sample_count_override": "32",
        "llama3_1-8b.Server.ttft_latency": "2000",
        "llama3_1-8b.Server.tpot_latency": "100",
    }


def test_quick_offline_is_one_pass_over_the_dataset():
    conf = _lines(render_user_conf(compose([]), 32))
    assert conf["llama3_1-8b.Offline.min_query_count"] == "32"
    assert conf["llama3_1-8b.Offline.min_duration"] == "0"


def test_official_conf_leaves_mlperf_conf_values_alone():
    conf = _lines(render_user_conf(compose(["scenario=server", "benchmark.official=true"]), 13368))
    assert conf == {"llama3_1-8b.Server.target_qps": "50"}
    conf = _lines(render_user_conf(compose(["scenario=single_stream", "benchmark.official=true"]), 13368))
    assert conf == {"llama3_1-8b.SingleStream.target_latency": "10"}


def test_interactive_uses_the_interactive_model_key_and_limits():
    config = compose(["scenario=interactive"])
    assert model_key(config) == "llama3_1-8b-interactive"
    conf = _lines(render_user_conf(config, 32))
    assert conf["llama3_1-8b-interactive.Server.ttft_latency"] == "500"
    assert conf["llama3_1-8b-interactive.Server.tpot_latency"] == "30"


def test_scenario_overrides_the_benchmark_limits():
    limits = latency_limits(compose(["scenario=server", "scenario.tpot_ms=7"]))
    assert (limits.ttft_ms, limits.tpot_ms) == (2000, 7)
    assert latency_limits(compose(["scenario=offline"])) is None


def test_gptj_server_keeps_its_end_to_end_latency_constraint():
    # GPT-J has no token latencies: its Server constraint is mlperf.conf's 20 s end-to-end p99
    # latency, which quick mode must neither replace with TTFT/TPOT nor refuse.
    config = compose(["benchmark=gptj", "scenario=server"])
    assert latency_limits(config) is None
    conf = _lines(render_user_conf(config, 8))
    assert not any(k.endswith(("ttft_latency", "tpot_latency", "target_latency")) for k in conf)
    assert conf["gptj.Server.min_duration"] == "5000"
    with pytest.raises(ConfigError, match="benchmark 'gptj' has no Interactive scenario"):
        latency_limits(compose(["benchmark=gptj", "scenario=interactive"]))
