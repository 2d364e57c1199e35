"""Does the bridge limit the measurement? LoadGen Server, null SUT through the bridge vs a bare SUT.

At each target QPS, side by side in one invocation, LoadGen's Server scenario (model key
``llama3_1-8b``, performance mode, token latencies on as mlperf.conf says) runs against:

- ``bridge``: the ``null`` SUT through :func:`harness.loadgen.bridge.run_test`, so all that is
  measured is the bridge's own cost (queueing, dispatch thread, completion bookkeeping);
- ``bare``: :func:`harness.loadgen.bridge.run_bare_test`, whose issue callback completes every
  sample inline on LoadGen's thread: the floor set by LoadGen and Python themselves.

Every number comes from LoadGen's detail log. Goals: the bridge's highest VALID QPS is at least
half the bare one (ratio >= 0.5), and the bridge adds under 1 ms to p99 latency at 1,000 QPS.

Validity is LoadGen's own: for this key target_latency is 0, so only the TTFT (2 s) and TPOT
(100 ms) p99 limits apply, and both SUTs' TPOT is near 0. A short run therefore stays VALID while
the backlog of a SUT that fell behind stays under 2 s of TTFT; the table marks such steps. Each
test runs in its own process (LoadGen reads mlperf.conf only once per process). "Highest valid
QPS" counts a step only when LoadGen says VALID *and* the SUT kept up (completed at least 95% of
the scheduled samples/s). The p99 comparison at 1,000 QPS is repeated (``--repeats``) and the
medians compared, since a single p99 on a small, shared machine moves by a millisecond or more.

    python -m harness.bench.bridge_overhead --qps 250,500,1000,2000 --duration-s 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.config import RunOptions
from harness.loadgen.logs import DetailLog, parse_detail_log, performance_result
from harness.loadgen.process import run_in_process
from harness.sut.base import Sample
from harness.sut.fakes import NullParams, NullSUT
from harness.sut.tokenizer import WordTokenizer

log = logging.getLogger("harness.bench.bridge_overhead")

MODEL_KEY = "llama3_1-8b"
N_SAMPLES = 64
MIN_QUERY_COUNT = 500
TTFT_MS, TPOT_MS = 2000, 100
GOAL_RATIO = 0.5
GOAL_ADDED_P99_MS = 1.0
P99_AT_QPS = 1000.0
BEHIND = 0.95  # completed/scheduled below this: the SUT fell behind LoadGen's schedule
DEFAULT_QPS = "250,500,1000,2000,4000,8000,16000,32000,64000,128000,256000"
VARIANTS = ("bridge", "bare")


@dataclass(frozen=True)
class Step:
    """One variant at one target QPS, as LoadGen reported it."""

    valid: bool
    qps: float | None  # completed samples/s
    scheduled: float | None  # scheduled samples/s
    p99_ms: float | None
    ttft_p99_ms: float | None
    reasons: tuple[str, ...]


def user_conf(qps: float, duration_s: float) -> str:
    """Quick Server settings for one step (LoadGen reads ms, integers)."""
    values = {"target_qps": f"{qps:g}", "min_duration": round(duration_s * 1000), "min_query_count": MIN_QUERY_COUNT,
              "performance_sample_count_override": N_SAMPLES, "ttft_latency": TTFT_MS, "tpot_latency": TPOT_MS}
    return "".join(f"{MODEL_KEY}.Server.{k} = {v}\n" for k, v in values.items())


def make_samples(n: int) -> list[Sample]:
    texts = [f"Sample {i} is a short article about the number {i}." for i in range(n)]
    return [Sample(index=i, prompt=t, text=t) for i, t in enumerate(texts)]


def to_step(detail: DetailLog) -> Step:
    result = performance_result(detail)
    return Step(valid=result.valid, qps=result.samples_per_second,
                scheduled=detail.get("result_scheduled_samples_per_sec"),
                p99_ms=result.latency_ms.p99 if result.latency_ms else None,
                ttft_p99_ms=result.ttft_ms.p99 if result.ttft_ms else None,
                reasons=result.invalid_reasons)


def run_variant(variant: str, conf: Path, outdir: Path) -> None:
    """One LoadGen test; runs in its own process."""
    from harness.loadgen.bridge import run_bare_test, run_test

    samples = make_samples(N_SAMPLES)
    if variant == "bridge":
        sut = NullSUT(NullParams(), WordTokenizer([s.text for s in samples]))
        try:
            run_test(sut, samples, scenario="Server", mode="performance", model_key=MODEL_KEY, user_conf=conf,
                     outdir=outdir, options=RunOptions())
        finally:
            sut.close()
    else:
        run_bare_test(len(samples), model_key=MODEL_KEY, user_conf=conf, outdir=outdir)


def run_step(variant: str, qps: float, duration_s: float, outdir: Path) -> Step:
    outdir.mkdir(parents=True, exist_ok=True)
    conf = outdir / "user.conf"
    conf.write_text(user_conf(qps, duration_s))
    run_in_process(run_variant, variant, conf, outdir, log_file=outdir / "test.log")
    step = to_step(parse_detail_log(outdir / "mlperf_log_detail.txt"))
    log.info("%-6s %8g QPS: %s, %s samples/s, p99 %s ms", variant, qps, "VALID" if step.valid else "INVALID",
             _num(step.qps, 1), _num(step.p99_ms, 3))
    return step


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _valid(step: Step) -> str:
    return "yes" if step.valid else "NO"


def _behind(step: Step) -> bool:
    return step.qps is not None and bool(step.scheduled) and step.qps < BEHIND * step.scheduled


def _achieved(step: Step) -> str:
    return _num(step.qps, 1) + ("*" if _behind(step) else "")


def highest_valid(qps_list: list[float], steps: dict[float, Step]) -> float | None:
    """The highest target QPS that was VALID and actually sustained."""
    valid = [q for q in qps_list if steps[q].valid and not _behind(steps[q])]
    return max(valid) if valid else None


def render(qps_list: list[float], results: dict[str, dict[float, Step]], p99s: dict[str, list[float]],
           outdir: Path) -> str:
    bridge, bare = results["bridge"], results["bare"]
    header = ("target QPS", "bridge valid", "achieved", "p99 ms", "TTFT p99 ms",
              "bare valid", "achieved", "p99 ms", "TTFT p99 ms")
    rows = [header]
    for q in qps_list:
        rows.append((f"{q:g}",
                     *(v for s in (bridge[q], bare[q])
                       for v in (_valid(s), _achieved(s), _num(s.p99_ms, 3), _num(s.ttft_p99_ms, 3)))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))

    if any(_behind(results[name][q]) for q in qps_list for name in VARIANTS):
        lines.append(f"* completed < {BEHIND:.0%} of scheduled samples/s: fell behind LoadGen's schedule (a short run "
                     f"stays VALID while the backlog's TTFT is under {TTFT_MS} ms)")

    invalid = [(name, q, results[name][q]) for q in qps_list for name in VARIANTS if not results[name][q].valid]
    if invalid:
        lines += ["", "Invalid runs (LoadGen's reasons):"]
        lines += [f"  {name} @ {q:g} QPS: {'; '.join(s.reasons) or 'no reason logged'}" for name, q, s in invalid]

    top = max(qps_list)
    best = {name: highest_valid(qps_list, results[name]) for name in VARIANTS}
    lines.append("")
    for name in VARIANTS:
        b = best[name]
        capped = " (valid at the highest QPS tried: the real limit is higher)" if b == top else ""
        lines.append(f"Highest valid QPS, {name}: {'none' if b is None else f'{b:g}'}{capped}")

    peak = {name: max((s.qps or 0.0 for s in results[name].values()), default=0.0) for name in VARIANTS}
    lines.append(f"Peak completed samples/s: bridge {peak['bridge']:.1f}, bare {peak['bare']:.1f} "
                 f"(ratio {_num(peak['bridge'] / peak['bare'] if peak['bare'] else None, 2)}; for information)")

    ratio = best["bridge"] / best["bare"] if best["bridge"] and best["bare"] else None
    ratio_note = " (bare capped by the QPS list: an upper bound)" if ratio is not None and best["bare"] == top \
        and best["bridge"] != top else ""
    ratio_ok = ratio is not None and ratio >= GOAL_RATIO
    lines.append(f"Ratio bridge/bare: {_num(ratio, 2)}{ratio_note}"
                 f"  goal >= {GOAL_RATIO}: {'met' if ratio_ok else 'NOT met'}")

    added = None
    if p99s["bridge"] and p99s["bare"]:
        median = {name: statistics.median(p99s[name]) for name in VARIANTS}
        added = median["bridge"] - median["bare"]
        for name in VARIANTS:
            runs = ", ".join(f"{v:.3f}" for v in p99s[name])
            lines.append(f"p99 at {P99_AT_QPS:g} QPS, {name}: median {median[name]:.3f} ms over {len(p99s[name])} "
                         f"runs ({runs})")
    added_ok = added is not None and added < GOAL_ADDED_P99_MS
    lines.append(f"Bridge's added p99 latency at {P99_AT_QPS:g} QPS (difference of medians): {_num(added, 3)} ms"
                 f"  goal < {GOAL_ADDED_P99_MS:g} ms: {'met' if added_ok else 'NOT met'}")
    lines.append(f"Goals: {'met' if ratio_ok and added_ok else 'NOT met'}   (LoadGen logs: {outdir})")
    return "\n".join(lines) + "\n"


def _qps_list(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from exc
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError("target QPS values must be positive")
    return values


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.bench.bridge_overhead",
        description="Run LoadGen's Server scenario (llama3_1-8b, performance mode) at increasing target QPS "
                    "with the null SUT through the bridge and with a bare inline SUT, and compare their highest "
                    f"VALID QPS (goal: ratio >= {GOAL_RATIO}) and p99 latency at {P99_AT_QPS:g} QPS "
                    f"(goal: the bridge adds < {GOAL_ADDED_P99_MS:g} ms).")
    parser.add_argument("--qps", type=_qps_list, default=DEFAULT_QPS,
                        help="comma list of target QPS to try (run in increasing order); the sweep stops after a QPS "
                             "at which both variants are INVALID (default: %(default)s)")
    parser.add_argument("--duration-s", type=_positive, default=3.0,
                        help="LoadGen min_duration of each test in seconds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help=f"runs of each variant at {P99_AT_QPS:g} QPS for the p99 comparison "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the LoadGen logs, one folder per variant and QPS "
                             "(default: a new temporary directory, kept)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    outdir: Path = args.out or Path(tempfile.mkdtemp(prefix="bridge-overhead-"))
    log.info("logs in %s; QPS %s, %gs each", outdir, ", ".join(f"{q:g}" for q in args.qps), args.duration_s)

    results: dict[str, dict[float, Step]] = {name: {} for name in VARIANTS}
    for q in args.qps:
        for name in VARIANTS:
            results[name][q] = run_step(name, q, args.duration_s, outdir / f"{name}-{q:g}qps")
        if not any(results[name][q].valid for name in VARIANTS):
            log.info("both INVALID at %g QPS: higher target QPS skipped", q)
            break
    qps_list = [q for q in args.qps if q in results["bridge"]]
    # The p99 goal at 1,000 QPS: alternate the variants so drifting machine noise hits both alike.
    p99s: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(args.repeats):
        for name in VARIANTS:
            step = run_step(name, P99_AT_QPS, args.duration_s, outdir / f"{name}-{P99_AT_QPS:g}qps-repeat{i}")
            if step.p99_ms is not None:
                p99s[name].append(step.p99_ms)
    sys.stdout.write(render(qps_list, results, p99s, outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
