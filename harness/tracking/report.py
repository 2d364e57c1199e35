"""Charts and a single-file HTML report of compared runs (matplotlib, imported only here).

Only what the runs can show is drawn, and nothing that could mislead:

- ``throughput_vs_latency.png``: tokens/s against TTFT, TPOT and latency p99, one point per run,
  marked by the harness's verdict (VALID, BEHIND, INVALID). Lines join only the runs of one
  **sweep**: runs whose configuration is the same except one numeric key (preferably
  ``scenario.target_qps``), in order of that key's value; anything else stays a lone point.
- ``latency_vs_target_qps.png``: TTFT/TPOT p99 against the target QPS with the latency limits,
  only when the runs hold a sweep of ``scenario.target_qps`` (a QPS sweep, a ``harness-peak`` search).
- ``throughput.png`` and ``latency_percentiles.png``: bars of the runs that have the figure (an
  Offline run has no TTFT/TPOT bars, a FAILED run no figures at all).

``report.html`` embeds them with what was compared (round, date, command, baseline) and the
comparison table, so one file can be mailed or logged to MLflow.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.tracking.view import RunView

LATENCIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("latency", "latency"))
TARGET_QPS = "scenario.target_qps"
# The harness's verdict (MLflow tag `validity`, harness.verdict): colour and marker.
VERDICT_STYLE = {"VALID": ("tab:green", "o"), "BEHIND": ("tab:orange", "^"), "INVALID": ("tab:red", "X"),
                 "FAILED": ("black", "s")}
OTHER_STYLE = ("0.5", "D")  # no verdict (an accuracy-only run, or an older run)
PERCENTILE_COLORS = (("p50", "#9ecae1"), ("p90", "#4292c6"), ("p99", "#08519c"))  # not the verdicts' colours
# Sweep lines: grey for one, else colours that are not the verdicts'.
LINE_COLORS = ("tab:blue", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "0.6")
LABEL_SPACING_PX = 14  # point labels closer than this to an earlier one are left out


@dataclass(frozen=True)
class Sweep:
    """Runs with the same configuration except ``key``, in order of its value."""

    key: str
    runs: tuple[RunView, ...]
    label: str  # what sets this sweep apart from the others ("" when it is the only one)


@dataclass(frozen=True)
class Context:
    """What report.html says was compared: a title and (label, text) facts such as the round, the
    date, the command and the baseline."""

    title: str
    facts: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def verdict(run: RunView) -> str:
    return run.tags.get("validity", "none")


def style(run: RunView) -> tuple[str, str]:
    return VERDICT_STYLE.get(verdict(run), OTHER_STYLE)


def number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:  # "null" or not a number
        return None


def find_sweeps(runs: Sequence[RunView]) -> list[Sweep]:
    """The sweeps among ``runs``: for the first numeric key (``scenario.target_qps`` first) along which
    some runs differ while every other param is equal, each such group of two or more values.

    A round over scenarios (Offline and Server) has no sweep: ``scenario.name`` is not a number, so
    an Offline run is never joined to a Server run.
    """
    keys = sorted({k for r in runs for k in r.params})
    differing = [k for k in keys if len({r.params.get(k) for r in runs}) > 1]
    numeric = [k for k in differing if all(number(r.params.get(k)) is not None for r in runs)]
    for key in sorted(numeric, key=lambda k: (k != TARGET_QPS, k)):
        others = [k for k in differing if k != key]
        groups: dict[tuple, list[RunView]] = {}
        for run in runs:
            groups.setdefault(tuple(run.params.get(k) for k in others), []).append(run)
        varying = [i for i in range(len(others)) if len({fixed[i] for fixed in groups}) > 1]
        found = []
        for fixed, members in groups.items():
            if len({number(r.params[key]) for r in members}) < 2:
                continue
            ordered = tuple(sorted(members, key=lambda r: number(r.params[key])))
            found.append(Sweep(key, ordered, ", ".join(f"{others[i]}={fixed[i]}" for i in varying)))
        if len(found) == 1:  # the only line needs no name
            found = [Sweep(key, found[0].runs, "")]
        if found:
            return found
    return []


def write_report(out: Path, runs: Sequence[RunView], table: str, verdict_text: str = "",
                 baseline: RunView | None = None, context: Context | None = None) -> list[Path]:
    """Write the charts that have something to show and ``report.html`` into ``out``; returns the files."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    out.mkdir(parents=True, exist_ok=True)
    sweeps = find_sweeps(runs)
    charts = [c for c in (_throughput_vs_latency(out, runs, sweeps), _latency_vs_target_qps(out, runs, sweeps),
                          _throughput_bars(out, runs), _latency_percentiles(out, runs)) if c is not None]
    context = context or Context(f"harness-compare: {len(runs)} runs")
    facts = list(context.facts)
    if baseline is not None and not any(label == "baseline" for label, _ in facts):
        facts.append(("baseline", baseline.label))
    blank = [r.label for r in runs if not any(m in r.metrics for m in ("tokens_per_second", "samples_per_second"))]
    if blank:
        facts.append(("not charted", ", ".join(blank) + " (no throughput figures: FAILED, or no performance test)"))
    if sweeps:
        facts.append(("sweep", f"{sweeps[0].key} ({len(sweeps)} line{'s' if len(sweeps) > 1 else ''}; "
                               "lines join only runs that differ in it alone)"))
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    images = "\n".join(f'<h2>{html.escape(c.stem.replace("_", " "))}</h2>\n'
                       f'<img alt="{c.stem}" src="data:image/png;base64,{base64.b64encode(c.read_bytes()).decode()}">'
                       for c in charts)
    page = out / "report.html"
    page.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(context.title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}
img{{max-width:100%}} th{{text-align:left;padding-right:1em;vertical-align:top}}</style></head>
<body><h1>{html.escape(context.title)}</h1>
<table>{rows}</table>
<pre>{html.escape(table)}</pre>
{f"<pre>{html.escape(verdict_text)}</pre>" if verdict_text else ""}
{images}
</body></html>
""", encoding="utf-8")
    return [*charts, page]


def _points(runs: Sequence[RunView], *names: str) -> list[tuple[RunView, list[float]]]:
    return [(r, [r.metrics[n] for n in names]) for r in runs if all(n in r.metrics for n in names)]


def _line_color(sweeps: Sequence[Sweep], i: int) -> str:
    return "0.6" if len(sweeps) == 1 else LINE_COLORS[i % len(LINE_COLORS)]


def _short(value: str) -> str:
    v = number(value)
    return f"{v:g}" if v is not None else value


def _scatter_by_verdict(ax, points: list[tuple[RunView, float, float]]) -> None:
    """One scatter per verdict, so the legend names each marker once."""
    for name in sorted({verdict(r) for r, _, _ in points}):
        chosen = [(x, y) for r, x, y in points if verdict(r) == name]
        color, marker = VERDICT_STYLE.get(name, OTHER_STYLE)
        ax.scatter([x for x, _ in chosen], [y for _, y in chosen], color=color, marker=marker, s=40, zorder=3,
                   label=name if name != "none" else "no verdict")


def _label_points(ax, labelled: list[tuple[str, float, float]]) -> None:
    """Text beside each point, leaving out labels that would overlap one already placed."""
    ax.figure.canvas.draw()  # the axes' final limits, so display coordinates are right
    placed: list[tuple[float, float]] = []
    for text, x, y in labelled:
        px, py = ax.transData.transform((x, y))
        if any(abs(px - qx) < 3 * LABEL_SPACING_PX and abs(py - qy) < LABEL_SPACING_PX for qx, qy in placed):
            continue
        placed.append((px, py))
        ax.annotate(text, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points", zorder=4)


def _throughput_vs_latency(out: Path, runs: Sequence[RunView], sweeps: list[Sweep]) -> Path | None:
    import matplotlib.pyplot as plt

    panels = [(f"{key}_p99_ms", f"{label} p99 (ms)") for key, label in LATENCIES
              if _points(runs, "tokens_per_second", f"{key}_p99_ms")]
    if not panels:
        return None
    in_sweep = {r.run_id: s for s in sweeps for r in s.runs}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (metric, xlabel) in zip(axes[0], panels, strict=True):
        for i, sweep in enumerate(sweeps):  # lines only within a sweep, in order of the swept value
            line = [(r.metrics[metric], r.metrics["tokens_per_second"]) for r in sweep.runs
                    if metric in r.metrics and "tokens_per_second" in r.metrics]
            if len(line) >= 2:
                ax.plot([x for x, _ in line], [y for _, y in line], "-", color=_line_color(sweeps, i), zorder=2,
                        label=f"{sweep.key} sweep" + (f" ({sweep.label})" if sweep.label else ""))
        points = [(r, v[1], v[0]) for r, v in _points(runs, "tokens_per_second", metric)]
        _scatter_by_verdict(ax, points)
        # From zero, with room above the highest point: small differences must not look large.
        ax.set_xlim(0, 1.08 * max(x for _, x, _ in points) or 1)
        ax.set_ylim(0, 1.08 * max(y for _, _, y in points) or 1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("tokens/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        _label_points(ax, [(_short(r.params[in_sweep[r.run_id].key]) if r.run_id in in_sweep else r.name, x, y)
                           for r, x, y in points])
    fig.suptitle("throughput vs tail latency" + (f" (points labelled by {sweeps[0].key})" if sweeps else ""))
    return _save(fig, out / "throughput_vs_latency.png")


def _limit(run: RunView, key: str) -> float | None:
    """The run's p99 limit for ``key`` (ttft/tpot) in ms, from its params: the scenario override, else
    the benchmark's limits for the scenario's latency class (server, interactive)."""
    override = number(run.params.get(f"scenario.{key}_ms"))
    if override is not None:
        return override
    kind = run.params.get("scenario.latency_limits")
    return number(run.params.get(f"benchmark.latency.{kind}.{key}_ms")) if kind else None


def _latency_vs_target_qps(out: Path, runs: Sequence[RunView], sweeps: list[Sweep]) -> Path | None:
    """TTFT/TPOT p99 against the target QPS, limits as lines, markers by verdict: the load curve of a
    QPS sweep or peak search. Only when the runs hold a sweep of ``scenario.target_qps``; runs outside
    it (a peak search's full-length confirmation) are points without a line."""
    import matplotlib.pyplot as plt

    sweeps = [s for s in sweeps if s.key == TARGET_QPS]
    panels = [(key, label) for key, label in LATENCIES[:2]
              if any(sum(f"{key}_p99_ms" in r.metrics for r in s.runs) >= 2 for s in sweeps)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        metric = f"{key}_p99_ms"
        for i, sweep in enumerate(sweeps):
            line = [(number(r.params[TARGET_QPS]), r.metrics[metric]) for r in sweep.runs if metric in r.metrics]
            ax.plot([q for q, _ in line], [v for _, v in line], "-", color=_line_color(sweeps, i), zorder=2,
                    label=sweep.label or None)
        points = [(r, number(r.params.get(TARGET_QPS)), r.metrics[metric]) for r in runs
                  if metric in r.metrics and number(r.params.get(TARGET_QPS)) is not None]
        _scatter_by_verdict(ax, points)
        values = [v for _, _, v in points]
        top = max(values)
        limits = {_limit(r, key) for r, _, _ in points}
        if len(limits) == 1 and None not in limits:  # one limit for every run: draw it, or say it is far above
            limit = limits.pop()
            if limit <= 3 * top:
                ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1, label=f"limit {limit:g} ms")
                top = max(top, limit)
            else:
                ax.text(0.02, 0.97, f"limit {limit:g} ms: far above", transform=ax.transAxes, fontsize=8,
                        va="top", color="tab:red")
        if min(values) > 0 and max(values) / min(values) > 20:  # TTFT explodes above capacity
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.08 * top or 1)  # from zero: noise of 0.1 ms must not look like a trend
        ax.set_xlabel("target QPS")
        ax.set_ylabel(f"{label} p99 (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("tail latency vs target QPS")
    return _save(fig, out / "latency_vs_target_qps.png")


def _bars_figure(n_panels: int, widest: int):
    import matplotlib.pyplot as plt

    return plt.subplots(1, n_panels, figsize=(max(6.0, 0.9 * widest) * n_panels, 4.5), squeeze=False)


def _throughput_bars(out: Path, runs: Sequence[RunView]) -> Path | None:
    panels = [(m, label, [r for r in runs if m in r.metrics])
              for m, label in (("tokens_per_second", "tokens/s"), ("samples_per_second", "samples/s"))]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    fig, axes = _bars_figure(len(panels), max(len(p[2]) for p in panels))
    for ax, (metric, label, shown) in zip(axes[0], panels, strict=True):
        for name in sorted({verdict(r) for r in shown}):  # one bar series per verdict: a legend entry each
            xs = [x for x, r in enumerate(shown) if verdict(r) == name]
            ax.bar(xs, [shown[x].metrics[metric] for x in xs], color=VERDICT_STYLE.get(name, OTHER_STYLE)[0],
                   label=name if name != "none" else "no verdict")
        ax.set_xlim(-0.6, max(len(shown), 3) - 0.4)
        ax.legend(fontsize=7)
        ax.set_xticks(range(len(shown)), [r.name for r in shown], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("throughput per run")
    return _save(fig, out / "throughput.png")


def _latency_percentiles(out: Path, runs: Sequence[RunView]) -> Path | None:
    panels = [(key, label, [r for r in runs if f"{key}_p99_ms" in r.metrics]) for key, label in LATENCIES]
    panels = [p for p in panels if p[2]]  # Offline runs have no TTFT/TPOT: no empty bars for them
    if not panels:
        return None
    fig, axes = _bars_figure(len(panels), max(len(p[2]) for p in panels))
    width = 0.27
    for ax, (key, label, shown) in zip(axes[0], panels, strict=True):
        for i, (pct, color) in enumerate(PERCENTILE_COLORS):
            xs = [x for x, r in enumerate(shown) if f"{key}_{pct}_ms" in r.metrics]
            ax.bar([x + (i - 1) * width for x in xs], [shown[x].metrics[f"{key}_{pct}_ms"] for x in xs], width,
                   label=pct, color=color)
        ax.set_xlim(-0.6, max(len(shown), 3) - 0.4)  # one run's bars keep their width
        ax.set_xticks(range(len(shown)), [r.name for r in shown], rotation=30, ha="right", fontsize=7)
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
