"""Command-line entry points (thin): compose the Hydra config and call ``run_benchmark``.

Hydra stops here: the composed DictConfig becomes a plain dict, then frozen dataclasses
(:func:`harness.config.load_config`). Scenario files live in the top-level ``scenarios/``
folder and are registered as the ``scenario`` config group at startup.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import offline
from harness.config import CONF_DIR, hydra_error_message, quote_null_sut, register_resolvers, register_scenarios
from harness.errors import ConfigError, HarnessError, Interrupted
from harness.progress import Display
from harness.results import RunResult
from harness.rounds.jobs import JobReport, job_overrides
from harness.rounds.sweep import round_reports
from harness.tracking import JobInfo, TrackingSession
from harness.tracking.session import exit_code, run_status

log = logging.getLogger("harness")

# Exit codes of the jobs of this process: a single run's (a round's come back as JobReports).
_exit_codes: list[int] = []
# MLflow runs of this process: one per job (a round's parent is opened by the round sweeper).
_tracking = TrackingSession()


@dataclass(frozen=True)
class Outcome:
    """What :func:`tracked_run` gives back: the result (None if the run never produced one), the
    error that decides the exit code, the MLflow run and when the benchmark ran (epoch s)."""

    result: RunResult | None
    error: HarnessError | None
    run_id: str | None = None
    span: tuple[float, float] | None = None


def _job_info() -> JobInfo:
    """This job's directory, overrides and round (Hydra multirun) membership."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return JobInfo(output_dir=Path(hc.runtime.output_dir).absolute(), overrides=job_overrides(hc.overrides.task),
                   round_dir=Path(hc.sweep.dir).absolute() if multirun else None,
                   job_num=hc.job.num if multirun else None, argv=("harness", *sys.argv[1:]))


def hydra_files() -> tuple[str, ...]:
    """What Hydra writes into the job's directory before the job starts: ``.hydra/`` and the job log."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return tuple(name for name in (hc.output_subdir, f"{hc.job.name}.log") if name)


def _job(cfg) -> JobReport:
    """One Hydra job: a complete benchmark run in Hydra's run directory, tracked when asked.

    Returns the job's report, which every launcher hands back to the round sweeper."""
    import platform

    from omegaconf import OmegaConf

    from harness import environment
    from harness.config import load_config
    from harness.disk import quiet_full_disk_logging
    from harness.redact import Redactor, mask_logs
    from harness.results import summary
    from harness.run import claim_output_dir

    job = _job_info()
    redactor = Redactor.collect()
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
        redactor = Redactor.collect(raw)
        mask_logs(redactor)
        quiet_full_disk_logging()  # Hydra's job log: a full disk is reported once, below
        config = load_config(raw)
        if config.round.resume and job.round_dir is None:
            raise ConfigError("round.resume: only a round resumes (harness -m <the round's overrides> "
                              "round.resume=<its parent run id>)")
        claim_output_dir(job.output_dir, config.run.overwrite, hydra_files())
        env = environment.capture(job.overrides, redactor)
        environment.write(job.output_dir, env)
    except HarnessError as exc:
        sys.stderr.write(f"error: {redactor.text(str(exc))}\n")
        log_to_file(redactor.text(str(exc)))
        _exit_codes.append(exc.exit_code)
        return JobReport(job.overrides, "FAILED", exc.exit_code, num=job.job_num, host=platform.node(),
                         run_dir=str(job.output_dir), error=redactor.text(f"{type(exc).__name__}: {exc}"))

    def show(result) -> None:
        text = redactor.text(summary(result))
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        log_to_file(text, logging.INFO)

    display = Display(enabled=config.run.progress, label=_job_label(job))
    try:
        outcome = tracked_run(_tracking, config, job, env, redactor, fail_on_invalid=config.fail_on_invalid,
                              on_result=show, display=display)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: main() reports it
        exc.add_note(f"partial results kept in {job.output_dir}")
        raise
    error = outcome.error
    if error is not None:
        sys.stderr.write(f"error: {redactor.text(str(error))}\n")
        log_to_file(redactor.text(str(error)))
    _exit_codes.append(exit_code(error))
    return _report(job, config, env, outcome, redactor)


def _report(job: JobInfo, config, env, outcome: Outcome, redactor) -> JobReport:
    from harness.tracking.schema import metrics, validity

    results = outcome.result.to_json() if outcome.result is not None else None
    error = outcome.error
    return JobReport(job.overrides, run_status(error), exit_code(error), num=job.job_num,
                     host=(env.get("os") or {}).get("hostname"), started=outcome.span[0] if outcome.span else None,
                     ended=outcome.span[1] if outcome.span else None, run_id=outcome.run_id,
                     run_dir=str(job.output_dir), scenario=config.scenario.name, sut=config.sut.name,
                     mode=config.mode, verdict=validity(results) if results else None,
                     accuracy=((results or {}).get("accuracy") or {}).get("verdict"),
                     metrics=metrics(results or {}),
                     error=redactor.text(f"{type(error).__name__}: {error}") if error is not None else None)


def _job_label(job: JobInfo) -> str:
    """``[job 2/6]`` before a round's progress lines (the count from the command line's sweeps)."""
    if job.job_num is None:
        return ""
    total = round_size(job.argv[1:])
    return f"[job {job.job_num + 1}{f'/{total}' if total else ''}]"


def round_size(argv: Sequence[str]) -> int | None:
    """How many jobs the sweeps on a command line make (None when Hydra must expand them, e.g. glob)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
        return math.prod(len(list(o.sweep_string_iterator())) for o in overrides if o.is_sweep_override())
    except Exception:  # whatever Hydra cannot expand here, it reports itself
        return None


def tracked_run(tracking: TrackingSession, config, job: JobInfo, env, redactor, *, fail_on_invalid: bool,
                on_result=None, display: Display | None = None) -> Outcome:
    """One benchmark run in ``job.output_dir`` with its MLflow run (when tracking is on).

    A bug or Ctrl-C still closes the MLflow run (FAILED / KILLED) and is re-raised. ``on_result``
    sees the result before it is judged (the summary is printed there); ``display`` shows the
    run's progress (default: per ``run.progress``).
    """
    import time

    from harness.run import check_result, run_benchmark

    tracked, result, error, started = None, None, None, None
    try:
        tracked = tracking.start(config, job, env, redactor)
        started = time.time()
        try:
            result = run_benchmark(config, job.output_dir, display)
        finally:
            span = (started, time.time())
        if on_result is not None:
            on_result(result)
        check_result(result, fail_on_invalid)
    except HarnessError as exc:
        error = exc
    except BaseException as exc:
        try:
            status = tracking.finish(tracked, result, exc, span if started is not None else None)
            if status is not None and isinstance(exc, KeyboardInterrupt):
                exc.add_note(f"MLflow run {tracked.run_id} marked {status}")
        except HarnessError:
            pass
        raise
    span = span if started is not None else None
    try:
        tracking.finish(tracked, result, error, span)
    except HarnessError as exc:  # tracking.required=true and the store failed
        error = error or exc
    return Outcome(result, error, tracked.run_id if tracked is not None else None, span)


def _stop(signum: int, frame) -> None:
    raise Interrupted(signum)


def run_hydra(config_name: str, job) -> KeyboardInterrupt | None:
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


def main() -> None:
    """``harness``: run a benchmark (``-m`` for a round of runs, through the round sweeper)."""
    offline.enforce()  # before anything imports a Hugging Face library
    stopped = run_hydra("config", _job)
    if stopped is not None:
        line, code = interrupted_line(stopped)
        sys.stderr.write(f"error: {line}\n")
        sys.exit(code)
    codes = [r.exit_code for r in round_reports] or _exit_codes
    sys.exit(max(codes, default=0))


if __name__ == "__main__":
    main()
