"""Charts and a single-file HTML report of compared runs (matplotlib, imported only here).

Three PNGs: throughput against TTFT/TPOT/latency p99 (one point per run, so a sweep shows its
load curve), per-run throughput bars, and latency percentiles; a fourth, TTFT/TPOT p99 against
``scenario.target_qps`` with the latency limits, when the runs differ in target QPS (a QPS sweep or
a ``harness-peak`` search). ``report.html`` embeds them with the comparison table, so one file can
be mailed or logged to MLflow.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.compare import RunView

LATENCIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("latency", "latency"))
TARGET_QPS = "scenario.target_qps"
VALIDITY_COLORS = {"VALID": "tab:green", "BEHIND": "tab:orange", "INVALID": "tab:red", "FAILED": "black"}


def write_report(out: Path, runs: Sequence[RunView], table: str, verdict: str = "",
                 baseline: RunView | None = None) -> list[Path]:
    """Write the charts that have data and ``report.html`` into ``out``; returns the files."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    out.mkdir(parents=True, exist_ok=True)
    charts = [c for c in (_latency_vs_target_qps(out, runs), _throughput_vs_latency(out, runs),
                          _throughput_bars(out, runs), _latency_percentiles(out, runs)) if c is not None]
    page = out / "report.html"
    images = "\n".join(f'<h2>{html.escape(c.stem.replace("_", " "))}</h2>\n'
                       f'<img alt="{c.stem}" src="data:image/png;base64,{base64.b64encode(c.read_bytes()).decode()}">'
                       for c in charts)
    title = f"harness-compare: {len(runs)} runs" + (f", baseline {baseline.label}" if baseline else "")
    page.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}
img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<pre>{html.escape(table)}</pre>
{f"<pre>{html.escape(verdict)}</pre>" if verdict else ""}
{images}
</body></html>
""", encoding="utf-8")
    return [*charts, page]


def _points(runs: Sequence[RunView], *names: str) -> list[tuple[RunView, list[float]]]:
    return [(r, [r.metrics[n] for n in names]) for r in runs if all(n in r.metrics for n in names)]


def _throughput_vs_latency(out: Path, runs: Sequence[RunView]) -> Path | None:
    import matplotlib.pyplot as plt

    panels = [(f"{key}_p99_ms", f"{label} p99 (ms)") for key, label in LATENCIES
              if _points(runs, "tokens_per_second", f"{key}_p99_ms")]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (metric, xlabel) in zip(axes[0], panels, strict=True):
        # In order of throughput: a sweep of load levels draws its load curve.
        points = sorted(_points(runs, "tokens_per_second", metric), key=lambda p: p[1][0])
        ax.plot([p[1][1] for p in points], [p[1][0] for p in points], "o-")
        for run, (tps, lat) in points:
            ax.annotate(run.name, (lat, tps), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("tokens/s")
        ax.grid(alpha=0.3)
    fig.suptitle("throughput vs tail latency")
    return _save(fig, out / "throughput_vs_latency.png")


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:  # "null" or not a number
        return None


def _limit(run: RunView, key: str) -> float | None:
    """The run's p99 limit for ``key`` (ttft/tpot) in ms, from its params: the scenario override, else
    the benchmark's limits for the scenario's latency class (server, interactive)."""
    override = _number(run.params.get(f"scenario.{key}_ms"))
    if override is not None:
        return override
    kind = run.params.get("scenario.latency_limits")
    return _number(run.params.get(f"benchmark.latency.{kind}.{key}_ms")) if kind else None


def _latency_vs_target_qps(out: Path, runs: Sequence[RunView]) -> Path | None:
    """TTFT/TPOT p99 against the target QPS, limits as lines, VALID/INVALID markers: the load curve
    of a QPS sweep or peak search. Only when the runs differ in ``scenario.target_qps``."""
    import matplotlib.pyplot as plt

    qps = {r.run_id: _number(r.params.get(TARGET_QPS)) for r in runs}
    if len({q for q in qps.values() if q is not None}) < 2:
        return None
    panels = [(key, label) for key, label in LATENCIES[:2]
              if any(qps[r.run_id] is not None and f"{key}_p99_ms" in r.metrics for r in runs)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        points = sorted(((qps[r.run_id], r.metrics[f"{key}_p99_ms"], r) for r in runs
                         if qps[r.run_id] is not None and f"{key}_p99_ms" in r.metrics), key=lambda p: p[0])
        ax.plot([p[0] for p in points], [p[1] for p in points], "-", color="0.75", zorder=1)
        for validity in sorted({p[2].tags.get("validity", "none") for p in points}):
            chosen = [p for p in points if p[2].tags.get("validity", "none") == validity]
            ax.scatter([p[0] for p in chosen], [p[1] for p in chosen], zorder=2, label=validity,
                       color=VALIDITY_COLORS.get(validity, "0.4"), marker="o" if validity == "VALID" else "x")
        limits = {_limit(p[2], key) for p in points}
        if len(limits) == 1 and None not in limits:  # one limit for every run: draw it
            limit = limits.pop()
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1, label=f"limit {limit:g} ms")
        values = [p[1] for p in points]
        if min(values) > 0 and max(values) / min(values) > 20:  # TTFT explodes above capacity
            ax.set_yscale("log")
        ax.set_xlabel("target QPS")
        ax.set_ylabel(f"{label} p99 (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("tail latency vs target QPS")
    return _save(fig, out / "latency_vs_target_qps.png")


def _throughput_bars(out: Path, runs: Sequence[RunView]) -> Path | None:
    import matplotlib.pyplot as plt

    panels = [(m, label) for m, label in (("tokens_per_second", "tokens/s"), ("samples_per_second", "samples/s"))
              if _points(runs, m)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6, 0.9 * len(runs)) * len(panels), 4.5), squeeze=False)
    for ax, (metric, label) in zip(axes[0], panels, strict=True):
        names = [r.name for r in runs]
        ax.bar(range(len(runs)), [r.metrics.get(metric, 0.0) for r in runs])
        ax.set_xticks(range(len(runs)), names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("throughput per run")
    return _save(fig, out / "throughput.png")


def _latency_percentiles(out: Path, runs: Sequence[RunView]) -> Path | None:
    import matplotlib.pyplot as plt

    panels = [(key, label) for key, label in LATENCIES if _points(runs, f"{key}_p99_ms")]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6, 0.9 * len(runs)) * len(panels), 4.5), squeeze=False)
    width = 0.27
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        for i, pct in enumerate(("p50", "p90", "p99")):
            ax.bar([x + (i - 1) * width for x in range(len(runs))],
                   [r.metrics.get(f"{key}_{pct}_ms", 0.0) for r in runs], width, label=pct)
        ax.set_xticks(range(len(runs)), [r.name for r in runs], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"{label} (ms)")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("latency percentiles")
    return _save(fig, out / "latency_percentiles.png")


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
