"""Parsing LoadGen's ``mlperf_log_detail.txt`` into typed performance results.

Every number the harness reports comes from these ``:::MLLOG {json}`` lines, never from the
harness's own clocks, so results mean what LoadGen (and a submission checker) means by them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PREFIX = ":::MLLOG "
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class DetailLog:
    """All events of one detail log: last value per key, plus LoadGen's errors and warnings."""

    values: dict[str, Any]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def parse_detail_log(path: Path) -> DetailLog:
    """Read every ``:::MLLOG`` event; malformed lines (e.g. a truncated tail) are skipped."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    warnings: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith(_PREFIX):
                continue
            try:
                event = json.loads(line[len(_PREFIX):])
            except json.JSONDecodeError:
                continue
            key, value = event.get("key"), event.get("value")
            values[key] = value
            meta = event.get("metadata") or {}
            if meta.get("is_error"):
                errors.append(f"{key}: {value}")
            elif meta.get("is_warning"):
                warnings.append(f"{key}: {value}")
    return DetailLog(values, tuple(errors), tuple(warnings))


@dataclass(frozen=True)
class Percentiles:
    """Latency percentiles in milliseconds."""

    p50: float | None
    p90: float | None
    p99: float | None

    @classmethod
    def from_log(cls, log: DetailLog, pattern: str) -> Percentiles | None:
        """``pattern`` has one ``{p}`` placeholder, e.g. ``result_{p}_percentile_latency_ns``."""
        found = {p: log.get(pattern.format(p=f"{p:.2f}")) for p in PERCENTILES}
        if all(v is None for v in found.values()):
            return None
        return cls(*(None if v is None else v / 1e6 for v in found.values()))


@dataclass(frozen=True)
class PerformanceResult:
    """LoadGen's verdict and metrics for one performance run."""

    scenario: str
    valid: bool
    invalid_reasons: tuple[str, ...]
    samples_per_second: float | None
    tokens_per_second: float | None
    latency_ms: Percentiles | None
    ttft_ms: Percentiles | None
    tpot_ms: Percentiles | None
    query_count: int | None
    loadgen_errors: int
    loadgen_error_messages: tuple[str, ...]
    loadgen_version: str | None


# Throughput keys differ per scenario (MLPERF_FACTS.md, "Output files").
_THROUGHPUT = {
    "Offline": ("result_samples_per_second", "result_tokens_per_second"),
    "Server": ("result_completed_samples_per_sec", "result_completed_tokens_per_second"),
    "SingleStream": ("result_qps_with_loadgen_overhead", "result_completed_tokens_per_second"),
}


def performance_result(log: DetailLog) -> PerformanceResult:
    """Interpret a performance-mode detail log."""
    scenario = log.get("effective_scenario") or log.get("requested_scenario") or "?"
    samples_key, tokens_key = _THROUGHPUT.get(scenario, (None, None))
    return PerformanceResult(
        scenario=scenario,
        valid=log.get("result_validity") == "VALID",
        invalid_reasons=invalid_reasons(log),
        samples_per_second=log.get(samples_key) if samples_key else None,
        tokens_per_second=log.get(tokens_key) if tokens_key else None,
        latency_ms=Percentiles.from_log(log, "result_{p}_percentile_latency_ns"),
        ttft_ms=Percentiles.from_log(log, "result_first_token_{p}_percentile_latency_ns"),
        tpot_ms=Percentiles.from_log(log, "result_time_per_output_token_{p}_percentile_ns"),
        query_count=log.get("result_query_count"),
        loadgen_errors=max(int(log.get("num_errors") or 0), len(log.errors)),
        loadgen_error_messages=log.errors[:20],
        loadgen_version=loadgen_version(log),
    )


def loadgen_version(log: DetailLog) -> str | None:
    raw = log.get("loadgen_version")
    return raw.split(" @ ")[0] if isinstance(raw, str) else None


def invalid_reasons(log: DetailLog) -> tuple[str, ...]:
    """Which VALID conditions failed, in words (empty for a VALID run)."""
    if log.get("result_validity") == "VALID":
        return ()
    reasons = []
    checks = (("result_min_duration_met", "min duration not met"),
              ("result_min_queries_met", "min query count not met"),
              ("result_perf_constraints_met", "latency constraints not met"),
              ("early_stopping_met", "early stopping not met"))
    for key, text in checks:
        if log.get(key) is False:
            reasons.append(text)
    detail = " ".join(str(log.get(k) or "") for k in
                      ("result_invalid_reason", "early_stopping_ttft_result", "early_stopping_tpot_result"))
    detail = " ".join(detail.split())
    if detail:
        reasons.append(detail)
    if log.get("result_validity") is None:
        reasons.append("no result in the detail log (run did not finish)")
    return tuple(reasons)
