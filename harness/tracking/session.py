"""The CLI's tracking: one MLflow run per job, a parent run per round, and what to do on trouble.

A parent run groups jobs: a round (``harness -m``, tag ``role=round``), opened by the round
sweeper in the launching process (:meth:`TrackingSession.open_round`) and named to each job by
``round.parent``, wherever the job runs; or a peak-load search (``harness-peak``, ``role=peak``,
opened in the search's own process with :meth:`TrackingSession.start_group`).

A run is opened before the benchmark starts (so a dead store with ``tracking.required=true``
fails before minutes of benchmarking) and closed after it, FINISHED or FAILED, with whatever
the run directory holds by then. A store that cannot be reached is reported once, in one line,
and the benchmark carries on with its local results; with ``tracking.required=true`` the same
problem raises TrackingError (exit 5). Nothing here knows about Hydra: the CLI passes a JobInfo.
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import HarnessConfig, TrackingConfig, to_dict
from harness.errors import ConfigError, TrackingError
from harness.redact import Redactor
from harness.results import RESULTS_FILE, ResultsError, ResultsMissing, RunResult
from harness.rounds.jobs import ROUND_TABLE, timestamp
from harness.tracking import schema
from harness.tracking.store import Store, shown, ui_link

log = logging.getLogger(__name__)

MULTIRUN_FILE = "multirun.yaml"  # Hydra's record of the sweep, in the round directory


@dataclass(frozen=True)
class JobInfo:
    """Where and how one job runs: the facts the CLI takes from Hydra."""

    output_dir: Path
    overrides: tuple[str, ...] = ()  # this job's own overrides: `harness <overrides>` repeats it
    round_dir: Path | None = None  # the sweep directory when the job is part of a round (-m)
    job_num: int | None = None
    argv: tuple[str, ...] = ()  # the process's command line
    tags: tuple[tuple[str, str], ...] = ()  # extra tags of the job's run, e.g. (("peak_step", "probe"),)


@dataclass
class TrackedRun:
    """An open MLflow run of one job."""

    store: Store
    run_id: str
    tracking: TrackingConfig
    config: dict[str, Any]
    env: Mapping[str, Any]
    job: JobInfo
    redactor: Redactor


@dataclass
class _Round:
    store: Store
    run_id: str
    tracking: TrackingConfig
    round_dir: Path
    redactor: Redactor
    jobs: int = 0


@dataclass
class TrackingSession:
    """Tracking state of one process: open stores, the round's parent run, stores reported dead."""

    _stores: dict[tuple[str | None, str], Store] = field(default_factory=dict)
    _dead: set[tuple[str | None, str]] = field(default_factory=set)
    _rounds: dict[tuple[str, str], _Round] = field(default_factory=dict)

    def start(self, config: HarnessConfig, job: JobInfo, env: Mapping[str, Any],
              redactor: Redactor) -> TrackedRun | None:
        """Open the job's MLflow run (and the round's parent on the first job); None when not tracking."""
        tracking = config.tracking
        if tracking.backend != "mlflow":
            return None
        key = (tracking.uri, tracking.experiment)
        if key in self._dead:
            if tracking.required:
                raise TrackingError(f"MLflow store {shown(tracking.uri)} unreachable (see above) and "
                                    "tracking.required=true")
            return None
        try:
            store = self._stores.get(key) or Store.open(tracking)
            self._stores[key] = store
            plain = to_dict(config)
            group = self._rounds.get((store.uri, store.experiment_id)) if job.round_dir is not None else None
            # A peak search's parent is opened in this process; a round's by the round sweeper, which
            # hands its id to every job, wherever the job runs.
            parent = group.run_id if group is not None else config.round.parent if job.round_dir else None
            if parent is not None and group is None:  # opened by the launching host: is it this store?
                _parent_here(store, parent)
            run_tags = {**schema.tags(plain, None, env), "role": "job", "run_dir": str(job.output_dir),
                        "overrides": shlex.join(job.overrides), "host": (env.get("os") or {}).get("hostname")}
            if job.round_dir is not None:
                run_tags |= {"job_num": str(job.job_num), "round_dir": str(job.round_dir)}
            if parent is not None:
                run_tags["round"] = parent
            run_tags |= dict(job.tags)
            run_id = store.start_run(job.output_dir.name, _clean_tags(run_tags, redactor), parent)
            plain.pop("round", None)  # which launch of a round it was: tags, not what was measured
            store.log(run_id, params=schema.flatten(redactor.data(plain)))
        except TrackingError as exc:
            self._trouble(key, tracking, exc, job.output_dir, "start")
            return None
        if group is not None:
            group.jobs += 1
        log.info("tracking: MLflow run %s in %s (experiment %s)", run_id, shown(store.uri), tracking.experiment)
        return TrackedRun(store, run_id, tracking, plain, env, job, redactor)

    def finish(self, run: TrackedRun | None, result: RunResult | None, error: BaseException | None,
               span: tuple[float, float] | None = None) -> str | None:
        """Log metrics, tags and the run directory, then close the run FINISHED, FAILED or KILLED
        (an interruption: Ctrl-C, SIGTERM). ``span``: the benchmark's start and end (epoch s), tagged
        ``started_at`` / ``ended_at`` for the round's overlap check. Returns the status, or None when
        nothing was closed."""
        if run is None:
            return None
        results = result if result is not None else _read_results(run.job.output_dir)
        status = run_status(error)
        run_tags = schema.tags(run.config, results, run.env)
        run_tags["exit_code"] = str(exit_code(error))
        if span is not None:
            run_tags |= {"started_at": timestamp(span[0]), "ended_at": timestamp(span[1])}
        if error is not None:
            run_tags["error"] = f"{type(error).__name__}: {error}"[:5000]
        try:
            run.store.log(run.run_id, metrics=schema.metrics(results) if results is not None else {},
                          tags=_clean_tags(run_tags, run.redactor))
            run.store.log_dir(run.run_id, run.job.output_dir, run.redactor)
            run.store.end(run.run_id, status)
        except TrackingError as exc:
            key = (run.tracking.uri, run.tracking.experiment)
            self._trouble(key, run.tracking, exc, run.job.output_dir, f"MLflow run {run.run_id} is incomplete")
            return None
        log.info("tracking: logged MLflow run %s (%s) to %s; in the UI: %s", run.run_id, status, shown(run.store.uri),
                 ui_link(run.store.uri, run.store.experiment_id, run.run_id))
        return status

    def start_group(self, config: HarnessConfig, run_dir: Path, name: str, tags: Mapping[str, Any],
                    env: Mapping[str, Any], redactor: Redactor, params: Mapping[str, Any] | None = None) -> str | None:
        """Open a parent run that the following jobs whose ``JobInfo.round_dir`` is ``run_dir`` join.

        ``tags`` hold at least ``role`` (e.g. ``peak``); ``params`` are logged flattened. Returns the
        parent's run id, or None when not tracking or the store cannot be reached (reported as for a
        job: one warning, or TrackingError with ``tracking.required=true``).
        """
        tracking = config.tracking
        if tracking.backend != "mlflow":
            return None
        key = (tracking.uri, tracking.experiment)
        try:
            store = self._stores.get(key) or Store.open(tracking)
            self._stores[key] = store
            job = JobInfo(output_dir=run_dir, round_dir=run_dir)  # tags["command"] names the command
            rnd = self._round(store, tracking, job, env, redactor, name=name, tags=tags)
            if params:
                store.log(rnd.run_id, params=schema.flatten(redactor.data(dict(params))))
        except TrackingError as exc:
            self._trouble(key, tracking, exc, run_dir, "start")
            return None
        return rnd.run_id

    def find_round(self, tracking: TrackingConfig, ref: str) -> tuple[str, list[Any]]:
        """The parent run ``round.resume`` names (any unique prefix of its id) and its child runs.

        A round cannot be resumed without its store: ConfigError for a run that is no round's
        parent (or lives in another experiment), TrackingError when the store cannot be read."""
        from harness.tracking.store import resolve_run_id

        if tracking.backend != "mlflow":
            raise ConfigError("round.resume needs tracking=mlflow: a round's finished jobs are read from its store")
        key = (tracking.uri, tracking.experiment)
        try:
            store = self._stores.get(key) or Store.open(tracking)
            self._stores[key] = store
            run_id = store.call("looking up the round", resolve_run_id, store.client, ref)
            run = store.call("reading the round", store.client.get_run, run_id)
            if run.data.tags.get("role") != "round":
                raise ConfigError(f"round.resume={ref}: run {run_id} is not a round's parent run "
                                  f"(role={run.data.tags.get('role', 'none')})")
            if run.info.experiment_id != store.experiment_id:
                raise ConfigError(f"round.resume={ref}: run {run_id} is in experiment {run.info.experiment_id}, "
                                  f"not in tracking.experiment={tracking.experiment}")
            return run_id, store.children(run_id)
        except TrackingError as exc:
            raise TrackingError(f"{exc}: cannot resume round {ref}") from exc

    def open_round(self, tracking: TrackingConfig, name: str, tags: Mapping[str, Any], redactor: Redactor,
                   round_dir: Path, resume: str | None = None) -> str | None:
        """Open a round's parent run before its jobs start (the round sweeper), or reopen ``resume``
        (a parent id from :meth:`find_round`). Returns its id; None when not tracking or the store
        cannot be reached (one warning, or TrackingError with ``tracking.required``). Closed by
        :meth:`end_rounds`."""
        if tracking.backend != "mlflow":
            return None
        key = (tracking.uri, tracking.experiment)
        try:
            store = self._stores.get(key) or Store.open(tracking)
            self._stores[key] = store
            if resume:
                run_id = resume
                run = store.call("reading the round", store.client.get_run, run_id)
                attempt = int(run.data.tags.get("attempts", "1")) + 1
                store.call("reopening the round", store.client.update_run, run_id, status="RUNNING")
                store.log(run_id, tags=_clean_tags({"attempts": attempt, f"command_{attempt}": tags.get("command"),
                                                    f"run_dir_{attempt}": tags.get("run_dir")}, redactor))
            else:
                run_id = store.start_run(name, _clean_tags({**tags, "attempts": 1}, redactor))
        except TrackingError as exc:
            self._trouble(key, tracking, exc, round_dir, "start")
            return None
        self._rounds[(store.uri, store.experiment_id)] = _Round(store, run_id, tracking, round_dir, redactor)
        log.info("tracking: round parent run %s", run_id)
        return run_id

    def round_children(self, parent: str) -> list[Any]:
        """The child runs of an open round's parent (``mlflow.entities.Run``), oldest first."""
        rnd = next((r for r in self._rounds.values() if r.run_id == parent), None)
        if rnd is None:
            return []
        try:
            return rnd.store.children(parent)
        except TrackingError as exc:
            self._trouble((rnd.tracking.uri, rnd.tracking.experiment), rnd.tracking, exc, rnd.round_dir,
                          f"the round's MLflow run {parent} cannot be read")
            return []

    def tag_runs(self, parent: str, tags: Mapping[str, Mapping[str, Any]]) -> None:
        """Tags set on runs of an open round after they ended (``{run_id: {tag: value}}``)."""
        rnd = next((r for r in self._rounds.values() if r.run_id == parent), None)
        for run_id, run_tags in tags.items() if rnd is not None else ():
            try:
                rnd.store.log(run_id, tags=_clean_tags(run_tags, rnd.redactor))
            except TrackingError as exc:
                self._trouble((rnd.tracking.uri, rnd.tracking.experiment), rnd.tracking, exc, rnd.round_dir,
                              f"run {run_id} lacks its round tags")
                return

    def end_runs(self, parent: str, run_ids: set[str], status: str, tags: Mapping[str, Any]) -> None:
        """Close runs of an open round that their jobs left open (their processes died)."""
        rnd = next((r for r in self._rounds.values() if r.run_id == parent), None)
        for run_id in sorted(run_ids) if rnd is not None else ():
            try:
                rnd.store.log(run_id, tags=_clean_tags(tags, rnd.redactor))
                rnd.store.end(run_id, status)
            except TrackingError as exc:
                self._trouble((rnd.tracking.uri, rnd.tracking.experiment), rnd.tracking, exc, rnd.round_dir,
                              f"run {run_id} is left open")
                return

    def end_rounds(self, table: str | None, failed: bool, metrics: Mapping[str, float] | None = None,
                   files: tuple[Path, ...] = (), tags: Mapping[str, Any] | None = None,
                   killed: bool = False) -> list[str]:
        """Close the parent runs: the round table, Hydra's multirun.yaml, the job count, and any
        further ``metrics``, ``tags`` and ``files`` (artifacts at the top level, secrets masked).

        Status KILLED when the round was interrupted, else FAILED or FINISHED. Returns the ids of
        the parent runs closed."""
        closed = []
        for rnd in self._rounds.values():
            try:
                if table:
                    rnd.store.log_text(rnd.run_id, rnd.redactor.text(table) + "\n", ROUND_TABLE)
                sweep = rnd.round_dir / MULTIRUN_FILE
                if sweep.is_file():
                    rnd.store.log_text(rnd.run_id, rnd.redactor.bytes(sweep.read_bytes()).decode("utf-8", "replace"),
                                       MULTIRUN_FILE)
                for path in files:
                    rnd.store.log_file(rnd.run_id, path, rnd.redactor)
                rnd.store.log(rnd.run_id, metrics={"jobs": rnd.jobs, **(metrics or {})},
                              tags=_clean_tags(tags or {}, rnd.redactor))
                rnd.store.end(rnd.run_id, "KILLED" if killed else "FAILED" if failed else "FINISHED")
                closed.append(rnd.run_id)
                log.info("tracking: the round's MLflow run %s; in the UI: %s", rnd.run_id,
                         ui_link(rnd.store.uri, rnd.store.experiment_id, rnd.run_id))
            except TrackingError as exc:
                key = (rnd.tracking.uri, rnd.tracking.experiment)
                self._trouble(key, rnd.tracking, exc, rnd.round_dir,
                              f"the round's MLflow run {rnd.run_id} is incomplete")
        self._rounds.clear()
        return closed

    def _round(self, store: Store, tracking: TrackingConfig, job: JobInfo, env: Mapping[str, Any],
               redactor: Redactor, name: str, tags: Mapping[str, Any]) -> _Round:
        key = (store.uri, store.experiment_id)
        if key not in self._rounds:
            assert job.round_dir is not None
            harness = env.get("harness", {})
            round_tags = {"run_dir": str(job.round_dir), "harness_version": harness.get("version"),
                          "git_commit": harness.get("git_commit"), "git_dirty": harness.get("git_dirty"),
                          "metric_schema": schema.METRIC_SCHEMA,
                          "loadgen_version": (env.get("loadgen") or {}).get("version"), **tags}
            run_id = store.start_run(name, _clean_tags(round_tags, redactor))
            self._rounds[key] = _Round(store, run_id, tracking, job.round_dir, redactor)
            log.info("tracking: parent run %s", run_id)
        return self._rounds[key]

    def _trouble(self, key: tuple[str | None, str], tracking: TrackingConfig, exc: TrackingError, where: Path,
                 consequence: str) -> None:
        """Fatal with tracking.required, else one warning line per store.

        ``consequence`` is "start" when the run was not opened (then nothing was logged, and a
        required store stops the job before the benchmark), else what is left incomplete.
        """
        if tracking.required:
            if consequence == "start":
                raise TrackingError(f"{exc} and tracking.required=true: the benchmark was not run") from exc
            raise TrackingError(f"{exc} and tracking.required=true: {consequence}; "
                                f"local results in {where}") from exc
        if key in self._dead:
            return
        self._dead.add(key)
        what = "nothing was logged to MLflow" if consequence == "start" else consequence
        log.warning("tracking: %s: %s; local results in %s", exc, what, where)


def _parent_here(store: Store, parent: str) -> None:
    """TrackingError unless ``parent`` is a run of ``store``: a job resolving ``tracking.uri`` to
    another store than the host that launched it (``$MLFLOW_TRACKING_URI`` set there, not here)."""
    try:
        store.call("reading the round's parent run", store.client.get_run, parent)
    except TrackingError as exc:
        if getattr(exc.__cause__, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise TrackingError(f"MLflow store {shown(store.uri)} has no run {parent}, the round's parent run: this "
                            "host resolves tracking.uri differently from the host that launched the round (give "
                            "tracking.uri=... on the command line, or set MLFLOW_TRACKING_URI on every host)") from exc


def run_status(error: BaseException | None) -> str:
    """MLflow's status of a run that ended with ``error``: an interruption (Ctrl-C, SIGTERM) is KILLED."""
    return "FINISHED" if error is None else ("FAILED" if isinstance(error, Exception) else "KILLED")


def exit_code(error: BaseException | None) -> int:
    """The exit code a run that ended with ``error`` gives its command (README: exit codes)."""
    if error is None:
        return 0
    return int(getattr(error, "exit_code", 1 if isinstance(error, Exception) else 128 + signal.SIGINT))


def _clean_tags(tags: Mapping[str, Any], redactor: Redactor) -> dict[str, str]:
    out = {}
    for key, value in tags.items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        out[key] = redactor.text(text)[:5000]  # MLflow's tag value limit is 8000 characters
    return out


def _read_results(output_dir: Path) -> RunResult | None:
    """The result of a run that ended with an error after writing results.json, if it did."""
    try:
        return RunResult.load(output_dir / RESULTS_FILE)
    except ResultsMissing:
        return None
    except ResultsError as exc:
        log.warning("tracking: %s: the MLflow run gets no metrics from it", exc)
        return None
