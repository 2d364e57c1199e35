"""The Hydra edge shared by the commands that build runs (``harness run``, ``harness peak``).

Hydra stops here: it composes ``conf/`` with the command line's overrides and calls a task per
job. What the jobs leave behind (exit codes, MLflow runs, a round's reports) is kept in one
:class:`Jobs` per command invocation, passed to the task and handed back to the caller; nothing
is kept in module globals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import CONF_DIR, hydra_error_message, quote_null_sut, register_resolvers, register_scenarios
from harness.errors import HarnessError, Interrupted
from harness.rounds.jobs import JobReport, job_overrides
from harness.tracking import JobInfo, TrackingSession


@dataclass
class Jobs:
    """The jobs one command ran in this process: their exit codes and MLflow runs, and the reports
    of the rounds the round sweeper ran (``-m``, harness/rounds/sweep.py hands them here)."""

    tracking: TrackingSession = field(default_factory=TrackingSession)
    exit_codes: list[int] = field(default_factory=list)
    round_reports: list[JobReport] = field(default_factory=list)

    def __reduce__(self):
        # A launcher that runs jobs in other processes (joblib, submitit, Ray) pickles the task:
        # a worker starts its own record; its jobs' reports come back through the sweeper.
        return (Jobs, ())

    def exit_code(self) -> int:
        """The command's exit code: the highest of its jobs' (a round's: of the reports)."""
        codes = [r.exit_code for r in self.round_reports] or self.exit_codes
        return max(codes, default=0)


@dataclass
class HydraTask:
    """What Hydra calls for each job: ``job(cfg, jobs)``, bound to this invocation's :class:`Jobs`."""

    job: Callable[..., JobReport]
    jobs: Jobs

    def __call__(self, cfg) -> JobReport:
        return self.job(cfg, self.jobs)


def run_command(config_name: str, job: Callable[..., JobReport]) -> int:
    """Run ``job(cfg, jobs)`` for each job of the command line (``sys.argv[1:]``: Hydra overrides,
    ``-m`` for a round) on ``conf/<config_name>.yaml``; returns the exit code. An interruption
    (Ctrl-C, SIGTERM) is reported in one line with 128 + the signal's number."""
    jobs = Jobs()
    stopped = run_hydra(config_name, HydraTask(job, jobs))
    if stopped is not None:
        line, code = interrupted_line(stopped)
        sys.stderr.write(f"error: {line}\n")
        return code
    return jobs.exit_code()


def job_info(program: str) -> JobInfo:
    """This job's directory, overrides and round (Hydra multirun) membership."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return JobInfo(output_dir=Path(hc.runtime.output_dir).absolute(), overrides=job_overrides(hc.overrides.task),
                   round_dir=Path(hc.sweep.dir).absolute() if multirun else None,
                   job_num=hc.job.num if multirun else None, argv=(program, *sys.argv[1:]))


def hydra_files() -> tuple[str, ...]:
    """What Hydra writes into the job's directory before the job starts: ``.hydra/`` and the job log."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return tuple(name for name in (hc.output_subdir, f"{hc.job.name}.log") if name)


def _stop(signum: int, frame) -> None:
    raise Interrupted(signum)


def run_hydra(config_name: str, job: HydraTask) -> KeyboardInterrupt | None:
    """Run ``job`` as a Hydra app on ``conf/<config_name>.yaml`` with the command line's overrides.

    Before Hydra starts: ``sut=null`` is quoted (YAML would read it as nothing), an unwritable
    run directory exits 2 with one line (Hydra would fail with a traceback), the
    ``scenarios/`` folder is registered as the ``scenario`` group, and SIGTERM is made to act
    like Ctrl-C (:class:`Interrupted`). Returns the interruption that stopped the jobs, if one
    did, for the caller to close its round and report it with :func:`interrupted_line`.
    """
    import hydra

    from harness.redact import Redactor, mask_logs

    argv = quote_null_sut(sys.argv[1:])
    problem = _unwritable_output_dir(argv)
    if problem:
        sys.stderr.write(f"error: output directory not writable: {Redactor.collect().text(problem)}\n")
        sys.exit(2)
    sys.argv[1:] = argv
    register_scenarios()
    register_resolvers()
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop)
    mask_logs(Redactor.collect())  # Hydra's own lines too (it logs a round's overrides); jobs add their config's
    try:
        with _hydra_errors_exit_2():
            hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(job)()
    except KeyboardInterrupt as exc:
        return exc
    except HarnessError as exc:  # raised by the round sweeper before any job started
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    return None


@contextlib.contextmanager
def _hydra_errors_exit_2() -> Iterator[None]:
    """Hydra's own errors (an unknown group option or key, a malformed override) end with one line
    and exit 2, as all bad input does; Hydra would print several lines and exit 1. With
    ``HYDRA_FULL_ERROR=1`` set by the user, Hydra's traceback is kept."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises instead of printing and exiting 1
    try:
        yield
    except (HydraException, OmegaConfBaseException) as exc:
        if full:
            raise
        sys.stderr.write(f"error: {hydra_error_message(exc)}\n")
        sys.exit(2)
    except BrokenPipeError:  # `harness --help | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    finally:
        if not full:
            os.environ.pop("HYDRA_FULL_ERROR", None)


def log_to_file(text: str, level: int = logging.ERROR) -> None:
    """``text`` into the run's log file only (harness.log, harness-peak.log): the console shows it already."""
    record = logging.LogRecord("harness", level, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def interrupted_line(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The one line an interrupted command prints, and its exit code (128 + the signal's number)."""
    name = "Ctrl-C (SIGINT)" if not isinstance(exc, Interrupted) or exc.signum == signal.SIGINT else str(exc)
    what = list(getattr(exc, "__notes__", ()))
    code = exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT
    return f"interrupted by {name}: the run was stopped and its test process ended" + "".join(
        f"; {w}" for w in what), code


def _unwritable_output_dir(argv: list[str]) -> str | None:
    """Why the run directory named on the command line cannot be created, if it cannot.

    Hydra creates it before any harness code runs and reports a failure with a traceback, so
    an explicit ``hydra.run.dir`` / ``hydra.sweep.dir`` (or the current directory, under which
    the default ``runs/`` lives) is checked first.
    """
    targets = [a.split("=", 1) for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    targets = [(k, v) for k, v in targets if "${" not in v] or [("current directory", ".")]
    for key, value in targets:
        path = Path(value).expanduser().absolute()
        while not path.exists():
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            return f"{key}={value}: cannot create a directory under {path}"
    return None


