"""One benchmark run with its MLflow run: what every run-building command (``harness``,
``harness-peak``'s probes) calls, so a run is recorded the same way whoever starts it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.results import RunResult
from harness.tracking.session import JobInfo, TrackingSession

if TYPE_CHECKING:
    from harness.progress import Display


@dataclass(frozen=True)
class Outcome:
    """What :func:`tracked_run` gives back: the result (None if the run never produced one), the
    error that decides the exit code, the MLflow run and when the benchmark ran (epoch s)."""

    result: RunResult | None
    error: HarnessError | None
    run_id: str | None = None
    span: tuple[float, float] | None = None


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
