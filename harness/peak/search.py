"""Bracket-and-bisect search of the highest VALID Server target QPS, and what limits each probe.

The search knows nothing about LoadGen or files: it asks a ``Prober`` to run a probe at a rate
and reads back a :class:`Probe` (LoadGen's verdict and the constraint that decided it). That
keeps the algorithm testable with scripted verdicts, and the number of probes bounded:

1. Bracket: from the start rate, double while VALID (up to ``max_qps``) or halve while INVALID
   (down to ``min_qps``) until a VALID rate and an INVALID one are known.
2. Bisect: probe the geometric mean of the highest VALID and lowest INVALID rates until
   ``lowest INVALID / highest VALID - 1 <= precision`` (geometric, since precision is relative).
3. Confirm: run the answer again with the user's own duration; an INVALID confirmation steps
   down by the precision and confirms again, ``confirm_attempts`` times at most.

LoadGen's own FindPeakPerformance mode is not used: in LoadGen 6.0.17 it judges only the p99
latency constraint, not early stopping, so the rate it reports can itself be INVALID (README).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from harness.config import LatencyLimits
from harness.loadgen.logs import DetailLog
from harness.peak.settings import PeakConfig, qps_round
from harness.results import RunResult
from harness.verdict import Reason, headroom

Step = Literal["probe", "confirm"]
Status = Literal["found", "at_least", "not_converged", "failed"]


@dataclass(frozen=True)
class Probe:
    """One performance run of the search at ``qps``, judged by the harness's verdict.

    ``valid``: LoadGen said VALID and no sample failed; ``behind`` marks such a run whose completions
    fell behind its arrivals (``run.min_completed_ratio``); the search counts only ``accepted`` runs
    as VALID. ``limits``: the reasons of a verdict other than VALID, else the latency closest to its limit.
    """

    n: int
    step: Step
    qps: float
    valid: bool
    limits: tuple[Reason, ...]
    behind: bool = False
    ttft_p99_ms: float | None = None
    tpot_p99_ms: float | None = None
    completed_qps: float | None = None  # LoadGen's completed samples per second
    scheduled_qps: float | None = None  # LoadGen's scheduled samples per second (the Poisson draw)
    tokens_per_second: float | None = None
    queries: int | None = None
    errors: int = 0
    seconds: float | None = None  # wall time of the run, LoadGen process included
    output_dir: str = ""

    @property
    def accepted(self) -> bool:
        return self.valid and not self.behind and not self.errors

    @property
    def verdict(self) -> str:
        """The run's harness verdict (harness.verdict): VALID, BEHIND, INVALID or FAILED."""
        if self.errors:
            return "FAILED"
        return "BEHIND" if self.valid and self.behind else ("VALID" if self.valid else "INVALID")

    @property
    def limiting(self) -> str:
        return "; ".join(limit.text for limit in self.limits) or "-"


@dataclass(frozen=True)
class Outcome:
    """How a search ended.

    ``found``: ``peak_qps`` is VALID (confirmed when confirmation is on) and ``lowest_invalid_qps``
    is within the precision above it; ``at_least``: VALID even at ``max_qps``; ``not_converged``:
    ``max_probes`` ran out with the peak somewhere in [peak_qps, lowest_invalid_qps); ``failed``:
    no VALID rate (``message`` says why).
    """

    status: Status
    peak_qps: float | None
    lowest_invalid_qps: float | None
    probes: tuple[Probe, ...]
    message: str
    confirmed: bool | None = None  # None: confirmation off or not reached

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def achieved_precision(self) -> float | None:
        if self.peak_qps is None or self.lowest_invalid_qps is None:
            return None
        return self.lowest_invalid_qps / self.peak_qps - 1


def probe_from(n: int, step: Step, qps: float, result: RunResult, detail: DetailLog | None,
               seconds: float | None = None) -> Probe:
    """A Probe from a finished run, judged by the harness's verdict (:mod:`harness.verdict`)."""
    values = detail.values if detail is not None else {}
    verdict = result.verdict or "INVALID"
    if verdict == "VALID":
        closest = headroom(result.ttft_ms, result.tpot_ms, result.latency_limits)
        limits: tuple[Reason, ...] = (closest,) if closest is not None else ()
    else:
        limits = result.verdict_reasons or (Reason("other", verdict),)
    pace = result.pace
    completed = pace.completed_qps if pace is not None else result.samples_per_second
    scheduled = pace.scheduled_qps if pace is not None else values.get("result_scheduled_samples_per_sec")
    return Probe(n=n, step=step, qps=qps, valid=verdict in ("VALID", "BEHIND"), limits=limits,
                 behind=verdict == "BEHIND", ttft_p99_ms=result.ttft_ms.p99 if result.ttft_ms else None,
                 tpot_p99_ms=result.tpot_ms.p99 if result.tpot_ms else None,
                 completed_qps=completed, scheduled_qps=scheduled,
                 tokens_per_second=result.tokens_per_second, queries=values.get("result_query_count"),
                 errors=result.errors, seconds=seconds, output_dir=result.output_dir)


@dataclass(frozen=True)
class Next:
    """The search's next move: probe ``qps``, or stop with ``status``."""

    qps: float | None = None
    status: Status | None = None


def plan(lo: float | None, hi: float | None, settings: PeakConfig, start: float) -> Next:
    """Where to probe next, given the highest VALID (``lo``) and lowest INVALID (``hi``) rates so far."""
    if lo is None and hi is None:
        return Next(qps=start)
    if lo is None:
        assert hi is not None
        if hi <= settings.min_qps:
            return Next(status="failed")
        return Next(qps=qps_round(max(hi / 2, settings.min_qps)))
    if hi is None:
        if lo >= settings.max_qps:
            return Next(status="at_least")
        return Next(qps=qps_round(min(lo * 2, settings.max_qps)))
    if hi / lo - 1 <= settings.precision:
        return Next(status="found")
    mid = qps_round(math.sqrt(lo * hi))
    if not lo < mid < hi:  # rounding left nothing between them
        return Next(status="found")
    return Next(qps=mid)


# (n, step, qps) -> the probe; raises HarnessError when the run fails (SUT errors, bad input).
Prober = Callable[[int, Step, float], Probe]


@dataclass
class Search:
    """One search's state; ``probes`` keeps every run, also when a probe raises."""

    settings: PeakConfig
    start: float
    limits: LatencyLimits | None = None
    probes: list[Probe] = field(default_factory=list)

    def run(self, prober: Prober) -> Outcome:
        s = self.settings
        lo: float | None = None
        hi: float | None = None
        searched = 0
        while True:
            step = plan(lo, hi, s, self.start)
            if step.qps is None or searched >= s.max_probes:
                break
            searched += 1
            probe = prober(len(self.probes) + 1, "probe", step.qps)
            self.probes.append(probe)
            if probe.accepted:
                lo = probe.qps if lo is None else max(lo, probe.qps)
            else:
                hi = probe.qps if hi is None else min(hi, probe.qps)
        status = step.status or ("failed" if lo is None else "not_converged")
        if status == "failed":
            return self._outcome("failed", None, hi, self._no_valid_rate(hi))
        assert lo is not None
        confirmed = None
        if s.confirm:
            confirmed_at = self._confirm(prober, lo)
            if confirmed_at is None:
                tried = ", ".join(f"{p.qps:g}" for p in self.probes if p.step == "confirm")
                last = next(p for p in reversed(self.probes) if p.step == "confirm")
                return self._outcome("failed", None, hi, (
                    f"the short probes found {lo:g} QPS VALID, but the full-length confirmation was INVALID at "
                    f"{tried} QPS ({last.limiting}); probe longer (peak.probe_min_query_count, "
                    "peak.probe_duration_s) or allow more steps (peak.confirm_attempts)"), confirmed=False)
            failed = [p.qps for p in self.probes if p.step == "confirm" and not p.accepted]
            if failed:  # the lowest rate that was INVALID at full length bounds the answer from above
                hi = min(failed)
            lo, confirmed = confirmed_at, True
        return self._outcome(status, lo, hi, self._answer(status, lo, hi, confirmed), confirmed)

    def _confirm(self, prober: Prober, qps: float) -> float | None:
        """The highest rate that is VALID at full length, stepping down from ``qps``; None if none is."""
        for attempt in range(self.settings.confirm_attempts):
            if attempt:
                qps = qps_round(qps / (1 + self.settings.precision), up=True)
                if qps < self.settings.min_qps:
                    return None
            probe = prober(len(self.probes) + 1, "confirm", qps)
            self.probes.append(probe)
            if probe.accepted:
                return qps
        return None

    def _no_valid_rate(self, hi: float | None) -> str:
        last = self.probes[-1] if self.probes else None
        why = f" ({last.limiting})" if last is not None else ""
        if hi is not None and hi <= self.settings.min_qps:
            return (f"INVALID at every rate tried, down to peak.min_qps={self.settings.min_qps:g} QPS{why}: "
                    "the SUT cannot meet the scenario's limits; lower peak.min_qps to search below it")
        return (f"no VALID rate within peak.max_probes={self.settings.max_probes} probes (lowest tried "
                f"{hi:g} QPS{why}); raise peak.max_probes or lower peak.start_qps")

    def _answer(self, status: Status, lo: float, hi: float | None, confirmed: bool | None) -> str:
        how = " (confirmed at full length)" if confirmed else ""
        if status == "at_least":
            return (f"VALID even at peak.max_qps={self.settings.max_qps:g} QPS{how}: the peak is at least that; "
                    "raise peak.max_qps to search higher")
        if hi is None:  # max_probes ran out while doubling
            return (f"peak.max_probes={self.settings.max_probes} ran out while doubling the rate: highest VALID "
                    f"{lo:g} QPS{how}, no INVALID rate yet (the peak is at least that)")
        verdict = next((p.verdict for p in self.probes if p.qps == hi and not p.accepted), "INVALID")
        gap = f"{hi:g} QPS {verdict} ({hi / lo - 1:.1%} above)"
        if status == "not_converged":
            return (f"peak.max_probes={self.settings.max_probes} ran out before peak.precision="
                    f"{self.settings.precision:g}: highest VALID {lo:g} QPS{how}, {gap}")
        return f"highest VALID rate {lo:g} QPS{how}; {gap}"

    def _outcome(self, status: Status, lo: float | None, hi: float | None, message: str,
                 confirmed: bool | None = None) -> Outcome:
        return Outcome(status, lo, hi, tuple(self.probes), message, confirmed)


def failed_outcome(probes: list[Probe], message: str) -> Outcome:
    """The outcome of a search that a run ended (SUT errors, bad input, Ctrl-C)."""
    invalid = [p.qps for p in probes if not p.accepted]
    return Outcome("failed", None, min(invalid) if invalid else None, tuple(probes), message)
