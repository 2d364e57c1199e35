"""Live progress of a run for the person watching it: what runs, how far along, for how long.

Each LoadGen test runs in a child process (:mod:`harness.loadgen.process`). About once a second
its bridge sends a :class:`Snapshot` (samples issued and completed of the count LoadGen
scheduled, elapsed time, running TTFT/TPOT p50) over the pipe its result comes back on, and the
child's log lines come the same way (:class:`LogLine`). This module renders them in the parent,
on stdout beside the summary:

- on a terminal, one live line rewritten in place at most once a second, and a permanent line
  when a test or task ends;
- otherwise plain lines: when LoadGen starts a test (with the expected count and duration), then
  at most one a second, when another tenth of the expected samples has completed or 10 s have
  passed without a line, and when the test ends;
- nothing with ``run.progress=false``.

The running TTFT/TPOT p50 are the bridge's view (:mod:`harness.loadgen.live`): bounds shown as a
range, or ``~value`` when they agree within 20%; a progress figure, not a result.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from harness.config import HarnessConfig

DRAW_EVERY_S = 1.0  # a live line at most this often; plain lines too
PLAIN_QUIET_S = 10.0  # a plain line at least this often while something runs
PLAIN_STEP = 0.1  # and one whenever another tenth of the expected samples has completed
NAME_WIDTH = 12


@dataclass(frozen=True)
class Snapshot:
    """A test process's state, sent about once a second (never per sample).

    ``phase``: ``loading`` (building the SUT: a model load, a server check), ``running`` (LoadGen's
    test; the counts are the bridge's), ``after`` (LoadGen has returned: decoding, checks).
    ``expected``: samples LoadGen scheduled (``generated_query_count`` x samples per query), None
    until LoadGen has logged it. ``ttft_s``/``tpot_s``: (low, high) bounds of the running p50.
    """

    test: str
    phase: str
    elapsed_s: float = 0.0  # since the phase began (running: since LoadGen started the test)
    scenario: str | None = None
    mode: str | None = None
    issued: int = 0
    completed: int = 0
    errors: int = 0
    output_tokens: int = 0
    expected: int | None = None
    queries: int | None = None
    min_duration_s: float | None = None
    target_qps: float | None = None
    ttft_s: tuple[float, float] | None = None
    tpot_s: tuple[float, float] | None = None
    what: str = ""  # e.g. "sut=hf" while loading


@dataclass(frozen=True)
class LogLine:
    """One log record of a test process, re-emitted by the parent's logging (console, harness.log)."""

    name: str
    levelno: int
    message: str
    created: float


def relog(line: LogLine) -> None:
    """Hand a test process's record to this process's handlers, with its own time."""
    record = logging.makeLogRecord({"name": line.name, "levelno": line.levelno,
                                    "levelname": logging.getLevelName(line.levelno), "msg": line.message,
                                    "created": line.created, "msecs": (line.created % 1) * 1000})
    logger = logging.getLogger(line.name)
    if logger.isEnabledFor(line.levelno):
        logger.handle(record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def seconds(value: float) -> str:
    """``0.8 s``, ``12 s``, ``3 min 05 s``."""
    if value < 10:
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s"


def latency(bounds: tuple[float, float] | None) -> str | None:
    """A running p50 from its bounds in seconds: ``~412 ms``, ``≤ 90 ms`` or ``312 ms to 520 ms``."""
    if bounds is None:
        return None
    lo, hi = bounds
    if hi <= 0:
        return None

    def ms(v: float) -> str:
        return f"{v * 1000:.3g} ms" if v < 1 else f"{v:.2f} s"

    if lo >= 0.8 * hi:
        return f"~{ms((lo + hi) / 2)}"
    if lo <= 0.05 * hi:
        return f"≤ {ms(hi)}"
    return f"{ms(lo)} to {ms(hi)}"


class Display:
    """Where progress goes: a live line on a terminal, plain lines elsewhere, nothing when off.

    ``label`` prefixes every line (``job 2/6``, ``probe 3``). Thread-safe: a task's ticker thread
    and logging may write while the main thread does.
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, label: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        self.tty = enabled and _isatty(self.stream)
        self.label = label
        self.clock = clock
        self._shown = ""  # the live line on screen
        self._drawn_at = -math.inf
        self._lock = threading.RLock()

    def _text(self, text: str) -> str:
        return f"{self.label}  {text}" if self.label else text

    def line(self, text: str) -> None:
        """A permanent line (the live line, if any, makes way for it)."""
        if not self.enabled:
            return
        with self._lock:
            self._erase()
            self.stream.write(self._text(text) + "\n")
            self.stream.flush()

    def live(self, text: str, force: bool = False) -> bool:
        """On a terminal: show ``text`` as the live line, at most once a second unless ``force``.
        Returns whether it was drawn (always False off a terminal)."""
        if not self.tty:
            return False
        with self._lock:
            now = self.clock()
            if not force and now - self._drawn_at < DRAW_EVERY_S:
                return False
            width = shutil.get_terminal_size((100, 24)).columns - 1  # a wrapped line cannot be rewritten
            shown = self._text(text)[:max(width, 20)]
            self.stream.write("\r" + shown + "\x1b[K")
            self.stream.flush()
            self._shown, self._drawn_at = shown, now
            return True

    def clear(self) -> None:
        """Remove the live line (before other output reaches the terminal)."""
        with self._lock:
            self._erase()

    def _erase(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = ""

    @contextlib.contextmanager
    def logging_above(self) -> Iterator[None]:
        """While the live line is in use, log records clear it first (they share the terminal)."""
        if not self.tty:
            yield
            return
        handlers = list(logging.getLogger().handlers)
        clear_first = _ClearFirst(self)
        for h in handlers:
            h.addFilter(clear_first)
        try:
            yield
        finally:
            for h in handlers:
                h.removeFilter(clear_first)
            self.clear()

    @contextlib.contextmanager
    def task(self, name: str, what: str, done: str | None = None, min_s: float = 0.0) -> Iterator[None]:
        """A step of the parent (accuracy scoring, the roofline probe): live with its elapsed time on a
        terminal, else a line every 10 s while it lasts; then one line with its duration, if it took
        at least ``min_s``."""
        if not self.enabled:
            yield
            return
        started = self.clock()
        stop = threading.Event()

        def tick() -> None:
            last_plain = started
            while not stop.wait(DRAW_EVERY_S):
                elapsed = self.clock() - started
                if self.tty:
                    self.live(f"{name:<{NAME_WIDTH}} {what} · {seconds(elapsed)}", force=True)
                elif self.clock() - last_plain >= PLAIN_QUIET_S:
                    last_plain = self.clock()
                    self.line(f"{name:<{NAME_WIDTH}} {what} · {seconds(elapsed)} so far")

        if self.tty:
            self.live(f"{name:<{NAME_WIDTH}} {what}", force=True)
        ticker = threading.Thread(target=tick, name="harness-progress", daemon=True)
        ticker.start()
        try:
            with self.logging_above():
                yield
        finally:
            stop.set()
            ticker.join()
        took = self.clock() - started
        if took >= min_s:
            self.line(f"{name:<{NAME_WIDTH}} {done or what} in {seconds(took)}")
        else:
            self.clear()

    def test(self, test: str) -> TestWatch:
        """The display of one LoadGen test; feed it the test process's messages."""
        return TestWatch(self, test)


class _ClearFirst(logging.Filter):
    def __init__(self, display: Display) -> None:
        super().__init__()
        self.display = display

    def filter(self, record: logging.LogRecord) -> bool:
        self.display.clear()
        return True


class TestWatch:
    """One LoadGen test as it runs in its process: process start, SUT loading, LoadGen's test (counts,
    time, running latencies), and what the process does after LoadGen returns."""

    FIRST_LINE_WAIT_S = 2.0  # plain mode: LoadGen's start is announced with its count, or after this

    def __init__(self, display: Display, test: str) -> None:
        self.display = display
        self.test = test
        self.started = display.clock()
        self.last: Snapshot | None = None
        self.last_at = self.started
        self.running: Snapshot | None = None  # the latest counts of LoadGen's test
        self._drawn_phase = "starting"
        self._plain_at = self.started
        self._plain_completed = 0
        self._announced = False  # plain mode: the line for LoadGen's start was printed
        self._plain_phase = "starting"
        self.display.live(self._render(self.started), force=True)

    def update(self, message: Snapshot | LogLine | None) -> None:
        """A message from the test process, or None when a second passed without one."""
        if not self.display.enabled:
            return
        if isinstance(message, LogLine):
            relog(message)
            return
        now = self.display.clock()
        if isinstance(message, Snapshot):
            self.last, self.last_at = message, now
            if message.phase == "running":
                self.running = message
        phase = self.last.phase if self.last is not None else "starting"
        text = self._render(now)
        if self.display.tty:
            self.display.live(text, force=phase != self._drawn_phase)
            self._drawn_phase = phase
        elif self._plain_due(now, phase):
            self._plain_at = now
            self._plain_completed = self.running.completed if self.running is not None else 0
            self.display.line(text)

    def _plain_due(self, now: float, phase: str) -> bool:
        """SUT loading, LoadGen's start (with the expected count), every tenth of the expected samples
        (at most once a second), and at least every 10 s whatever runs."""
        quiet = now - self._plain_at >= PLAIN_QUIET_S
        s = self.running
        if phase == "loading" and self._plain_phase != "loading":
            self._plain_phase = phase
            return True
        if phase != "running" or s is None:
            return quiet
        if not self._announced:
            self._announced = bool(s.expected) or s.elapsed_s >= self.FIRST_LINE_WAIT_S or quiet
            return self._announced
        step = s.expected is not None and s.completed - self._plain_completed >= PLAIN_STEP * s.expected
        return quiet or (step and now - self._plain_at >= DRAW_EVERY_S)

    def _render(self, now: float) -> str:
        name = f"{self.test:<{NAME_WIDTH}}"
        s = self.last
        if s is None:
            return f"{name} starting the test process · {seconds(now - self.started)}"
        elapsed = s.elapsed_s + (now - self.last_at)
        if s.phase == "loading":
            return f"{name} loading {s.what} · {seconds(elapsed)}"
        if s.phase == "after":
            done = f"LoadGen done ({self.running.completed:,} completed); " if self.running is not None else ""
            return f"{name} {done}{s.what} · {seconds(elapsed)}"
        return f"{name} " + running_text(s, elapsed if s is self.running and s.phase == "running" else s.elapsed_s)

    def done(self, issued: int, completed: int, errors: int) -> None:
        """The permanent line of a test that ended (its process has answered)."""
        took = self.display.clock() - self.started
        failed = f", {errors:,} failed" if errors else ""
        loadgen = f"LoadGen {seconds(self.running.elapsed_s)}, " if self.running is not None else ""
        self.display.line(f"{self.test:<{NAME_WIDTH}} done: {completed:,} of {issued:,} samples completed{failed} "
                          f"({loadgen}{seconds(took)} with process start and SUT loading)")


def running_text(s: Snapshot, elapsed: float) -> str:
    """``Server 212/512 completed · 215 issued · 53 s of at least 128 s · TTFT p50 ~0.42 s · TPOT p50 ...``."""
    of = f"/{s.expected:,}" if s.expected else ""
    parts = [f"{s.scenario or 'LoadGen'} {s.completed:,}{of} completed"]
    if s.issued != s.completed:
        parts.append(f"{s.issued:,} issued")
    least = expected_seconds(s)
    parts.append(f"{seconds(elapsed)} of at least {seconds(least)}" if least else seconds(elapsed))
    if s.errors:
        parts.append(f"{s.errors:,} failed")
    ttft, tpot = latency(s.ttft_s), latency(s.tpot_s)
    if ttft:
        parts.append(f"TTFT p50 {ttft}")
    if tpot:
        parts.append(f"TPOT p50 {tpot}")
    if s.scenario == "Offline" and s.output_tokens and elapsed > 0:
        parts.append(f"{s.output_tokens / elapsed:,.0f} tokens/s")
    return " · ".join(parts)


def expected_seconds(s: Snapshot) -> float | None:
    """How long LoadGen's test will take at least: its min duration, and (Server) the scheduled
    queries at the target rate. None when unknown (or zero)."""
    if s.mode != "performance":
        return None
    least = s.min_duration_s or 0.0
    if s.scenario == "Server" and s.queries and s.target_qps:
        least = max(least, s.queries / s.target_qps)
    return least or None


def plan(config: HarnessConfig, n_samples: int, tests: tuple[str, ...]) -> str:
    """The run's tests and how long the performance test takes at least, before anything starts.

    Quick settings are the ones user.conf gets; official runs keep mlperf.conf's (600 s minimum
    for every LLM benchmark).
    """
    sc = config.scenario
    parts = []
    for test in tests:
        if test == "performance":
            parts.append(f"performance test ({performance_plan(config, n_samples)})")
        elif test == "accuracy":
            parts.append(f"accuracy test ({n_samples:,} samples)")
        else:
            parts.append(f"compliance test {test} (about 100 responses logged)")
    head = f"{sc.name} · {config.mode} · sut={config.sut.name}"
    return f"{head}: " + ", then ".join(parts) + "; each test starts its own process and loads the SUT"


def performance_plan(config: HarnessConfig, n_samples: int) -> str:
    sc = config.scenario
    if config.benchmark.official:
        return "mlperf.conf's settings: at least its min duration, 600 s for the LLM benchmarks"
    duration = sc.min_duration_s
    if sc.loadgen_scenario == "Server":
        least = max(duration, sc.min_query_count / sc.target_qps)
        return (f"Poisson arrivals at {sc.target_qps:g} QPS until at least {sc.min_query_count:,} queries and "
                f"{duration:g} s: at least {seconds(least)}")
    if sc.loadgen_scenario == "SingleStream":
        return f"one query at a time until at least {sc.min_query_count:,} queries and {duration:g} s"
    samples = max(sc.min_query_count, n_samples)
    return f"one query of at least {samples:,} samples" + (f", at least {duration:g} s" if duration else "")
