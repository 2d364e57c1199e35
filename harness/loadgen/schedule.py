"""How many queries LoadGen will schedule for a performance test, bounded before it starts.

LoadGen generates a test's whole schedule up front (``GenerateQueries`` in loadgen.cc), from
the settings mlperf.conf and ``user.conf`` give it, before the SUT sees a query:

- Offline: one query of max(min_query_count, 1.1 x min_duration x expected QPS) samples;
- Server: Poisson arrivals at the target QPS until min_duration has passed *and*
  min_query_count queries exist, so the run lasts at least min_query_count / target QPS;
- SingleStream: a query every expected latency for twice min_duration, at least min_query_count;

each rounded up to whole passes over the samples when mlperf.conf sets equal issue
(``sample_concatenate_permutation``, every LLM benchmark). Every query costs memory in the test
process until the test ends, so an absurd rate (``scenario.target_qps=1e9``) grows that process
until the kernel kills it, and a tiny Server rate schedules a run of days. :func:`check`
estimates the schedule from the settings LoadGen itself reads and refuses what cannot fit,
naming the keys. The estimate is checked against LoadGen's own ``generated_query_count`` in
tests/integration/test_schedule.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.config import HarnessConfig
from harness.errors import ConfigError

# Memory per scheduled sample in the test process: measured about 500 bytes (Offline, a query of
# 1.1 M samples through sut=null: 540 MiB above the baseline) and 200 bytes (Server, 400 k
# queries); twice the larger one, for margin.
BYTES_PER_SAMPLE = 1024
MEMORY_FRACTION = 0.5  # of the memory available when the run starts
MAX_SERVER_SPAN_S = 7 * 86400  # a Server schedule longer than a week is a mistake, not a benchmark
OFFLINE_SLACK = 1.1  # kSlack in LoadGen's test_settings_internal.cc

# Runs in a fresh interpreter: LoadGen reads mlperf.conf only on the first FromConfig call of a
# process (harness/loadgen/process.py), and this process may run many tests (a round, a search).
_PROBE = """
import json, sys
import mlperf_loadgen as lg
conf, key, scenario = sys.argv[1:4]
s = lg.TestSettings()
s.scenario = getattr(lg.TestScenario, scenario)
s.FromConfig(conf, key, scenario)
names = ("min_duration_ms", "min_query_count", "server_target_qps", "offline_expected_qps",
         "single_stream_expected_latency_ns", "sample_concatenate_permutation")
print(json.dumps({n: getattr(s, n) for n in names}))
"""


@dataclass(frozen=True)
class Effective:
    """The LoadGen settings that size a schedule, as LoadGen reads them (mlperf.conf + user.conf)."""

    min_duration_ms: float
    min_query_count: int
    server_target_qps: float
    offline_expected_qps: float
    single_stream_expected_latency_ns: float
    sample_concatenate_permutation: bool


@dataclass(frozen=True)
class Schedule:
    """What LoadGen will generate: queries, samples in them, and (Server) the scheduled span."""

    queries: int
    samples: int
    span_s: float | None = None  # Server: time from the first to the last scheduled arrival

    @property
    def bytes(self) -> int:
        return self.samples * BYTES_PER_SAMPLE


def effective(user_conf: Path, model_key: str, scenario: str) -> Effective:
    """Ask LoadGen (in a fresh interpreter) which settings it will use for this test."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(user_conf), model_key, scenario],
                              capture_output=True, text=True, timeout=60, check=True)
        return Effective(**json.loads(proc.stdout.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, TypeError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise ConfigError(f"cannot read LoadGen's settings from {user_conf}: {str(detail).strip()[-300:]}") from exc


def estimate(scenario: str, s: Effective, n_samples: int) -> Schedule:
    """The performance test's schedule, as GenerateQueries builds it (Poisson counts: expected values)."""
    def whole_passes(count: float) -> int:
        count = math.ceil(count)
        return -(-count // n_samples) * n_samples if s.sample_concatenate_permutation and n_samples else count

    duration_s = s.min_duration_ms / 1000
    if scenario == "Offline":
        return Schedule(1, whole_passes(max(s.min_query_count, math.floor(OFFLINE_SLACK * duration_s
                                                                           * s.offline_expected_qps))))
    if scenario == "Server":
        qps = s.server_target_qps
        queries = whole_passes(max(s.min_query_count, qps * duration_s)) if qps > 0 else math.inf
        return Schedule(queries, queries, queries / qps if qps > 0 else math.inf)
    # SingleStream: issued one after another, but generated at one per expected latency over 2 x min_duration.
    latency_s = s.single_stream_expected_latency_ns / 1e9
    queries = whole_passes(max(s.min_query_count, 2 * duration_s / latency_s)) if latency_s > 0 else math.inf
    return Schedule(queries, queries)


def _keys(config: HarnessConfig, s: Effective) -> str:
    """The settings that sized the schedule, as the user sets them."""
    sc, scenario = config.scenario, config.scenario.loadgen_scenario
    official = config.benchmark.official
    rate = (f"scenario.expected_latency_ms={sc.expected_latency_ms:g}" if sc.expected_latency_ms is not None
            else f"mlperf.conf's expected latency {s.single_stream_expected_latency_ns / 1e6:g} ms"
            ) if scenario == "SingleStream" else f"scenario.target_qps={sc.target_qps:g}"
    if official:
        return (f"{rate} with mlperf.conf's min_duration {s.min_duration_ms / 1000:g} s and min_query_count "
                f"{s.min_query_count} (benchmark.official=true)")
    return f"{rate}, scenario.min_duration_s={sc.min_duration_s:g}, scenario.min_query_count={sc.min_query_count}"


def check(config: HarnessConfig, user_conf: Path, model_key: str, n_samples: int,
          available_bytes: int | None = None) -> Schedule:
    """Refuse a performance test whose schedule cannot fit in memory (or, Server, in a week).

    ``model_key`` is the mlperf.conf key user.conf is written for; ``available_bytes`` defaults
    to the memory available now (psutil).
    """
    scenario = config.scenario.loadgen_scenario
    s = effective(user_conf, model_key, scenario)
    schedule = estimate(scenario, s, n_samples)
    if available_bytes is None:
        import psutil

        available_bytes = psutil.virtual_memory().available
    keys = _keys(config, s)
    what = "queries" if scenario != "Offline" else "samples in one query"
    if not math.isfinite(schedule.samples) or schedule.bytes > MEMORY_FRACTION * available_bytes:
        count = "without end" if not math.isfinite(schedule.samples) else (
            f"{schedule.samples:,} {what} up front, about {schedule.bytes / 1e9:,.1f} GB of memory; "
            f"{available_bytes / 1e9:,.1f} GB is available")
        raise ConfigError(f"{keys}: LoadGen would schedule {count}; lower the rate or the duration")
    if schedule.span_s is not None and schedule.span_s > MAX_SERVER_SPAN_S:
        raise ConfigError(f"{keys}: LoadGen would schedule {schedule.queries:,} queries over "
                          f"{schedule.span_s / 86400:,.1f} days (more than {MAX_SERVER_SPAN_S / 86400:g}); "
                          "raise the rate or lower the query count")
    return schedule

