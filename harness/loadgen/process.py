"""Running one LoadGen test in a fresh process.

LoadGen reads the official mlperf.conf only on the first ``FromConfig`` call of a process: a
second test in the same process silently runs without mlperf.conf's values and logs "Multiple
conf files are used", which makes it unsubmittable. So every test (performance, accuracy, each
job of a round) runs in a spawned child that hosts the SUT, the bridge and LoadGen, as the
MLPerf reference implementations do with one invocation per test. Spawn, not fork: a parent
that touched CUDA or started threads cannot be forked safely.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.disk import quiet_full_disk_logging
from harness.errors import SUTError
from harness.redact import Redactor, mask_logs

log = logging.getLogger(__name__)

LOG_FORMAT = "[%(asctime)s][%(levelname)s] %(message)s"
STOP_GRACE_S = 5.0  # an interrupted run's test process gets this long to end after SIGTERM
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# The pipe to the parent, in a test process only (see end_test_early).
_parent_conn = None
_send_lock = threading.Lock()
_progress = False  # the parent renders progress: send it snapshots and the log (report_progress)
MAX_FORWARDED_RECORDS = 200  # log records of one test process shown by the parent; the rest stay in its log file
TICK_S = 1.0  # the parent's progress callback hears at least this often (None: no news)


def _die_with_parent() -> None:
    """Linux: the kernel sends this process SIGTERM when its parent dies, however it dies (even
    SIGKILL), so a test process (holding a model, a GPU) never outlives the run that started it."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before the request was in place
            os.kill(os.getpid(), signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def report_progress(message: Any) -> None:
    """From any thread of a test process: send a progress message (harness.progress.Snapshot or
    LogLine) to the parent, if it asked for them. Never blocks for long, never raises."""
    if not _progress or _parent_conn is None:
        return
    if not _send_lock.acquire(timeout=1.0):  # the process is ending (end_test_early holds the lock)
        return
    try:
        _parent_conn.send(("progress", message))
    except (OSError, ValueError):  # the pipe is closed: the result has been sent
        pass
    finally:
        _send_lock.release()


class _ForwardHandler(logging.Handler):
    """The test process's console: its records go to the parent, which prints them between its
    progress lines and writes them to harness.log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        from harness.progress import LogLine

        self.count += 1
        if self.count > MAX_FORWARDED_RECORDS:
            return
        message = self.format(record)
        if self.count == MAX_FORWARDED_RECORDS:
            message += " (further lines of this test process only in its harness_test.log)"
        report_progress(LogLine(record.name, record.levelno, message, record.created))


def end_test_early(result: Any) -> None:
    """From any thread of a test process: hand ``result`` to the parent as the test's result and
    end the process now, while LoadGen may still be running (its logs stay as far as written).

    LoadGen has no way to stop a test: once the harness has given up on a SUT, a Server schedule
    would go on issuing queries that can only fail until its duration is over. Outside a test
    process (a test calling the bridge directly) this returns and LoadGen runs to its end.
    """
    if _parent_conn is None:
        return
    with _send_lock:
        try:
            _parent_conn.send(("ok", result))
            _parent_conn.close()
        finally:
            logging.shutdown()
            os._exit(0)


def _child(conn, log_file: str, level: int, fn: Callable[..., Any], args: tuple, redactor: Redactor,
           progress: bool = False) -> None:
    global _parent_conn, _progress
    _parent_conn, _progress = conn, progress
    _die_with_parent()
    mask_logs(redactor)
    if progress:
        logging.getLogger().setLevel(level)
        logging.getLogger().addHandler(_ForwardHandler())
    else:
        logging.basicConfig(level=level, format=LOG_FORMAT)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(file_handler)
    quiet_full_disk_logging()
    try:
        outcome: tuple[str, Any] = ("ok", fn(*args))
    except BaseException as exc:  # everything must reach the parent
        logging.getLogger(__name__).debug("test process failed", exc_info=True)
        outcome = ("error", exc)
        try:
            pickle.dumps(exc)
        except Exception:
            outcome = ("error", RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    with _send_lock:
        conn.send(outcome)
        conn.close()


def run_in_process(fn: Callable[..., Any], *args: Any, log_file: Path, redactor: Redactor | None = None,
                   on_progress: Callable[[Any], None] | None = None) -> Any:
    """Call ``fn(*args)`` in a spawned process and return its result or raise its exception.

    ``fn`` must be a module-level function and its arguments picklable. The child's log goes
    to ``log_file`` and to stderr, or, with ``on_progress``, to the parent: ``on_progress``
    then receives the child's progress messages (:func:`report_progress`: snapshots and log
    records) and None whenever a second passes without one. Secrets are masked by ``redactor``
    (default: secret-named environment variables and the shapes :class:`Redactor` knows). A
    child that dies without answering (crash, OOM kill) raises SUTError with its exit code. When
    the wait is interrupted (Ctrl-C, SIGTERM: the CLI raises :class:`harness.errors.Interrupted`)
    the child is ended before the exception goes on, and the child ends by itself if this process dies.
    """
    if multiprocessing.get_start_method(allow_none=True) not in (None, *multiprocessing.get_all_start_methods()):
        # A joblib (loky) worker, hydra/launcher=joblib: a spawned child is told to use this process's
        # default start method, "loky", which exists only inside loky's processes.
        multiprocessing.set_start_method("spawn", force=True)
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, str(log_file), logging.getLogger().getEffectiveLevel(), fn, args,
                                            redactor or Redactor.collect(), on_progress is not None),
                       name="harness-test")
    # The child starts with SIGINT blocked (the mask is inherited): Ctrl-C at a terminal reaches
    # the whole process group, and the parent alone decides, ending the child below. Unblocking
    # delivers a Ctrl-C that came during the start.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    send.close()
    try:
        try:
            while True:
                if on_progress is not None and not recv.poll(TICK_S):
                    on_progress(None)
                    continue
                status, payload = recv.recv()
                if status != "progress":
                    break
                if on_progress is not None:
                    on_progress(payload)
        except EOFError:
            proc.join()
            raise SUTError(f"the test process died with exit code {proc.exitcode} "
                           f"(crash or out of memory?); see {log_file}") from None
        proc.join()
    finally:
        end(proc)
    if status == "error":
        raise payload
    return payload


def end(proc: Any, grace_s: float = STOP_GRACE_S) -> None:
    """Stop a test process that is still running (the run was interrupted): SIGTERM, then SIGKILL."""
    if not proc.is_alive():
        return
    proc.terminate()
    proc.join(grace_s)
    if proc.is_alive():
        log.warning("the test process (pid %d) ignored SIGTERM for %g s: killing it", proc.pid, grace_s)
        proc.kill()
        proc.join(grace_s)
