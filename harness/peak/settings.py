"""The search settings (``peak:`` in ``conf/peak.yaml``) and the configs of the runs a search makes.

``harness-peak`` composes ``conf/peak.yaml``: the whole ``harness`` configuration (its defaults
list includes ``config.yaml``) plus a ``peak:`` block. :func:`load` splits the two, builds each
strictly (an unknown ``peak.*`` key is an error naming it, as for every other key) and checks
the values, so bad input ends with one line naming the key before any probe runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.config import HarnessConfig, build_dataclass, load_config
from harness.errors import ConfigError

log = logging.getLogger(__name__)

# LoadGen's early-stopping test at the 99th percentile needs about 460 queries even when every
# one is within its limits (MLPERF_FACTS.md): a probe with fewer cannot be VALID.
EARLY_STOPPING_MIN_QUERIES = 460
# Probe rates are rounded to this many significant digits, so directory names, the table and
# the rate LoadGen is given agree; relative steps below 1e-4 are not representable.
QPS_DIGITS = 5
MIN_PRECISION = 0.001
# A quick-mode confirmation runs at least this many times a probe's duration and query count.
# LoadGen's seeds come from mlperf.conf, so a confirmation of a probe's own length re-plays the
# last probe's arrival schedule exactly (with the scenario's quick defaults, 5 s and 500 queries,
# it did): it confirmed nothing. A longer run keeps that schedule's start and goes on, so a queue
# that grows slowly (a rate just above capacity) has time to show.
CONFIRM_LENGTH_FACTOR = 2


@dataclass(frozen=True)
class PeakConfig:
    """How ``harness-peak`` searches the highest VALID Server (or Interactive) target QPS.

    Rates are queries per second; ``precision`` is relative: bisection stops once the lowest
    INVALID rate is within ``1 + precision`` times the highest VALID one.
    """

    start_qps: float | None = None  # null: scenario.target_qps (clipped into [min_qps, max_qps])
    min_qps: float = 1.0  # INVALID here: the SUT cannot meet the limits at any rate tried
    max_qps: float = 10000.0  # VALID here: the answer is "at least max_qps"
    precision: float = 0.05
    probe_duration_s: float = 5.0  # LoadGen min_duration of each probe
    probe_min_query_count: int = 500  # LoadGen min_query_count of each probe
    max_probes: int = 12  # search probes at most; confirmation runs come on top
    confirm: bool = True  # re-run the answer with the scenario's own duration / query count
    confirm_attempts: int = 3  # INVALID confirmation: step down by the precision, at most this often


def qps_round(qps: float, up: bool = False) -> float:
    """A rate as probed: ``QPS_DIGITS`` significant digits (``up``: never below ``qps``, so a step
    down by the precision stays within it)."""
    rounded = float(f"{qps:.{QPS_DIGITS}g}")
    if up and rounded < qps:
        step = 10.0 ** (math.floor(math.log10(qps)) - QPS_DIGITS + 1)
        rounded = float(f"{rounded + step:.{QPS_DIGITS}g}")
    return rounded


def load(raw: Mapping[str, Any]) -> tuple[HarnessConfig, PeakConfig]:
    """The run configuration and the search settings from a composed ``conf/peak.yaml``."""
    data = dict(raw)
    peak = data.pop("peak", None)
    if peak is None:
        raise ConfigError("missing required config key 'peak' (harness-peak composes conf/peak.yaml)")
    config = load_config(data)
    settings = build_dataclass(PeakConfig, peak, "peak")
    check(config, settings)
    return config, settings


def compose(overrides: list[str] | tuple[str, ...] = ()) -> tuple[HarnessConfig, PeakConfig]:
    """Compose ``conf/peak.yaml`` with overrides, as ``harness-peak`` would, without running anything."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from harness.config import CONF_DIR, quote_null_sut, register_scenarios

    register_scenarios()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="peak", overrides=quote_null_sut(list(overrides)))
    return load(OmegaConf.to_container(cfg, resolve=True))


def check(config: HarnessConfig, settings: PeakConfig) -> None:
    """Raise ConfigError, naming the key, for settings no search can use."""
    sc = config.scenario
    if sc.loadgen_scenario != "Server":
        raise ConfigError(f"config key 'scenario': harness-peak searches the Server target QPS, and "
                          f"scenario={sc.name} is a LoadGen {sc.loadgen_scenario} scenario "
                          "(use scenario=server or scenario=interactive)")
    s = settings
    if s.min_qps <= 0:
        raise ConfigError(f"config key 'peak.min_qps' must be > 0, got {s.min_qps:g}")
    if s.max_qps <= s.min_qps:
        raise ConfigError(f"config key 'peak.max_qps' must be > peak.min_qps ({s.min_qps:g}), got {s.max_qps:g}")
    if s.start_qps is not None and not s.min_qps <= s.start_qps <= s.max_qps:
        raise ConfigError(f"config key 'peak.start_qps' must lie in [peak.min_qps, peak.max_qps] = "
                          f"[{s.min_qps:g}, {s.max_qps:g}], got {s.start_qps:g}")
    if not MIN_PRECISION <= s.precision <= 1:
        raise ConfigError(f"config key 'peak.precision' is relative (0.05 = 5%) and must lie in "
                          f"[{MIN_PRECISION:g}, 1], got {s.precision:g}")
    if s.probe_duration_s < 0:
        raise ConfigError(f"config key 'peak.probe_duration_s' must be >= 0, got {s.probe_duration_s:g}")
    if s.probe_min_query_count < 1:
        raise ConfigError(f"config key 'peak.probe_min_query_count' must be >= 1, got {s.probe_min_query_count}")
    if not 1 <= s.max_probes <= 100:
        raise ConfigError(f"config key 'peak.max_probes' must lie in [1, 100], got {s.max_probes}")
    if not 1 <= s.confirm_attempts <= 10:
        raise ConfigError(f"config key 'peak.confirm_attempts' must lie in [1, 10], got {s.confirm_attempts}")
    if s.probe_min_query_count < EARLY_STOPPING_MIN_QUERIES:
        # Not an error: probe_duration_s x QPS may still give enough queries at high rates.
        log.warning("peak.probe_min_query_count=%d: a probe with fewer than ~%d queries cannot pass early "
                    "stopping at p99 and reads INVALID", s.probe_min_query_count, EARLY_STOPPING_MIN_QUERIES)


def start_rate(config: HarnessConfig, settings: PeakConfig) -> float:
    """The first rate tried: ``peak.start_qps``, else the scenario's target QPS, within the range."""
    start = settings.start_qps if settings.start_qps is not None else config.scenario.target_qps
    return qps_round(min(max(start, settings.min_qps), settings.max_qps))


def probe_config(config: HarnessConfig, settings: PeakConfig, qps: float) -> HarnessConfig:
    """A short performance run at ``qps``: quick settings with the probe's duration and query count.

    Official settings would keep mlperf.conf's 600 s per probe, so probes always run quick; an
    official search still judges them by the benchmark's own limits (scenario overrides dropped).
    """
    sc = config.scenario
    official = config.benchmark.official
    scenario = dataclasses.replace(sc, target_qps=qps, min_duration_s=settings.probe_duration_s,
                                   min_query_count=settings.probe_min_query_count,
                                   ttft_ms=None if official else sc.ttft_ms, tpot_ms=None if official else sc.tpot_ms)
    return dataclasses.replace(config, scenario=scenario, mode="performance",
                               benchmark=dataclasses.replace(config.benchmark, official=False))


def confirm_length(config: HarnessConfig, settings: PeakConfig) -> tuple[float, int] | None:
    """A quick-mode confirmation's (min_duration_s, min_query_count): the scenario's own, but at
    least ``CONFIRM_LENGTH_FACTOR`` times a probe's; None with official settings (mlperf.conf's)."""
    if config.benchmark.official:
        return None
    sc = config.scenario
    return (max(sc.min_duration_s, CONFIRM_LENGTH_FACTOR * settings.probe_duration_s),
            max(sc.min_query_count, CONFIRM_LENGTH_FACTOR * settings.probe_min_query_count))


def confirm_config(config: HarnessConfig, settings: PeakConfig, qps: float) -> HarnessConfig:
    """The confirmation: the user's own run (official or not) at ``qps``, in quick mode at least
    twice a probe's length (:func:`confirm_length`)."""
    scenario = dataclasses.replace(config.scenario, target_qps=qps)
    length = confirm_length(config, settings)
    if length is not None:
        scenario = dataclasses.replace(scenario, min_duration_s=length[0], min_query_count=length[1])
    return dataclasses.replace(config, scenario=scenario, mode="performance")


def probe_overrides(config: HarnessConfig, settings: PeakConfig, qps: float, step: str) -> list[str]:
    """The ``harness`` overrides that repeat one probe or confirmation on its own (on top of the user's)."""
    out = [f"scenario.target_qps={qps:g}", "mode=performance"]
    if step == "probe":
        out += [f"scenario.min_duration_s={settings.probe_duration_s:g}",
                f"scenario.min_query_count={settings.probe_min_query_count}"]
        if config.benchmark.official:
            out += ["benchmark.official=false", "scenario.ttft_ms=null", "scenario.tpot_ms=null"]
    elif (length := confirm_length(config, settings)) is not None:
        out += [f"scenario.min_duration_s={length[0]:g}", f"scenario.min_query_count={length[1]}"]
    return out
