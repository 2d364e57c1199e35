"""The bridge between LoadGen and a SUT: the only module that imports ``mlperf_loadgen``.

LoadGen calls ``issue_cb`` on its own thread holding the GIL, so it only enqueues. A dispatcher
thread hands streamed samples to ``SUT.submit`` (Server, SingleStream) or forms length-sorted
batches for worker threads calling ``SUT.generate`` (Offline). A SUT whose ``submit`` never
blocks (``submit_inline``, e.g. ``sut=openai``) is called on LoadGen's thread directly, so no
thread wake-up sits between LoadGen's clock and the request leaving. Each sample's :class:`_Pending`
handle reports the first token (``FirstTokenComplete``) and the end (``QuerySamplesComplete``)
with the output as int32 token-id bytes and its ``n_tokens``.

Every issued sample is completed exactly once, error or not: exceptions and a watchdog
deadline (``run.sample_timeout_s``) complete failed samples. After ``run.max_errors`` failures, or
one timeout (a hung SUT), the bridge gives up on the SUT: the samples in flight and every later
one are failed at once, and a test process is ended early when LoadGen does not end by itself
(its Server schedule), so a broken SUT cannot hang a run or stretch it to its full schedule.
"""

from __future__ import annotations

import array
import dataclasses
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlperf_loadgen as lg

from harness.config import RunOptions
from harness.errors import ConfigError
from harness.loadgen.live import LiveReport
from harness.progress import Snapshot
from harness.sut.base import SUT, Sample, supports_streaming

log = logging.getLogger(__name__)

_SCENARIOS = {"Offline": lg.TestScenario.Offline, "Server": lg.TestScenario.Server,
              "SingleStream": lg.TestScenario.SingleStream}
_MODES = {"performance": lg.TestMode.PerformanceOnly, "accuracy": lg.TestMode.AccuracyOnly}
_STOP = object()
PROGRESS_EVERY_S = 10.0  # long runs (official: 600 s and more) log their progress this often
# After giving up on the SUT, LoadGen is given this long to end on its own (Offline does at once)
# before the test is ended early: a Server schedule or an official SingleStream run would otherwise
# go on issuing queries that can only fail, for up to 600 s and more.
GIVE_UP_GRACE_S = 2.0


def progress_level() -> int:
    """Progress lines are for a person at a terminal: INFO there, DEBUG (hidden) in CI or logs."""
    interactive = sys.stderr is not None and sys.stderr.isatty() and not os.environ.get("CI")
    return logging.INFO if interactive else logging.DEBUG


# Token ids reach LoadGen as int32 bytes: array type "i" (C int, 32-bit on every platform LoadGen supports).
if array.array("i").itemsize != 4:
    raise ImportError("the bridge needs a 32-bit C int for LoadGen's int32 token ids")
_NO_DEADLINE = float("inf")
_new_lock = threading.Lock


@dataclass
class BridgeStats:
    """What the bridge saw: samples issued and completed, and the failures."""

    issued: int = 0
    completed: int = 0
    errors: int = 0
    # Distinct failure messages (first 20) and how many samples each failed.
    error_counts: dict[str, int] = field(default_factory=dict)
    output_tokens: int = 0
    # Why the bridge gave up on the SUT (a timeout, or run.max_errors failures), if it did; then every
    # sample in flight and every later one was failed at once, and the test may have been ended early.
    gave_up: str | None = None

    @property
    def error_messages(self) -> list[str]:
        return [f"{msg} ({n} samples)" if n > 1 else msg for msg, n in self.error_counts.items()]


class _Pending:
    """One issued sample; the TokenStream handed to the SUT.

    This and :meth:`_Bridge._take` are the per-sample path, run up to ~100,000 times a second on
    LoadGen's thread with the ``null`` SUT, so they avoid what costs microseconds in Python:
    extra calls, per-call clock reads and helper objects (profile in README, "The bridge's own
    overhead").
    """

    __slots__ = ("bridge", "qid", "sample", "tokens", "first_sent", "done", "deadline", "lock", "n_tokens")

    def __init__(self, bridge: _Bridge, qid: int, sample: Sample, deadline: float = _NO_DEADLINE) -> None:
        self.bridge = bridge
        self.qid = qid
        self.sample = sample
        self.tokens: list[int] = []
        self.first_sent = False
        self.done = False
        self.deadline = deadline
        self.lock = _new_lock()
        self.n_tokens = 0  # the output length LoadGen was given (set at completion)

    def emit(self, token_ids: Sequence[int]) -> None:
        if not token_ids:
            return
        lock = self.lock
        lock.acquire()  # acquire/release, not ``with``: about half the cost per call
        try:
            if self.done:
                return
            self.tokens.extend(token_ids)
            if self.first_sent or not self.bridge.streaming:
                return
            self.first_sent = True
            first = array.array("i", (token_ids[0],))
            # TTFT is measured by LoadGen from the query's scheduled time to this call.
            lg.FirstTokenComplete([lg.QuerySampleResponse(self.qid, first.buffer_info()[0], 4, 1)])
        finally:
            lock.release()

    def _complete(self, error: BaseException | None = None, n_tokens: int | None = None) -> None:
        lock = self.lock
        lock.acquire()
        try:
            if self.done:
                return
            self.done = True
            if self.bridge.streaming and not self.first_sent:
                # A streamed sample that ends without a first token (it failed, or the SUT returned
                # nothing): with token latencies, QuerySamplesComplete without a FirstTokenComplete
                # crashes LoadGen 6.0.17 in accuracy mode (SIGSEGV) and charges the whole latency to
                # TPOT in performance mode; an empty first token avoids both.
                self.first_sent = True
                lg.FirstTokenComplete([lg.QuerySampleResponse(self.qid, 0, 0, 0)])
            buf = array.array("i", self.tokens)
            addr, n = buf.buffer_info()
            self.n_tokens = n if n_tokens is None else n_tokens
            lg.QuerySamplesComplete([lg.QuerySampleResponse(self.qid, addr, n * 4, self.n_tokens)])
        finally:
            lock.release()
        self.bridge.on_done(self, error)

    def finish(self, n_tokens: int | None = None) -> None:
        """``n_tokens``: the true output length when it differs from the ids emitted (``sut=openai``
        counting the server's usage while the ids are its text re-tokenized): LoadGen's TPOT and
        tokens/s are computed from the count, the accuracy log keeps the ids."""
        self._complete(None, n_tokens)

    fail = _complete  # TokenStream.fail(error): one call less than a wrapper

    def complete_with(self, token_ids: Sequence[int], n_tokens: int | None = None) -> None:
        """Batch path: the whole output at once."""
        self.emit(token_ids)
        self._complete(None, n_tokens)


class _Bridge:
    def __init__(self, sut: SUT, samples: Sequence[Sample], streaming: bool, options: RunOptions,
                 end_early: Callable[[BridgeStats], None] | None = None, live: LiveReport | None = None) -> None:
        self.sut = sut
        self.samples = samples
        self.streaming = streaming
        self.options = options
        self.stats = BridgeStats()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.batches: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.outstanding: dict[int, _Pending] = {}
        self.closed = threading.Event()
        self.threads: list[threading.Thread] = []
        self.n_workers = max(1, options.workers or sut.concurrency)
        self.inline = streaming and sut.submit_inline
        self.end_early = end_early
        self.gave_up_at: float | None = None
        self.live = live  # the parent's progress display, fed from the watchdog (never per sample)

    # -- LoadGen callbacks (LoadGen's threads) -------------------------------------------
    def issue(self, query_samples: list) -> None:
        if self.inline:
            self._take(query_samples)
        else:
            self.inbox.put(query_samples)

    def flush(self) -> None:
        pass

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(self._dispatch, "harness-dispatch")
        self._spawn(self._watchdog, "harness-watchdog")
        if not self.streaming:
            for _ in range(self.n_workers):
                self._spawn(self._work, "harness-worker")

    def stop(self) -> None:
        self.closed.set()
        self.inbox.put(_STOP)
        for _ in range(self.n_workers):
            self.batches.put(_STOP)
        for t in self.threads:
            t.join(timeout=1.0)

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    # -- bookkeeping ----------------------------------------------------------------------
    def on_done(self, pending: _Pending, error: BaseException | None) -> None:
        in_flight: list[_Pending] | None = None  # set once, when the bridge gives up on the SUT
        with self.lock:
            self.outstanding.pop(pending.qid, None)
            self.stats.completed += 1
            self.stats.output_tokens += pending.n_tokens
            if error is not None:
                self.stats.errors += 1
                msg = f"{type(error).__name__}: {error}"
                counts = self.stats.error_counts
                if msg in counts or len(counts) < 20:
                    counts[msg] = counts.get(msg, 0) + 1
                if self.stats.gave_up is None:
                    if isinstance(error, TimeoutError):
                        # A SUT that let one sample time out is treated as hung: waiting out the
                        # timeout for every later sample would multiply the bound (max_errors x timeout).
                        self.stats.gave_up = f"sample {pending.sample.index} timed out ({error})"
                    elif self.stats.errors >= self.options.max_errors:
                        self.stats.gave_up = (f"{self.stats.errors} samples failed "
                                              f"(run.max_errors={self.options.max_errors})")
                    if self.stats.gave_up is not None:
                        self.gave_up_at = time.monotonic()
                        in_flight = list(self.outstanding.values())
        if error is not None:
            log.debug("sample %d failed: %s", pending.sample.index, error)
        if in_flight is not None:
            log.error("giving up on the SUT: %s; the %d samples in flight and every later one fail at once",
                      self.stats.gave_up, len(in_flight))
            for p in in_flight:
                p.fail(RuntimeError(f"not completed: the harness gave up on the SUT ({self.stats.gave_up})"))

    @property
    def failing_fast(self) -> bool:
        return self.stats.gave_up is not None

    def _arm(self, pendings: Sequence[_Pending]) -> None:
        deadline = time.monotonic() + self.options.sample_timeout_s
        for p in pendings:
            p.deadline = deadline

    # -- threads --------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            item = self.inbox.get()
            if item is _STOP:
                return
            self._take(item)

    def _take(self, query_samples: list) -> None:
        samples = self.samples
        if self.streaming:
            # Armed now: the SUT gets each sample within this call. One clock read per query.
            deadline = time.monotonic() + self.options.sample_timeout_s
            pendings = [_Pending(self, qs.id, samples[qs.index], deadline) for qs in query_samples]
        else:
            pendings = [_Pending(self, qs.id, samples[qs.index]) for qs in query_samples]
        with self.lock:
            self.stats.issued += len(pendings)
            outstanding = self.outstanding
            for p in pendings:
                outstanding[p.qid] = p
        if self.streaming:
            for p in pendings:
                self._submit(p)
        else:
            # Similar lengths in one batch waste less padding; LoadGen's order is random.
            pendings.sort(key=lambda p: len(p.sample.prompt))
            size = max(1, self.sut.max_batch_size)
            for i in range(0, len(pendings), size):
                self.batches.put(pendings[i:i + size])

    def _submit(self, p: _Pending) -> None:
        """Hand one armed sample to the SUT."""
        if self.stats.gave_up is not None:  # failing_fast, without a property call
            p.fail(RuntimeError(f"not sent: the harness gave up on the SUT ({self.stats.gave_up})"))
            return
        try:
            self.sut.submit(p.sample, p)
        except Exception as exc:
            p.fail(exc)

    def _work(self) -> None:
        while True:
            batch = self.batches.get()
            if batch is _STOP:
                return
            if self.failing_fast:
                for p in batch:
                    p.fail(RuntimeError(f"not sent: the harness gave up on the SUT ({self.stats.gave_up})"))
                continue
            self._arm(batch)
            try:
                completions = self.sut.generate([p.sample for p in batch])
            except Exception as exc:
                for p in batch:
                    p.fail(exc)
                continue
            if self.closed.is_set():
                return  # this worker was abandoned after a timeout and the run is over
            by_index = {c.index: c for c in completions}
            for p in batch:
                c = by_index.get(p.sample.index)
                if c is None:
                    p.fail(RuntimeError("SUT returned no completion for this sample"))
                elif c.error is not None:
                    p.fail(RuntimeError(c.error))
                else:
                    p.complete_with(c.token_ids, c.n_tokens)

    def _watchdog(self) -> None:
        period = min(0.1, self.options.sample_timeout_s / 4)
        level = logging.DEBUG if self.live is not None else progress_level()  # the parent shows progress
        last_time, last_tokens = time.monotonic(), 0
        next_progress = last_time + PROGRESS_EVERY_S
        while not self.closed.wait(period):
            now = time.monotonic()
            if self.gave_up_at is not None and self.end_early is not None and now - self.gave_up_at > GIVE_UP_GRACE_S:
                log.error("ending the LoadGen test early: the harness gave up on the SUT (%s)", self.stats.gave_up)
                with self.lock:  # a snapshot: LoadGen keeps issuing until the process ends
                    final = dataclasses.replace(self.stats, error_counts=dict(self.stats.error_counts))
                # Samples issued but not yet completed never will be: they count as failed.
                final.errors += final.issued - final.completed
                final.completed = final.issued
                self.end_early(final)
                return
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY_S
                s = self.stats
                # Output tokens completed since the last line, per second of wall time.
                rate = (s.output_tokens - last_tokens) / (now - last_time)
                last_time, last_tokens = now, s.output_tokens
                log.log(level, "progress: %d of %d issued completed, %.1f tokens/s, %d in flight, %d errors",
                        s.completed, s.issued, rate, s.issued - s.completed, s.errors)
            with self.lock:
                expired = [p for p in self.outstanding.values() if p.deadline <= now]
                in_flight = list(self.outstanding.values()) if self.live is not None and self.streaming else ()
            if self.live is not None:
                self.live.tick(now, self.stats, in_flight)
            if not expired:
                continue
            for p in expired:
                p.fail(TimeoutError(f"no completion within run.sample_timeout_s={self.options.sample_timeout_s:g}s"))
            if not self.streaming:
                # The worker holding the expired batch may never return: replace it so the
                # remaining batches are still served (or failed fast).
                self._spawn(self._work, "harness-worker")
                with self.lock:
                    self.n_workers += 1


def _settings(*, scenario: str, mode: str, model_key: str, user_conf: Path, outdir: Path,
              enable_trace: bool) -> tuple[lg.TestSettings, lg.LogSettings]:
    """LoadGen's test and log settings for one test; creates ``outdir``."""
    settings = lg.TestSettings()
    # One FromConfig call per test and per process: mlperf.conf first, then user.conf. LoadGen
    # reads mlperf.conf only on a process's first call, hence harness.loadgen.process.
    if settings.FromConfig(str(user_conf), model_key, scenario) != 0:
        raise ConfigError(f"LoadGen rejected {user_conf} for model key '{model_key}'")
    settings.scenario = _SCENARIOS[scenario]
    settings.mode = _MODES[mode]

    outdir.mkdir(parents=True, exist_ok=True)
    out = lg.LogOutputSettings()
    out.outdir = str(outdir)
    out.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = out
    log_settings.enable_trace = enable_trace
    return settings, log_settings


def run_test(sut: SUT, samples: Sequence[Sample], *, scenario: str, mode: str, model_key: str,
             user_conf: Path, outdir: Path, options: RunOptions, audit_config: Path | None = None,
             end_early: Callable[[BridgeStats], None] | None = None,
             progress: Callable[[Snapshot], None] | None = None, test: str | None = None) -> BridgeStats:
    """Run one LoadGen test (performance or accuracy) of ``sut`` over ``samples``; blocks.

    ``audit_config`` is a compliance test's audit conf (TEST06), which LoadGen applies over
    mlperf.conf and user.conf. Without one, LoadGen's own default would read ``audit.config``
    from the working directory, so a stale file there would silently turn a normal run into a
    compliance run; a path that does not exist is passed instead.

    ``end_early(stats)``, when given, is called (on the bridge's watchdog thread, while LoadGen still
    runs) once the bridge has given up on the SUT and LoadGen has not ended within
    ``GIVE_UP_GRACE_S``; it must not return (the test process exits with the stats).

    ``progress``, when given, receives a :class:`~harness.progress.Snapshot` about once a second
    (from the watchdog thread; :mod:`harness.loadgen.live`) while the test runs, and one as it ends;
    ``test`` names the test in them (default: ``mode``).
    """
    streaming = scenario != "Offline"
    if streaming and not supports_streaming(sut):
        raise ConfigError(f"sut={sut.name} cannot stream, so it cannot run the {scenario} scenario "
                          "(use scenario=offline or a streaming SUT)")
    settings, log_settings = _settings(scenario=scenario, mode=mode, model_key=model_key, user_conf=user_conf,
                                       outdir=outdir, enable_trace=options.enable_trace)

    live = None
    if progress is not None:
        live = LiveReport(progress, test=test or mode, scenario=scenario, mode=mode, streaming=streaming,
                          timeout_s=options.sample_timeout_s, detail_log=outdir / "mlperf_log_detail.txt")
    bridge = _Bridge(sut, samples, streaming, options, end_early, live)

    def load(indices: list[int]) -> None:
        sut.load([samples[i] for i in indices])

    qsl = lg.ConstructQSL(len(samples), len(samples), load, lambda indices: None)
    handle = lg.ConstructSUT(bridge.issue, bridge.flush)
    bridge.start()
    started = time.monotonic()
    try:
        log.info("LoadGen %s %s test: %d samples, model key %s", scenario, mode, len(samples), model_key)
        if audit_config is None and Path("audit.config").exists():
            log.warning("ignoring ./audit.config (compliance tests are run by mode=submission)")
        no_audit = outdir / "no-audit.config"  # never created
        lg.StartTestWithLogSettings(handle, qsl, settings, log_settings, str(audit_config or no_audit))
    finally:
        bridge.stop()
        lg.DestroySUT(handle)
        lg.DestroyQSL(qsl)
    log.info("LoadGen test finished in %.1fs: %d issued, %d errors", time.monotonic() - started,
             bridge.stats.issued, bridge.stats.errors)
    if live is not None:
        live.finish(time.monotonic(), bridge.stats)
    return bridge.stats


def run_bare_test(n_samples: int, *, model_key: str, user_conf: Path, outdir: Path) -> None:
    """A Server performance test of a bare SUT that answers each sample inline; blocks.

    No bridge, no SUT, no threads: LoadGen's issue thread itself reports the first token and
    completes the sample (2 tokens), which is the floor the bridge is measured against.
    """
    settings, log_settings = _settings(scenario="Server", mode="performance", model_key=model_key,
                                       user_conf=user_conf, outdir=outdir, enable_trace=False)
    tokens = array.array("i", [0, 0])
    addr, n = tokens.buffer_info()

    def issue(query_samples: list) -> None:
        for qs in query_samples:
            lg.FirstTokenComplete([lg.QuerySampleResponse(qs.id, addr, 4, 1)])
            lg.QuerySamplesComplete([lg.QuerySampleResponse(qs.id, addr, n * 4, n)])

    qsl = lg.ConstructQSL(n_samples, n_samples, lambda indices: None, lambda indices: None)
    handle = lg.ConstructSUT(issue, lambda: None)
    try:
        lg.StartTestWithLogSettings(handle, qsl, settings, log_settings)
    finally:
        lg.DestroySUT(handle)
        lg.DestroyQSL(qsl)


def builtin_seeds() -> tuple[int, int, int] | None:
    """(qsl, sample index, schedule) RNG seeds of the mlperf.conf compiled into this LoadGen.

    ``conf_type=0`` parses only the built-in file; unlike a user.conf load it is not counted, so
    a later test in this process is not logged as using several conf files.
    """
    settings = lg.TestSettings()
    if settings.FromConfig("", "llama3_1-8b", "Offline", 0) != 0:
        return None
    return settings.qsl_rng_seed, settings.sample_index_rng_seed, settings.schedule_rng_seed
