"""Rendering ``user.conf``: the only way the harness changes LoadGen's settings.

LoadGen reads the official ``mlperf.conf`` compiled into the wheel first, then ``user.conf``
(``model.Scenario.key = value`` lines). Quick mode overrides durations, query counts and the
performance sample count so a run takes seconds; official mode writes only what the rules
leave to the submitter (target QPS, expected latency) so mlperf.conf's values stand.
"""

from __future__ import annotations

from harness import __version__
from harness.config import HarnessConfig, LatencyLimits
from harness.errors import ConfigError


def model_key(config: HarnessConfig) -> str:
    """The mlperf.conf model key; Interactive runs use the ``<key>-interactive`` settings."""
    key = config.benchmark.model_key
    return f"{key}-interactive" if config.scenario.latency_limits == "interactive" else key


def latency_limits(config: HarnessConfig) -> LatencyLimits | None:
    """TTFT/TPOT p99 limits of the run: the benchmark's, with scenario overrides applied.

    None for a model without token latencies (GPT-J): its Server constraint is mlperf.conf's
    end-to-end p99 latency (``gptj.Server.target_latency = 20000`` ms), which quick mode keeps.
    """
    sc = config.scenario
    if sc.latency_limits is None:
        return None
    if not uses_token_latencies(config.benchmark.model_key):
        if sc.latency_limits == "interactive":
            raise ConfigError(f"benchmark '{config.benchmark.name}' has no Interactive scenario "
                              f"(mlperf.conf has no {config.benchmark.model_key}-interactive settings)")
        return None
    base = config.benchmark.latency.get(sc.latency_limits)
    if base is None and (sc.ttft_ms is None or sc.tpot_ms is None):
        raise ConfigError(f"benchmark '{config.benchmark.name}' has no benchmark.latency."
                          f"{sc.latency_limits} limits; set scenario.ttft_ms and scenario.tpot_ms")
    return LatencyLimits(ttft_ms=sc.ttft_ms if sc.ttft_ms is not None else base.ttft_ms,
                         tpot_ms=sc.tpot_ms if sc.tpot_ms is not None else base.tpot_ms)


def render_user_conf(config: HarnessConfig, n_samples: int) -> str:
    """The user.conf text for this run (both test modes of a run share it)."""
    sc = config.scenario
    key, scen = model_key(config), sc.loadgen_scenario
    official = config.benchmark.official
    lines = [f"# user.conf rendered by harness {__version__} for {key} {scen}",
             "# " + ("official settings: mlperf.conf values stand" if official
                     else "quick settings: shortened for development, not submittable")]

    def put(name: str, value: float | int) -> None:
        text = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"{key}.{scen}.{name} = {text}")

    if scen in ("Server", "Offline"):
        put("target_qps", float(sc.target_qps))
    if scen == "SingleStream" and sc.expected_latency_ms is not None:
        put("target_latency", round(sc.expected_latency_ms))  # ms, integer in mlperf.conf
    if official:
        return "\n".join(lines) + "\n"
    put("min_duration", int(sc.min_duration_s * 1000))
    # Offline: LoadGen reads min_query_count as the minimum sample count; one pass over the
    # dataset unless the scenario asks for more.
    put("min_query_count", max(sc.min_query_count, n_samples if scen == "Offline" else 1))
    put("performance_sample_count_override", n_samples)
    limits = latency_limits(config)
    if limits is not None and scen == "Server":
        put("ttft_latency", round(limits.ttft_ms))  # ms, integers in mlperf.conf
        put("tpot_latency", round(limits.tpot_ms))
    return "\n".join(lines) + "\n"


# Compliance TEST06 (MLPerf compliance/TEST06/audit.config): a performance run that logs about
# 100 responses to mlperf_log_accuracy.json, so their first token, EOS and length can be checked.
# Equal issue is off and min_duration 0, so it is short even with official settings.
TEST06_AUDIT_CONF = """\
# TEST06 audit settings (harness): PerformanceOnly, ~100 responses logged
*.*.mode = 2
*.*.accuracy_log_rng_seed = 720381539243781796
*.*.accuracy_log_sampling_target = 100
*.*.min_query_count = 100
*.*.min_duration = 0
*.*.sample_concatenate_permutation = 0
"""


def uses_token_latencies(model_key: str) -> bool:
    """Every LLM key of mlperf.conf sets use_token_latencies=1 except GPT-J (MLPERF_FACTS.md)."""
    return not model_key.startswith("gptj")
