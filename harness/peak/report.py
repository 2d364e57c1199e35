"""What a peak search writes: progress lines, the final table, ``peak.json`` and ``peak.png``.

``peak.png`` plots TTFT p99 and TPOT p99 against the target QPS of every probe, with the
scenario's limits as horizontal lines and markers by the harness's verdict (VALID, BEHIND,
INVALID, FAILED; squares for confirmations), so the knee of the load
curve and where the limits cut it are visible at a glance (matplotlib, Agg backend: files only).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from harness.config import HarnessConfig, LatencyLimits, to_dict
from harness.peak.search import Outcome, Probe
from harness.peak.settings import PeakConfig
from harness.redact import Redactor

PEAK_JSON = "peak.json"
PEAK_PNG = "peak.png"
PEAK_TABLE = "peak_table.txt"


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f} ms"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def progress_line(probe: Probe, settings: PeakConfig, ordinal: int) -> str:
    """``probe 3/12   qps=12.50     INVALID  TTFT p99 2481.2 ms > limit 2000 ms  (completed 11.90/s, 8.1 s)``.

    ``ordinal`` counts the runs of the probe's step: probes out of ``max_probes``, confirmations
    out of ``confirm_attempts``.
    """
    total = settings.max_probes if probe.step == "probe" else settings.confirm_attempts
    extra = []
    if probe.completed_qps is not None:
        extra.append(f"completed {probe.completed_qps:,.2f}/s")
    if probe.seconds is not None:
        extra.append(f"{probe.seconds:.1f} s")
    tail = f"  ({', '.join(extra)})" if extra else ""
    return f"{f'{probe.step} {ordinal}/{total}':<13} qps={probe.qps:<9.2f} {probe.verdict:<8} {probe.limiting}{tail}"


def table(outcome: Outcome, config: HarnessConfig, limits: LatencyLimits | None, search_dir: Path,
          seconds: float | None = None) -> str:
    """Every probe, then the answer, for the terminal and ``peak_table.txt``."""
    head = (f"peak search · {config.scenario.name} · {config.benchmark.name} ({config.benchmark.model_key}) · "
            f"sut={config.sut.name}")
    if limits is not None:
        head += f" · limits TTFT p99 {limits.ttft_ms:g} ms, TPOT p99 {limits.tpot_ms:g} ms"
    header = (f"{'#':>3}  {'step':<8}{'target QPS':>11}  {'result':<8}{'completed/s':>12}{'TTFT p99':>12}"
              f"{'TPOT p99':>11}{'time':>8}  limiting")
    rows = [head, header]
    for p in outcome.probes:
        rows.append(f"{p.n:>3}  {p.step:<8}{p.qps:>11.2f}  {p.verdict:<8}{_num(p.completed_qps, 2):>12}"
                    f"{_ms(p.ttft_p99_ms):>12}{_ms(p.tpot_p99_ms, 2):>11}"
                    f"{'-' if p.seconds is None else f'{p.seconds:.1f}s':>8}  {p.limiting}")
    answer = "-" if outcome.peak_qps is None else f"{outcome.peak_qps:.2f} QPS"
    rows.append(f"peak        {answer}: {outcome.message}" if outcome.ok else f"peak        none: {outcome.message}")
    at_peak = peak_probe(outcome)
    if at_peak is not None:
        rows.append(f"at peak     completed {_num(at_peak.completed_qps, 2)} samples/s, "
                    f"{_num(at_peak.tokens_per_second, 0)} tokens/s; TTFT p99 {_ms(at_peak.ttft_p99_ms)}, "
                    f"TPOT p99 {_ms(at_peak.tpot_p99_ms, 2)} ({at_peak.step} {at_peak.n})")
    n_probe = sum(p.step == "probe" for p in outcome.probes)
    n_confirm = len(outcome.probes) - n_probe
    took = f", {seconds:.0f} s" if seconds is not None else ""
    rows.append(f"runs        {n_probe} probes + {n_confirm} confirmation{'s' if n_confirm != 1 else ''}{took}")
    rows.append(f"output      {search_dir}")
    return "\n".join(rows)


def peak_probe(outcome: Outcome) -> Probe | None:
    """The run that stands for the answer: the VALID confirmation at the peak, else the probe there."""
    if outcome.peak_qps is None:
        return None
    at = [p for p in outcome.probes if p.accepted and p.qps == outcome.peak_qps]
    confirmed = [p for p in at if p.step == "confirm"]
    return (confirmed or at or [None])[-1]


def to_json(outcome: Outcome, config: HarnessConfig, settings: PeakConfig, limits: LatencyLimits | None,
            search_dir: Path, seconds: float | None = None) -> dict[str, Any]:
    """``peak.json``: the answer, how it was reached, and every probe; secrets masked (a password in
    ``sut.base_url``, a key a server echoed into a probe's error)."""
    at_peak = peak_probe(outcome)
    plain = to_dict(config)
    return Redactor.collect(plain).data({
        "status": outcome.status,
        "peak_qps": outcome.peak_qps,
        "confirmed": outcome.confirmed,
        "lowest_invalid_qps": outcome.lowest_invalid_qps,
        "precision": settings.precision,
        "achieved_precision": outcome.achieved_precision,
        "message": outcome.message,
        "at_peak": dataclasses.asdict(at_peak) if at_peak is not None else None,
        "scenario": config.scenario.name,
        "benchmark": config.benchmark.name,
        "model_key": config.benchmark.model_key,
        "sut": config.sut.name,
        "official": config.benchmark.official,
        "latency_limits": dataclasses.asdict(limits) if limits is not None else None,
        "settings": dataclasses.asdict(settings),
        "probes": [dataclasses.asdict(p) for p in outcome.probes],
        "seconds": seconds,
        "output_dir": str(search_dir),
        "config": plain,
    })


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def metrics(outcome: Outcome) -> dict[str, float]:
    """The parent run's metrics: the answer and what it took (absent values left out)."""
    at_peak = peak_probe(outcome)
    values = {
        "peak_qps": outcome.peak_qps,
        "peak_lowest_invalid_qps": outcome.lowest_invalid_qps,
        "peak_achieved_precision": outcome.achieved_precision,
        "peak_probes": sum(p.step == "probe" for p in outcome.probes),
        "peak_confirmations": sum(p.step == "confirm" for p in outcome.probes),
        "peak_found": 1.0 if outcome.ok else 0.0,
    }
    if at_peak is not None:
        values |= {"samples_per_second": at_peak.completed_qps, "tokens_per_second": at_peak.tokens_per_second,
                   "ttft_p99_ms": at_peak.ttft_p99_ms, "tpot_p99_ms": at_peak.tpot_p99_ms}
    return {k: float(v) for k, v in values.items() if v is not None}


def plot(path: Path, outcome: Outcome, limits: LatencyLimits | None, title: str) -> Path | None:
    """QPS vs TTFT p99 and TPOT p99 with the limits; None when no probe has latencies."""
    panels = [("ttft_p99_ms", "TTFT p99 (ms)", limits.ttft_ms if limits else None),
              ("tpot_p99_ms", "TPOT p99 (ms)", limits.tpot_ms if limits else None)]
    panels = [p for p in panels if any(getattr(probe, p[0]) is not None for probe in outcome.probes)]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4.5), squeeze=False)
    for ax, (attr, label, limit) in zip(axes[0], panels, strict=True):
        points = sorted((p for p in outcome.probes if getattr(p, attr) is not None), key=lambda p: p.qps)
        searched = [p for p in points if p.step == "probe"]
        ax.plot([p.qps for p in searched], [getattr(p, attr) for p in searched], "-", color="0.7", zorder=1)
        for step, marker in (("probe", "o"), ("confirm", "s")):
            for verdict, color in (("VALID", "tab:green"), ("BEHIND", "tab:orange"), ("INVALID", "tab:red"),
                                   ("FAILED", "black")):
                chosen = [p for p in points if p.step == step and p.verdict == verdict]
                if chosen:
                    ax.scatter([p.qps for p in chosen], [getattr(p, attr) for p in chosen], marker=marker,
                               color=color, zorder=2, s=36 if step == "probe" else 60, label=f"{step} {verdict}")
        if limit is not None:
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1, label=f"limit {limit:g} ms")
        if outcome.peak_qps is not None:
            ax.axvline(outcome.peak_qps, color="tab:green", linestyle=":", linewidth=1,
                       label=f"peak {outcome.peak_qps:g} QPS")
        values = [getattr(p, attr) for p in points] + ([limit] if limit else [])
        if min(values) > 0 and max(values) / min(values) > 20:  # TTFT explodes above capacity
            ax.set_yscale("log")
        qps = [p.qps for p in points]
        if min(qps) > 0 and max(qps) / min(qps) > 20:
            ax.set_xscale("log")
        ax.set_xlabel("target QPS (Poisson arrivals)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
