"""What a running LoadGen test tells the parent's progress display (:mod:`harness.progress`).

Everything here runs on the bridge's watchdog thread, off the per-sample path: at each watchdog
period (0.1 s) it reads the bridge's counters and looks at the samples in flight, and about once
a second it sends a :class:`~harness.progress.Snapshot`. LoadGen's clock and the per-sample code
pay nothing for it. The expected count is LoadGen's own: ``generated_query_count`` (times the
samples per query), which LoadGen writes to the detail log as the test starts.

Streamed samples' TTFT and TPOT are only seen at those looks, so each sample's value is known to
lie in an interval (its first token came after the last look that saw none and by the first look
that saw one); the median of the intervals' low ends and the median of their high ends bound the
samples' median. Times are the bridge's (from the sample's hand-over to the SUT), not LoadGen's
(from the query's scheduled time): a progress figure, never a result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.loadgen.logs import parse_detail_log
from harness.progress import Snapshot

SEND_EVERY_S = 1.0
_BIN_RATIO = 1.02  # histogram bins of the running medians: 2% wide
_LOG_RATIO = math.log(_BIN_RATIO)


class Median:
    """A running median of non-negative values (seconds), weighted, in 2%-wide log bins."""

    def __init__(self) -> None:
        self.bins: dict[int, float] = {}
        self.total = 0.0

    def add(self, value: float, weight: float = 1.0) -> None:
        key = -10**6 if value <= 1e-7 else math.floor(math.log(value) / _LOG_RATIO)
        self.bins[key] = self.bins.get(key, 0.0) + weight
        self.total += weight

    def value(self) -> float | None:
        if not self.total:
            return None
        seen = 0.0
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen >= self.total / 2:
                return 0.0 if key == -10**6 else _BIN_RATIO ** (key + 0.5)
        return None


class Bounds:
    """The running p50 of values known as intervals: (median of the lows, median of the highs)."""

    def __init__(self) -> None:
        self.lo, self.hi = Median(), Median()

    def add(self, lo: float, hi: float, weight: float = 1.0) -> None:
        self.lo.add(max(0.0, lo), weight)
        self.hi.add(max(0.0, hi), weight)

    def value(self) -> tuple[float, float] | None:
        lo, hi = self.lo.value(), self.hi.value()
        return None if lo is None or hi is None else (lo, hi)


@dataclass
class _Seen:
    """What the looks have seen of one streamed sample (times in the bridge's monotonic clock)."""

    handle: Any  # the bridge's handle of the sample, held until it has left the bridge
    handed_over: float
    last_seen: float
    first_after: float  # the first token came after this (the last look without it)
    first_by: float | None = None  # ... and by this (the first look with it)


class LatencyWatch:
    """TTFT/TPOT p50 bounds of streamed samples from periodic looks at the samples in flight.

    A look reads each in-flight handle's ``deadline`` (its hand-over time plus ``timeout_s``),
    ``first_sent`` and, once it has left the bridge, ``tokens``. Samples that came and went
    between two looks are counted with [0, time between the looks] for both figures.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.ttft, self.tpot = Bounds(), Bounds()
        self._seen: dict[int, _Seen] = {}
        self._last_look: float | None = None
        self._completed = 0

    def look(self, now: float, in_flight: Iterable[Any], completed: int) -> None:
        prev = self._last_look if self._last_look is not None else now
        current = set()
        for p in in_flight:
            if p.deadline == math.inf:
                continue  # not yet handed to the SUT
            key = id(p)  # unique while held in _seen
            current.add(key)
            seen = self._seen.get(key)
            if seen is None:
                handed = p.deadline - self.timeout_s
                seen = self._seen[key] = _Seen(p, handed, now, handed)
            seen.last_seen = now
            if seen.first_by is None:
                if p.first_sent:
                    seen.first_by = now
                else:
                    seen.first_after = now
        finished = [key for key in self._seen if key not in current]
        for key in finished:
            seen = self._seen.pop(key)
            first_by = seen.first_by if seen.first_by is not None else now
            self.ttft.add(seen.first_after - seen.handed_over, first_by - seen.handed_over)
            n = len(seen.handle.tokens)
            if n >= 2:  # LoadGen's TPOT: (latency - TTFT) / (n - 1)
                self.tpot.add((seen.last_seen - first_by) / (n - 1), (now - seen.first_after) / (n - 1))
        unseen = completed - self._completed - len(finished)
        if unseen > 0 and now > prev:
            self.ttft.add(0.0, now - prev, unseen)
            self.tpot.add(0.0, now - prev, unseen)
        self._completed = completed
        self._last_look = now


@dataclass(frozen=True)
class Schedule:
    """LoadGen's own plan for the test, from its detail log."""

    queries: int
    samples: int
    min_duration_s: float | None
    target_qps: float | None


def read_schedule(detail_log: Path) -> Schedule | None:
    """The schedule LoadGen logged as the test started, or None before it has."""
    if not detail_log.is_file():
        return None
    values = parse_detail_log(detail_log).values
    queries = values.get("generated_query_count")
    if not isinstance(queries, int):
        return None
    per_query = values.get("effective_samples_per_query") or 1
    duration = values.get("effective_min_duration_ms")
    qps = values.get("effective_target_qps")
    return Schedule(queries, queries * int(per_query), duration / 1000 if isinstance(duration, (int, float)) else None,
                    float(qps) if isinstance(qps, (int, float)) and qps > 0 else None)


class LiveReport:
    """The bridge's side of the progress display: called at every watchdog period."""

    def __init__(self, send: Callable[[Snapshot], None], *, test: str, scenario: str, mode: str, streaming: bool,
                 timeout_s: float, detail_log: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.send = send
        self.test, self.scenario, self.mode = test, scenario, mode
        self.watch = LatencyWatch(timeout_s) if streaming else None
        self.detail_log = detail_log
        self.started = clock()
        self.clock = clock
        self.schedule: Schedule | None = None
        self._sent_at = -math.inf

    def tick(self, now: float, stats: Any, in_flight: Iterable[Any]) -> None:
        if self.watch is not None:
            self.watch.look(now, in_flight, stats.completed)
        if now - self._sent_at >= SEND_EVERY_S:
            self._sent_at = now
            self.send(self.snapshot(now, stats))

    def finish(self, now: float, stats: Any) -> None:
        """The final counts, once LoadGen has returned (every sample has left the bridge)."""
        if self.watch is not None:
            self.watch.look(now, (), stats.completed)
        self.send(self.snapshot(now, stats))

    def snapshot(self, now: float, stats: Any, phase: str = "running") -> Snapshot:
        if self.schedule is None:
            self.schedule = read_schedule(self.detail_log)
        s = self.schedule
        return Snapshot(self.test, phase, elapsed_s=now - self.started, scenario=self.scenario, mode=self.mode,
                        issued=stats.issued, completed=stats.completed, errors=stats.errors,
                        output_tokens=stats.output_tokens, expected=s.samples if s else None,
                        queries=s.queries if s else None, min_duration_s=s.min_duration_s if s else None,
                        target_qps=s.target_qps if s else None,
                        ttft_s=self.watch.ttft.value() if self.watch else None,
                        tpot_s=self.watch.tpot.value() if self.watch else None)
