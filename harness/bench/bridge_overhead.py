"""Does the bridge limit the measurement? LoadGen Server, null SUT through the bridge vs a bare SUT.

Side by side in one invocation, LoadGen's Server scenario (model key ``llama3_1-8b``, performance
mode, token latencies on as mlperf.conf says) runs against:

- ``bridge``: the ``null`` SUT through :func:`harness.loadgen.bridge.run_test`. The null SUT
  answers within ``submit`` and never blocks, so the bridge calls it on LoadGen's thread
  (``submit_inline``): what is measured is the bridge's own per-sample path (a TokenStream per
  sample, first-token and completion calls, bookkeeping, the watchdog thread);
- ``bare``: :func:`harness.loadgen.bridge.run_bare_test`, whose issue callback completes every
  sample inline on LoadGen's thread: the floor set by LoadGen and Python themselves.

Every number comes from LoadGen's detail log. A step *holds* when LoadGen says VALID and the SUT
kept up (completed at least 95% of the scheduled samples/s): for this key target_latency is 0,
so only the TTFT (2 s) and TPOT (100 ms) p99 limits apply, and a short run stays VALID while the
backlog of a SUT that fell behind stays under 2 s of TTFT.

1. Sweep: both variants at each ``--qps`` (alternating which goes first); a variant that still
   holds at the top of the list is taken further, doubling, until it fails, so its highest rate
   is never capped by the list.
2. Rounds (``--rounds``): each variant again on a finer grid (``--grid`` steps per doubling)
   around its highest holding rate of the sweep: from that rate up until a step fails, or down
   until one holds, the variants taking turns. A round's figure is the highest rate that held.
   Goal: the bridge's median at least half the bare one (ratio >= 0.5).
3. Added latency: p99 at 1,000 QPS over ``--repeats`` alternating runs of each, medians compared
   (goal: the bridge adds under 1 ms), since one p99 on a small, shared machine moves by a
   millisecond or more.

Each test runs in its own process (LoadGen reads mlperf.conf only once per process). The load
average is printed with the figures: the machine is shared.

    python -m harness.bench.bridge_overhead --rounds 3
    python -m harness.bench.bridge_overhead --profile 100000   # where the microseconds go (py-spy)
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import offline
from harness.bench import load_average
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
MAX_QPS = 16_384_000.0  # the sweep's doubling stops here: far above what LoadGen issues on one core
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
    log.info("%-6s %8g QPS: %s%s, %s samples/s, p99 %s ms", variant, qps, "VALID" if step.valid else "INVALID",
             " (behind)" if behind(step) else "", _num(step.qps, 1), _num(step.p99_ms, 3))
    return step


# -- the search, as pure functions of a step runner (unit-tested without LoadGen) ----------------
Runner = Callable[[str, float], Step]  # (variant, target QPS) -> what LoadGen reported


def behind(step: Step) -> bool:
    return step.qps is not None and bool(step.scheduled) and step.qps < BEHIND * step.scheduled


def holds(step: Step) -> bool:
    """VALID and sustained: the rate this variant can really serve."""
    return step.valid and not behind(step)


def sweep(qps_list: Sequence[float], runner: Runner, max_qps: float = MAX_QPS) -> dict[str, dict[float, Step]]:
    """Both variants at each rate, alternating which goes first, until neither holds; then each
    variant that held at the top of the list, doubling, until it fails (or ``max_qps``)."""
    results: dict[str, dict[float, Step]] = {name: {} for name in VARIANTS}
    for i, q in enumerate(qps_list):
        for name in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
            results[name][q] = runner(name, q)
        if not any(holds(results[name][q]) for name in VARIANTS):
            log.info("neither variant holds at %g QPS: higher target QPS skipped", q)
            break
    for name in VARIANTS:
        q = max(results[name])
        while holds(results[name][q]) and q * 2 <= max_qps:
            q *= 2
            results[name][q] = runner(name, q)
    return results


def bracket(steps: dict[float, Step]) -> tuple[float | None, float | None]:
    """The highest rate that held and the lowest rate above it that did not (None: none)."""
    held = [q for q, s in steps.items() if holds(s)]
    lo = max(held) if held else None
    failed = [q for q, s in steps.items() if not holds(s) and (lo is None or q > lo)]
    return lo, min(failed) if failed else None


def grid(lo: float, hi: float, points: int) -> list[float]:
    """The rates a round may try: ``points`` geometric steps per ``lo``..``hi`` interval, from
    ``lo`` / (hi / lo) (one interval below, in case ``lo`` fails this time) up to below ``hi``."""
    return [round(lo * (hi / lo) ** (k / points), 1) for k in range(-points, points)]


def walk(rates: list[float], start: int, runner: Callable[[float], Step]) -> Iterator[float | None]:
    """One variant's round, one step per ``next``: from ``rates[start]`` up while steps hold, or
    down while they fail; ends by yielding the highest rate that held (None: none did)."""
    k = start
    if holds(runner(rates[k])):
        while k + 1 < len(rates):
            yield None
            if not holds(runner(rates[k + 1])):
                break
            k += 1
        yield rates[k]
        return
    while k > 0:
        yield None
        k -= 1
        if holds(runner(rates[k])):
            yield rates[k]
            return
    yield None


def refine(grids: dict[str, list[float]], runner: Runner) -> dict[str, float | None]:
    """One round: each variant starts at its sweep's highest holding rate (the middle of its grid)
    and walks up its grid until a step fails, or down until one holds; the variants take turns,
    one step each, so drifting load hits both alike. The highest rate that held (None: none)."""
    walks = {name: walk(rates, len(rates) // 2, lambda q, name=name: runner(name, q))
             for name, rates in grids.items()}
    best: dict[str, float | None] = {name: None for name in grids}
    turn = 0
    while walks:
        names = list(walks) if turn % 2 == 0 else list(walks)[::-1]
        for name in names:
            try:
                got = next(walks[name])
            except StopIteration:
                del walks[name]
                continue
            if got is not None:
                best[name] = got
                del walks[name]
        turn += 1
    return best


# -- report ----------------------------------------------------------------------------------
def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _achieved(step: Step) -> str:
    return _num(step.qps, 1) + ("*" if behind(step) else "")


def capped_at_limit(steps: dict[float, Step], max_qps: float) -> bool:
    """The variant still held at the highest rate the sweep could try."""
    top = max(steps)
    return holds(steps[top]) and top * 2 > max_qps


def sweep_table(results: dict[str, dict[float, Step]]) -> list[str]:
    header = ("target QPS", *(f"{name} {col}" for name in VARIANTS for col in ("valid", "achieved", "p99 ms")))
    rows = [header]
    for q in sorted(set(results["bridge"]) | set(results["bare"])):
        cells = [f"{q:,.0f}"]
        for name in VARIANTS:
            s = results[name].get(q)
            cells += ["", "", ""] if s is None else ["yes" if s.valid else "NO", _achieved(s), _num(s.p99_ms, 3)]
        rows.append(tuple(cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"* completed < {BEHIND:.0%} of scheduled samples/s: fell behind LoadGen's schedule (a short run "
                 f"stays VALID while the backlog's TTFT is under {TTFT_MS} ms); such a step does not hold")
    return lines


def summary(rounds: dict[str, list[float | None]], results: dict[str, dict[float, Step]],
            p99s: dict[str, list[float]], max_qps: float = MAX_QPS) -> tuple[list[str], bool]:
    """The figures and whether both goals are met."""
    lines = []
    median: dict[str, float | None] = {}
    for name in VARIANTS:
        got = [r for r in rounds[name] if r is not None]
        median[name] = statistics.median(got) if got else None
        runs = ", ".join("none" if r is None else f"{r:,.0f}" for r in rounds[name])
        capped = " (still held at the sweep's limit: higher in fact)" if capped_at_limit(results[name], max_qps) \
            else ""
        span = f", range {min(got):,.0f}-{max(got):,.0f}" if got else ""
        lines.append(f"Highest QPS that held, {name}: median {_num(median[name], 0)} over {len(rounds[name])} "
                     f"rounds ({runs}{span}){capped}")
    peak = {name: max((s.qps or 0.0 for s in results[name].values()), default=0.0) for name in VARIANTS}
    lines.append(f"Most completed samples/s in any step: bridge {peak['bridge']:,.0f}, "
                 f"bare {peak['bare']:,.0f} (ratio {_num(peak['bridge'] / peak['bare'] if peak['bare'] else None, 2)};"
                 " for information)")
    ratio = median["bridge"] / median["bare"] if median["bridge"] and median["bare"] else None
    bare_capped = capped_at_limit(results["bare"], max_qps)
    ratio_ok = ratio is not None and ratio >= GOAL_RATIO and not bare_capped
    bound = " (bare capped by --max-qps: not a measurement)" if bare_capped else ""
    lines.append(f"Ratio bridge/bare (medians): {_num(ratio, 2)}{bound}  goal >= {GOAL_RATIO}: "
                 f"{'met' if ratio_ok else 'NOT met'}")
    added = None
    if p99s["bridge"] and p99s["bare"]:
        med = {name: statistics.median(p99s[name]) for name in VARIANTS}
        added = med["bridge"] - med["bare"]
        for name in VARIANTS:
            lines.append(f"p99 at {P99_AT_QPS:,.0f} QPS, {name}: median {med[name]:.3f} ms, range "
                         f"{min(p99s[name]):.3f}-{max(p99s[name]):.3f} over {len(p99s[name])} runs")
    added_ok = added is not None and added < GOAL_ADDED_P99_MS
    lines.append(f"Bridge's added p99 latency at {P99_AT_QPS:,.0f} QPS (difference of medians): {_num(added, 3)} ms"
                 f"  goal < {GOAL_ADDED_P99_MS:g} ms: {'met' if added_ok else 'NOT met'}")
    return lines, ratio_ok and added_ok


# -- profile ---------------------------------------------------------------------------------
def aggregate_profile(raw: str, per: int, sample_period_s: float, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """py-spy's raw (collapsed) stacks -> µs per issued sample: ``self`` by source line (a line
    that calls into LoadGen carries LoadGen's C++ time) and ``inclusive`` by function.

    ``per``: samples issued during the profile; ``sample_period_s``: py-spy's sampling period.
    Only stacks through the bridge, the null SUT or the bare callback count (not start-up, not
    LoadGen's own wait for the next scheduled query, not log parsing).
    """
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # the frames from the first one in the bridge's per-sample code (issue, a SUT, a TokenStream) down
        start = next((i for i, f in enumerate(frames) if _PER_SAMPLE.search(f)), None)
        if start is None or frames[-1].startswith(("Condition.wait ", "Event.wait ")):
            continue  # not per-sample work, or a thread asleep (the watchdog between its checks)
        n = int(count)
        frames = frames[start:]
        own[_short(frames[-1])] += n
        for name in {f.split(" (")[0] for f in frames}:
            incl[name] += n
    scale = sample_period_s * 1e6 / per
    return {"self": [(f, c * scale) for f, c in own.most_common(top)],
            "inclusive": [(f, c * scale) for f, c in incl.most_common(top)]}


_PER_SAMPLE = re.compile(r"^(_Bridge\.issue|run_bare_test\.<locals>\.issue|_Bridge\._dispatch|_Bridge\._watchdog) ")


def _short(frame: str) -> str:
    """``_Pending.emit (harness/loadgen/bridge.py:120)`` -> ``_Pending.emit, bridge.py:120``."""
    name, _, where = frame.partition(" (")
    return f"{name}, {where.rstrip(')').rsplit('/', 1)[-1]}"


def profile(variant: str, qps: float, duration_s: float, outdir: Path, rate_hz: int = 250) -> str:
    """One step of ``variant`` under py-spy; a table of where its microseconds per sample go."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    outdir.mkdir(parents=True, exist_ok=True)
    conf = outdir / "user.conf"
    conf.write_text(user_conf(qps, duration_s))
    raw = outdir / "profile.txt"
    code = ("import sys; from pathlib import Path; from harness.bench.bridge_overhead import run_variant; "
            "run_variant(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))")
    subprocess.run([exe, "record", "--nonblocking", "-r", str(rate_hz), "-f", "raw", "-o", str(raw), "--",
                    sys.executable, "-c", code, variant, str(conf), str(outdir)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    detail = parse_detail_log(outdir / "mlperf_log_detail.txt")
    step = to_step(detail)
    issued = int(detail.get("result_query_count") or 0) or round((step.qps or 0) * duration_s)
    table = aggregate_profile(raw.read_text(), issued, 1 / rate_hz)
    out = [f"{variant} at {qps:,.0f} target QPS: {_achieved(step)} samples/s completed, {issued:,} samples; "
           f"py-spy at {rate_hz} Hz, µs per sample"]
    for kind in ("self", "inclusive"):
        total = f" (total {sum(us for _, us in table['self']):.2f} µs in the top lines)" if kind == "self" else ""
        out.append(f"  {kind}{total}:")
        out += [f"    {us:6.2f}  {name}" for name, us in table[kind]]
    return "\n".join(out)


# -- command line ----------------------------------------------------------------------------
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
        description="Run LoadGen's Server scenario (llama3_1-8b, performance mode) with the null SUT through the "
                    "bridge and with a bare inline SUT, and compare their highest VALID, sustained QPS (goal: ratio "
                    f">= {GOAL_RATIO}) and p99 latency at {P99_AT_QPS:g} QPS (goal: the bridge adds < "
                    f"{GOAL_ADDED_P99_MS:g} ms).")
    parser.add_argument("--qps", type=_qps_list, default=DEFAULT_QPS,
                        help="comma list of target QPS of the sweep (run in increasing order; a variant that still "
                             "holds at the top goes on doubling until it fails) (default: %(default)s)")
    parser.add_argument("--max-qps", type=_positive, default=MAX_QPS,
                        help="the sweep doubles a variant that still holds up to this rate (default: %(default)g)")
    parser.add_argument("--duration-s", type=_positive, default=3.0,
                        help="LoadGen min_duration of each test in seconds (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the finer search between each variant's highest holding rate and the next "
                             "(default: %(default)s)")
    parser.add_argument("--grid", type=int, default=4,
                        help="grid points per doubling in a round: 4 = steps of 19%% (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help=f"runs of each variant at {P99_AT_QPS:g} QPS for the p99 comparison "
                             "(default: %(default)s)")
    parser.add_argument("--profile", type=_positive, default=None, metavar="QPS",
                        help="instead: profile one step of each variant at this target QPS with py-spy and print "
                             "where the microseconds per sample go")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the LoadGen logs, one folder per variant and QPS "
                             "(default: a new temporary directory, kept)")
    args = parser.parse_args(argv)
    if args.rounds < 0 or args.grid < 1 or args.repeats < 0:
        parser.error("--rounds and --repeats must be >= 0, --grid >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    outdir: Path = args.out or Path(tempfile.mkdtemp(prefix="bridge-overhead-"))
    log.info("logs in %s; %s", outdir, load_average(cores=True))
    if args.profile:
        for name in VARIANTS:
            sys.stdout.write(profile(name, args.profile, args.duration_s, outdir / f"profile-{name}") + "\n")
        return 0

    counter = collections.Counter()

    def runner(name: str, q: float) -> Step:
        counter[name, q] += 1
        return run_step(name, q, args.duration_s, outdir / f"{name}-{q:g}qps-{counter[name, q]}")

    load_before = load_average(cores=True)
    results = sweep(args.qps, runner, args.max_qps)
    brackets = {name: bracket(results[name]) for name in VARIANTS}
    # A variant that never failed (still held at --max-qps) has nothing to refine: its figure is that rate.
    grids = {name: grid(lo, hi, args.grid) for name, (lo, hi) in brackets.items() if lo is not None and hi is not None}
    rounds: dict[str, list[float | None]] = {name: [] for name in VARIANTS}
    for r in range(max(args.rounds, 1)):
        best = refine(grids, runner) if args.rounds else {}
        for name in VARIANTS:
            rounds[name].append(best.get(name) if name in best else brackets[name][0])
        log.info("round %d: %s", r + 1, ", ".join(f"{n} {_num(rounds[n][-1], 0)}" for n in VARIANTS))
    # The p99 goal at 1,000 QPS: alternate the variants so drifting machine noise hits both alike.
    p99s: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(args.repeats):
        for name in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
            step = run_step(name, P99_AT_QPS, args.duration_s, outdir / f"{name}-{P99_AT_QPS:g}qps-repeat{i}")
            if step.p99_ms is not None:
                p99s[name].append(step.p99_ms)
    lines = sweep_table(results)
    invalid = [(n, q, s) for n in VARIANTS for q, s in sorted(results[n].items()) if not s.valid]
    if invalid:
        lines += ["", "Invalid sweep steps (LoadGen's first reason):"]
        lines += [f"  {n} @ {q:,.0f} QPS: {s.reasons[0] if s.reasons else 'no reason logged'}" for n, q, s in invalid]
    figures, ok = summary(rounds, results, p99s, args.max_qps)
    lines += ["", *figures, f"Goals: {'met' if ok else 'NOT met'}",
              f"Machine: {load_before} at the start, {load_average(cores=True)} at the end.  LoadGen logs: {outdir}"]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
