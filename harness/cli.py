"""Command-line entry points (thin): compose the Hydra config and call ``run_benchmark``.

Hydra stops here: the composed DictConfig becomes a plain dict, then frozen dataclasses
(:func:`harness.config.load_config`). Scenario files live in the top-level ``scenarios/``
folder and are registered as the ``scenario`` config group at startup.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from harness.config import CONF_DIR, quote_null_sut, register_resolvers, register_scenarios
from harness.errors import HarnessError, Interrupted
from harness.results import RunResult, round_table
from harness.tracking import JobInfo, TrackingSession

log = logging.getLogger("harness")

# Exit codes and results of the jobs of this process (one per job in a multirun round).
_exit_codes: list[int] = []
_results: list = []
# MLflow runs of this process: one per job, and a round's parent run kept open until main() ends.
_tracking = TrackingSession()


def _job_info() -> JobInfo:
    """This job's directory, overrides and round (Hydra multirun) membership."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return JobInfo(output_dir=Path(hc.runtime.output_dir).absolute(), overrides=tuple(hc.overrides.task),
                   round_dir=Path(hc.sweep.dir).absolute() if multirun else None,
                   job_num=hc.job.num if multirun else None, argv=("harness", *sys.argv[1:]))


def hydra_files() -> tuple[str, ...]:
    """What Hydra writes into the job's directory before the job starts: ``.hydra/`` and the job log."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return tuple(name for name in (hc.output_subdir, f"{hc.job.name}.log") if name)


def _job(cfg) -> None:
    """One Hydra job: a complete benchmark run in Hydra's run directory, tracked when asked."""
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
        claim_output_dir(job.output_dir, config.run.overwrite, hydra_files())
        env = environment.capture(job.overrides, redactor)
        environment.write(job.output_dir, env)
    except HarnessError as exc:
        sys.stderr.write(f"error: {redactor.text(str(exc))}\n")
        _exit_codes.append(exc.exit_code)
        return

    def show(result) -> None:
        _results.append(result)
        sys.stdout.write(redactor.text(summary(result)) + "\n")
        sys.stdout.flush()

    try:
        _, error = tracked_run(_tracking, config, job, env, redactor, fail_on_invalid=config.fail_on_invalid,
                               on_result=show)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: main() reports it
        exc.add_note(f"partial results kept in {job.output_dir}")
        raise
    if error is not None:
        sys.stderr.write(f"error: {redactor.text(str(error))}\n")
    _exit_codes.append(error.exit_code if error is not None else 0)


def tracked_run(tracking: TrackingSession, config, job: JobInfo, env, redactor, *, fail_on_invalid: bool,
                on_result=None) -> tuple[RunResult | None, HarnessError | None]:
    """One benchmark run in ``job.output_dir`` with its MLflow run (when tracking is on).

    Returns the result (None if the run never produced one) and the error that decides the exit
    code. A bug or Ctrl-C still closes the MLflow run (FAILED / KILLED) and is re-raised.
    ``on_result`` sees the result before it is judged (the summary is printed there).
    """
    from harness.run import check_result, run_benchmark

    tracked, result, error = None, None, None
    try:
        tracked = tracking.start(config, job, env, redactor)
        result = run_benchmark(config, job.output_dir)
        if on_result is not None:
            on_result(result)
        check_result(result, fail_on_invalid)
    except HarnessError as exc:
        error = exc
    except BaseException as exc:
        try:
            status = tracking.finish(tracked, result, exc)
            if status is not None and isinstance(exc, KeyboardInterrupt):
                exc.add_note(f"MLflow run {tracked.run_id} marked {status}")
        except HarnessError:
            pass
        raise
    try:
        tracking.finish(tracked, result, error)
    except HarnessError as exc:  # tracking.required=true and the store failed
        error = error or exc
    return result, error


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
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(job)()
    except KeyboardInterrupt as exc:
        return exc
    return None


def interrupted_line(exc: KeyboardInterrupt, parents: list[str] = ()) -> tuple[str, int]:
    """The one line an interrupted command prints, and its exit code (128 + the signal's number)."""
    name = "Ctrl-C (SIGINT)" if not isinstance(exc, Interrupted) or exc.signum == signal.SIGINT else str(exc)
    what = [*getattr(exc, "__notes__", ()), *(f"the round's MLflow run {p} marked KILLED" for p in parents)]
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
    """``harness``: run a benchmark (``-m`` for a round of runs)."""
    stopped = run_hydra("config", _job)
    table = round_table(_results) if _results else None
    if len(_results) > 1:
        sys.stdout.write(table + "\n")
    parents: list[str] = []
    try:
        parents = _tracking.end_rounds(table, failed=any(_exit_codes) or stopped is not None,
                                       killed=stopped is not None)
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        _exit_codes.append(exc.exit_code)
    if stopped is not None:
        line, code = interrupted_line(stopped, parents)
        sys.stderr.write(f"error: {line}\n")
        sys.exit(code)
    sys.exit(max(_exit_codes, default=0))


if __name__ == "__main__":
    main()
