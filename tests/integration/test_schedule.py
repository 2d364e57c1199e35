"""The schedule bound (harness/loadgen/schedule.py) against what the real LoadGen generates."""

import resource
import subprocess
import sys

import pytest

from harness.errors import ConfigError
from harness.loadgen import schedule
from harness.loadgen import settings as lg_settings
from harness.loadgen.logs import parse_detail_log

QUICK = ["sut=null", "mode=performance", "sut.output_tokens=2"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["scenario=server", "scenario.target_qps=2000", "scenario.min_duration_s=0.5", "scenario.min_query_count=100"],
        ["scenario=server", "scenario.target_qps=50", "scenario.min_duration_s=0.1", "scenario.min_query_count=200"],
        ["scenario=offline", "scenario.target_qps=5000", "scenario.min_duration_s=1"],
        ["scenario=single_stream", "scenario.expected_latency_ms=1", "scenario.min_duration_s=0.3",
         "scenario.min_query_count=10"],
    ],
)
def test_estimate_matches_what_loadgen_generates(run, tmp_path, overrides):
    result = run(*QUICK, *overrides, "sut.max_batch_size=100000")
    config_dir = tmp_path / "run"
    detail = parse_detail_log(config_dir / "performance" / "mlperf_log_detail.txt")
    from harness.config import compose

    config = compose([*QUICK, *overrides])
    s = schedule.effective(config_dir / "user.conf", lg_settings.model_key(config), config.scenario.loadgen_scenario)
    est = schedule.estimate(config.scenario.loadgen_scenario, s, result.dataset["samples"])
    generated = detail.get("generated_query_count") * detail.get("generated_samples_per_query")
    # Server arrivals are Poisson: the count is random around qps x duration, then rounded up to
    # whole passes over the 32 samples (equal issue).
    slack = 32 + 4 * (s.server_target_qps * s.min_duration_ms / 1000) ** 0.5 if overrides[0] == "scenario=server" else 0
    assert abs(est.samples - generated) <= slack, (est, generated)


def test_official_settings_come_from_mlperf_conf(make_config, tmp_path):
    config = make_config("scenario=server", "benchmark=llama3_1-8b", "benchmark.official=true")
    conf = tmp_path / "user.conf"
    conf.write_text(lg_settings.render_user_conf(config, 13368))
    s = schedule.effective(conf, "llama3_1-8b", "Server")
    assert s.min_duration_ms == 600000 and s.sample_concatenate_permutation
    assert s.server_target_qps == config.scenario.target_qps


def test_a_schedule_beyond_memory_or_a_week_is_refused_naming_the_keys(make_config, tmp_path):
    config = make_config("scenario=server", "scenario.target_qps=1000")
    conf = tmp_path / "user.conf"
    conf.write_text(lg_settings.render_user_conf(config, 32))
    with pytest.raises(ConfigError, match=r"scenario\.target_qps=1000, scenario\.min_duration_s=5, "
                                           r"scenario\.min_query_count=500: LoadGen would schedule 5,024 queries"):
        schedule.check(config, conf, "llama3_1-8b", 32, available_bytes=1_000_000)
    assert schedule.check(config, conf, "llama3_1-8b", 32, available_bytes=10**10).queries == 5024
    config = make_config("scenario=server", "scenario.target_qps=1e-5")
    conf.write_text(lg_settings.render_user_conf(config, 32))
    with pytest.raises(ConfigError, match=r"scenario\.target_qps=1e-05.*512 queries over 592\.6 days"):
        schedule.check(config, conf, "llama3_1-8b", 32)


def _limited_memory() -> None:
    # Protects the machine if the bound is missing: LoadGen would otherwise grow to tens of GB.
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["scenario=server", "scenario.target_qps=1e9"], "LoadGen would schedule 5,000,000,000 queries up front"),
        (["scenario=server", "scenario.target_qps=1e-5"], "LoadGen would schedule 512 queries over"),
        (["scenario=server", "scenario.target_qps=-5"], "'scenario.target_qps' must be > 0, got -5"),
        (["scenario=server", "scenario.target_qps=0"], "'scenario.target_qps' must be > 0, got 0"),
    ],
)
def test_the_cli_refuses_before_loadgen_starts(tmp_path, overrides, needle):
    proc = subprocess.run([sys.executable, "-m", "harness", "sut=echo", "mode=performance", *overrides,
                           f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=90, preexec_fn=_limited_memory)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and needle in proc.stderr
    assert not (tmp_path / "run" / "performance").exists()
