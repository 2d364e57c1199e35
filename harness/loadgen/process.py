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
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import SUTError

log = logging.getLogger(__name__)

LOG_FORMAT = "[%(asctime)s][%(levelname)s] %(message)s"

# The pipe to the parent, in a test process only (see end_test_early).
_parent_conn = None
_send_lock = threading.Lock()


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


def _child(conn, log_file: str, level: int, fn: Callable[..., Any], args: tuple) -> None:
    global _parent_conn
    _parent_conn = conn
    logging.basicConfig(level=level, format=LOG_FORMAT)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(file_handler)
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


def run_in_process(fn: Callable[..., Any], *args: Any, log_file: Path) -> Any:
    """Call ``fn(*args)`` in a spawned process and return its result or raise its exception.

    ``fn`` must be a module-level function and its arguments picklable. The child's log goes
    to stderr and to ``log_file``. A child that dies without answering (crash, OOM kill)
    raises SUTError with its exit code.
    """
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, str(log_file), logging.getLogger().getEffectiveLevel(), fn, args),
                       name="harness-test")
    proc.start()
    send.close()
    try:
        try:
            status, payload = recv.recv()
        except EOFError:
            proc.join()
            raise SUTError(f"the test process died with exit code {proc.exitcode} "
                           f"(crash or out of memory?); see {log_file}") from None
        proc.join()
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
    if status == "error":
        raise payload
    return payload
