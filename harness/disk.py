"""A full disk, recognised and reported in one line that names the directory.

Out of space shows up three ways: an OSError (``ENOSPC``; ``EDQUOT`` over a quota; ``EFBIG``
past a file-size limit) from the harness's own writes, the same error raised in the test
process and re-raised here, and nothing at all from LoadGen, whose C++ log streams fail
silently and leave empty or truncated logs that would read as "corrupt" or, worse, as a
result. So a run does not start with less than :data:`MIN_FREE_BYTES` free, and a test after
which less than :data:`FULL_BYTES` are left (a failed write leaves less than one write's worth)
ends the run as out of space.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from harness.errors import OutputError

FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
MIN_FREE_BYTES = 1 << 20  # to start: a quick run writes tens of kB, an accuracy log of long outputs MBs
FULL_BYTES = 64 << 10  # after a test: LoadGen's buffered log writes are a few kB each


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota, or the file-size limit) is full."""
    return isinstance(exc, OSError) and exc.errno in FULL


def no_space(directory: Path, detail: str = "") -> OutputError:
    return OutputError(f"no space left on device in {directory}" + (f": {detail}" if detail else ""))


def free_bytes(directory: Path) -> int | None:
    """Bytes an ordinary process may still write under ``directory`` (None if unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def check_space(directory: Path) -> None:
    """Before a run: raise OutputError when less than MIN_FREE_BYTES are free where it writes."""
    free = free_bytes(directory)
    if free is not None and free < MIN_FREE_BYTES:
        raise no_space(directory, f"{free:,} bytes free, a run needs at least {MIN_FREE_BYTES:,}")


def check_written(directory: Path, what: str) -> None:
    """After ``what`` wrote into ``directory``: raise OutputError when the disk is (all but) full,
    since writes that failed silently (LoadGen's) may have cut ``what`` short."""
    free = free_bytes(directory)
    if free is not None and free < FULL_BYTES:
        raise no_space(directory, f"{what} may be incomplete ({free:,} bytes free)")


@contextlib.contextmanager
def full_disk_as_error(directory: Path) -> Iterator[None]:
    """Turn an out-of-space OSError raised inside (here or in the test process) into OutputError."""
    try:
        yield
    except OSError as exc:
        if not is_full(exc):
            raise
        where = Path(exc.filename).parent if exc.filename else directory
        raise no_space(where, f"writing {Path(exc.filename).name} failed ({exc.strerror})" if exc.filename
                       else "" if exc.errno == errno.ENOSPC else str(exc.strerror)) from exc


def quiet_full_disk_logging() -> None:
    """Log handlers that cannot write because the disk is full stay silent (the run reports it in
    one line) instead of printing a "--- Logging error ---" traceback for every record."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "harness_quiet", False):
            continue
        default = handler.handleError

        def handle_error(record: logging.LogRecord, default=default) -> None:
            import sys

            if not is_full(sys.exc_info()[1]):
                default(record)

        handler.handleError = handle_error  # type: ignore[method-assign]
        handler.harness_quiet = True  # type: ignore[attr-defined]
