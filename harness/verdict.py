"""The harness's own verdict on a run: VALID, INVALID, BEHIND or FAILED, with one reason per line.

LoadGen's ``result_validity`` is necessary but not sufficient for a result the harness shows:

- **FAILED**: samples failed (SUT errors, timeouts). LoadGen still computes figures from the
  failed samples' completions (a 74,843 samples/s "VALID" Offline run where every sample raised),
  so such a run is never a result, whatever LoadGen says.
- **INVALID**: LoadGen said INVALID (min duration, min queries, a p99 over its limit, early
  stopping), or LoadGen itself logged errors (they make a run unsubmittable).
- **BEHIND**: LoadGen said VALID, but in Server/Interactive the completions did not keep pace
  with the arrivals (:func:`falling_behind`): the queue grows, so a longer run would fail, while a
  short one ends before the queue shows in TTFT p99 (80,000 QPS target, 63,800/s completed,
  "VALID" in LoadGen 6.0.17).
- **VALID**: none of the above.

One definition, used by ``harness`` (results.json, summary, MLflow ``valid``), ``harness-peak``
(its probes) and ``harness-compare`` (markers). LoadGen's own verdict is kept beside it
(``loadgen_valid``) and its raw text goes to the log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from harness.config import LatencyLimits
from harness.loadgen.logs import DetailLog, Percentiles

Status = Literal["VALID", "INVALID", "BEHIND", "FAILED"]
STATUSES: tuple[Status, ...] = ("VALID", "BEHIND", "INVALID", "FAILED")
# Completions kept pace with at least this fraction of the arrivals (run.min_completed_ratio).
DEFAULT_MIN_COMPLETED_RATIO = 0.95

_MORE_QUERIES = re.compile(r"at least (\d+) more queries")


@dataclass(frozen=True)
class Reason:
    """One condition of a verdict, with its figure and its limit.

    ``metric`` is ``ttft_p99_ms``/``tpot_p99_ms`` (``value``, ``limit`` in ms),
    ``early_stopping_ttft``/``early_stopping_tpot`` (``value``: further queries LoadGen says were
    needed), ``min_duration`` (ms), ``min_queries``, ``errors`` (failed samples of those issued),
    ``loadgen_errors``, ``falling_behind`` (``value``: completions as a fraction of arrivals;
    ``limit``: ``run.min_completed_ratio``) or ``other`` (LoadGen's own words).
    """

    metric: str
    text: str
    value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class Pace:
    """Server/Interactive: LoadGen's completed vs scheduled samples/s and the pace ratio."""

    completed_qps: float
    scheduled_qps: float
    ratio: float | None  # completions / arrivals net of one p50 latency of drain; None: cannot tell


@dataclass(frozen=True)
class Verdict:
    """The harness's verdict on one run's performance test (or on a run whose samples failed)."""

    status: Status
    reasons: tuple[Reason, ...]
    loadgen_valid: bool | None  # LoadGen's own result_validity; None: no performance test ran
    pace: Pace | None = None

    @property
    def valid(self) -> bool:
        return self.status == "VALID"

    def lines(self) -> list[str]:
        return [r.text for r in self.reasons]


def falling_behind(queries: int | None, completed: float | None, scheduled: float | None,
                   latency_p50_ms: float | None, min_ratio: float | None) -> Reason | None:
    """The ``falling_behind`` reason when completions did not keep pace with arrivals.

    LoadGen's completed rate is ``queries / T_c`` (first issue to last completion) and its
    scheduled rate ``queries / T_s`` (first to last issue). Even a server that keeps up needs one
    request latency after the last issue to drain, so ``T_c - latency p50`` is the time the
    completions took; ``T_s / (T_c - p50)`` is then ~1.00 for a server that keeps up (the drain
    no longer biases it, which matters for LLM latencies of seconds in short runs) and ~capacity /
    arrival rate for one whose queue grows (p50 is inflated by the queue, so it reads high: ~0.95
    at 10% overload).
    """
    ratio = pace_ratio(queries, completed, scheduled, latency_p50_ms)
    if min_ratio is None or ratio is None or ratio >= min_ratio:
        return None
    assert completed is not None and scheduled is not None
    return Reason("falling_behind", f"falling behind: completions {ratio:.1%} of arrivals (limit {min_ratio:.0%}; "
                  f"completed {completed:,.2f}/s, scheduled {scheduled:,.2f}/s)", ratio, min_ratio)


def pace_ratio(queries: int | None, completed: float | None, scheduled: float | None,
               latency_p50_ms: float | None) -> float | None:
    """``T_s / (T_c - p50)`` of :func:`falling_behind`; None when the log cannot tell."""
    if not queries or not completed or not scheduled or latency_p50_ms is None:
        return None
    t_scheduled, t_completed = queries / scheduled, queries / completed - latency_p50_ms / 1000
    if t_completed <= 0:
        return None
    return t_scheduled / t_completed


def _latencies(ttft: Percentiles | None, tpot: Percentiles | None,
               limits: LatencyLimits | None) -> list[tuple[str, str, float, float]]:
    """(key, label, p99, limit) of the token latencies that have a limit and a figure."""
    if limits is None:
        return []
    found = []
    for key, label, pct, limit in (("ttft", "TTFT", ttft, limits.ttft_ms), ("tpot", "TPOT", tpot, limits.tpot_ms)):
        if pct is not None and pct.p99 is not None:
            found.append((key, label, pct.p99, limit))
    return found


def headroom(ttft: Percentiles | None, tpot: Percentiles | None, limits: LatencyLimits | None) -> Reason | None:
    """For a VALID run: the token latency closest to its limit, i.e. what will limit the rate first."""
    latencies = _latencies(ttft, tpot, limits)
    if not latencies:
        return None
    key, label, value, limit = max(latencies, key=lambda t: t[2] / t[3])
    return Reason(f"{key}_p99_ms", f"{label} p99 {value:.1f} ms <= limit {limit:g} ms", value, limit)


def loadgen_reasons(detail: DetailLog, ttft: Percentiles | None, tpot: Percentiles | None,
                    limits: LatencyLimits | None) -> tuple[Reason, ...]:
    """Why LoadGen said INVALID, one reason per failed condition, each with its figure and limit.

    A p99 over its limit is named once: LoadGen's early stopping then fails too, as a consequence.
    """
    values = detail.values
    found: list[Reason] = []
    over = set()
    latencies = _latencies(ttft, tpot, limits)
    for key, label, value, limit in latencies:
        if value > limit:
            over.add(key)
            found.append(Reason(f"{key}_p99_ms", f"{label} p99 {value:.1f} ms > limit {limit:g} ms", value, limit))
    if values.get("early_stopping_met") is False:
        for key, label in (("ttft", "TTFT"), ("tpot", "TPOT")):
            text = str(values.get(f"early_stopping_{key}_result") or "")
            if key in over or "unsuccessful" not in text:
                continue
            more = _MORE_QUERIES.search(text)
            queries = values.get("result_query_count")
            figure = next((f"p99 {v:.1f} ms <= limit {lim:g} ms" for k, _, v, lim in latencies if k == key),
                          "not met")
            needed = (f"; {queries:,} queries run, at least {int(more.group(1)):,} more needed to prove the p99"
                      if more and queries else "")
            found.append(Reason(f"early_stopping_{key}", f"early stopping {label}: {figure}{needed}",
                                float(more.group(1)) if more else None, limit_of(latencies, key)))
    if values.get("result_min_duration_met") is False:
        minimum = values.get("effective_min_duration_ms")
        found.append(Reason("min_duration", "min duration not met"
                            + (f" (limit {minimum / 1000:g} s)" if isinstance(minimum, (int, float)) else ""),
                            None, minimum))
    if values.get("result_min_queries_met") is False:
        count, minimum = values.get("result_query_count"), values.get("effective_min_query_count")
        found.append(Reason("min_queries", f"{count} queries < min {minimum}" if count is not None and minimum
                            else "min query count not met", count, minimum))
    if values.get("result_validity") is None:
        found.append(Reason("other", "no result in LoadGen's detail log (the test did not finish)"))
    elif not found and values.get("result_validity") != "VALID":
        words = " ".join(str(values.get("result_invalid_reason") or "INVALID").split())
        found.append(Reason("other", f"LoadGen: {words}"))
    return tuple(found)


def limit_of(latencies: list[tuple[str, str, float, float]], key: str) -> float | None:
    return next((limit for k, _, _, limit in latencies if k == key), None)


def judge(*, detail: DetailLog | None, ttft: Percentiles | None, tpot: Percentiles | None,
          latency: Percentiles | None, samples_per_second: float | None, streaming_server: bool,
          limits: LatencyLimits | None, errors: int, issued: int, loadgen_errors: int,
          loadgen_error_messages: tuple[str, ...] = (), first_error: str | None = None,
          min_completed_ratio: float | None = DEFAULT_MIN_COMPLETED_RATIO) -> Verdict | None:
    """The verdict of a run: ``detail`` is its performance test's detail log (None: no performance
    test ran), ``errors`` the samples failed in any of its tests, ``issued`` the samples issued.

    Returns None for a run with neither a performance test nor failures (accuracy mode, fine).
    """
    loadgen_valid = None if detail is None else detail.get("result_validity") == "VALID"
    if errors:
        text = f"{errors} of {issued} samples failed" if issued else f"{errors} samples failed"
        reasons = [Reason("errors", text + (f" (first: {first_error})" if first_error else ""), errors, 0)]
        return Verdict("FAILED", tuple(reasons), loadgen_valid)
    if detail is None:
        return None
    reasons_list: list[Reason] = []
    if loadgen_errors:
        first = f": {loadgen_error_messages[0]}" if loadgen_error_messages else ""
        reasons_list.append(Reason("loadgen_errors", f"LoadGen logged {loadgen_errors} errors{first}",
                                   loadgen_errors, 0))
    if not loadgen_valid:
        reasons_list.extend(loadgen_reasons(detail, ttft, tpot, limits))
    pace = None
    if streaming_server:
        scheduled = detail.get("result_scheduled_samples_per_sec")
        queries = detail.get("result_query_count")
        if samples_per_second and scheduled:
            pace = Pace(samples_per_second, scheduled,
                        pace_ratio(queries, samples_per_second, scheduled, latency.p50 if latency else None))
    if reasons_list:
        return Verdict("INVALID", tuple(reasons_list), loadgen_valid, pace)
    if pace is not None:
        behind = falling_behind(detail.get("result_query_count"), pace.completed_qps, pace.scheduled_qps,
                                latency.p50 if latency else None, min_completed_ratio)
        if behind is not None:
            return Verdict("BEHIND", (behind,), loadgen_valid, pace)
    return Verdict("VALID", (), loadgen_valid, pace)
