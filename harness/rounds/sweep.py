"""The round sweeper: a round (``harness -m``) is one MLflow parent run with one child per job, on any launcher.

Hydra's basic sweeper expands the command line into jobs and hands them to the launcher
(``hydra/launcher``: basic, joblib, submitit_local, submitit_slurm, ray). This sweeper does the same
and wraps the round around it, in the launching process, which every launcher keeps until its jobs
have ended:

1. it loads every job's config, so a bad one fails the round before anything is queued;
2. with ``round.resume=<parent id>`` it reads that round's child runs and drops the jobs that have
   a FINISHED one (matched by the job's overrides);
3. it refuses a launch that would put a performance job beside another job on one host
   (:mod:`harness.rounds.hygiene`);
4. it opens (or reopens) the round's parent run and launches the jobs with ``round.parent=<id>``,
   so each job opens its child run under it wherever it runs;
5. once the launcher returns, it takes every job's report (its return value, else its child run),
   tags on each child the jobs that shared its host at the same time, prints and keeps the round
   table, and closes the parent: FINISHED only if every job of the round has a FINISHED run.

``harness-peak -m`` uses it with ``kind=peak``: each job is a search that opens its own parent run
(``role=peak``), so only steps 1, 3 and the exit codes apply.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper

from harness.errors import ConfigError, HarnessError
from harness.rounds import hygiene
from harness.rounds.jobs import NO_REPORT, ROUND_KEY, ROUND_TABLE, JobReport, job_key, job_overrides, round_table
from harness.rounds.jobs import overlaps as shared_hosts

log = logging.getLogger(__name__)

LOST = "the job ended without closing its run: its process was killed (time limit, out of memory, preemption?)"


class RoundSweeper(Sweeper):
    """Hydra's basic sweeper (cartesian product of the sweeps, ``max_batch_size``, ``params``) with
    the round around it. ``kind``: ``round`` (``harness -m``) or ``peak`` (``harness-peak -m``)."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 kind: str = "round") -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.kind = kind
        self.config: Any = None
        self.hydra_context: Any = None
        self.launcher: Any = None
        # Where the command collects the rounds' reports (harness.hydra_app.Jobs, carried by the
        # task Hydra runs): its exit code is the highest of theirs.
        self.round_reports: list[JobReport] = []

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        jobs = getattr(task_function, "jobs", None)
        if jobs is not None:
            self.round_reports = jobs.round_reports
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list[JobReport | None]:
        from hydra._internal.core_plugins import basic_sweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        [jobs] = basic_sweeper.BasicSweeper.split_arguments(overrides, None)  # Hydra's own expansion
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        configs = [self._job_config(i, job) for i, job in enumerate(jobs)]
        return Round(self, jobs, configs, sweep_dir).run()

    def _job_config(self, num: int, overrides: Sequence[str]) -> Any:
        """Job ``num``'s HarnessConfig, as the job will compose it; ConfigError (exit 2) naming the job."""
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf, open_dict

        from harness.config import hydra_error_message, load_config
        from harness.redact import Redactor

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        hydra_config = HydraConfig.instance()
        before = hydra_config.cfg
        hydra_config.set_config(cfg)  # ${hydra:...} resolves as in the job (every launcher sets it there)
        with open_dict(cfg):
            del cfg["hydra"]
        raw: dict[str, Any] = {}
        try:
            raw = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
            raw.pop("peak", None)  # harness-peak's search settings: checked by each search
            return load_config(raw)
        except HarnessError as exc:
            message = str(exc)
        except Exception as exc:  # OmegaConf: an interpolation that cannot be resolved
            message = hydra_error_message(exc)
        finally:
            hydra_config.cfg = before
        redactor = Redactor.collect(raw)
        raise ConfigError(redactor.text(f"job {num} ({shlex.join(job_overrides(overrides))}): {message}"))

    def launch(self, batch: list[list[str]], first: int) -> Sequence[JobReturn]:
        return self.launcher.launch(batch, initial_job_idx=first)


class Round:
    """One round: what to run, the launch, and its record."""

    def __init__(self, sweeper: RoundSweeper, jobs: list[list[str]], configs: list[Any], sweep_dir: Path) -> None:
        from harness.redact import Redactor, mask_logs
        from harness.tracking import TrackingSession

        self.sweeper, self.jobs, self.configs, self.dir = sweeper, jobs, configs, sweep_dir
        self.kind = sweeper.kind
        self.redactor = Redactor.collect(*(_plain(c) for c in configs))
        mask_logs(self.redactor)  # the launcher logs every job's overrides
        self.tracking = TrackingSession()
        self.parent: str | None = None
        self.earlier: dict[tuple[str, ...], JobReport] = {}  # a resumed round's jobs, by job_key
        self.todo: list[int] = []  # the jobs launched now
        self.attempts: list[JobReport] = []  # a resumed round's child runs, every attempt

    def run(self) -> list[JobReport | None]:
        hc = self.sweeper.config.hydra  # type: ignore[union-attr]
        tracking, resume = self._round_settings()
        if resume:
            self.parent, children = self.tracking.find_round(tracking, resume)
            self.attempts = [JobReport.of_run(r) for r in children]
            for report in self.attempts:  # per job: the latest run, a FINISHED one first
                known = self.earlier.get(report.key)
                if known is None or known.status != "FINISHED" or report.status == "FINISHED":
                    self.earlier[report.key] = report
        self.todo = todo = [i for i, job in enumerate(self.jobs)
                            if not (job_key(job) in self.earlier and self.earlier[job_key(job)].status == "FINISHED")]
        batch = min(len(todo), self.sweeper.max_batch_size or len(todo))
        performance = sum(1 for i in todo if self.kind == "peak" or self.configs[i].mode != "accuracy")
        hygiene.check(_launcher(hc), str(hc.runtime.choices.get("hydra/launcher")), batch, performance)
        if self.kind == "round":
            self.parent = self.tracking.open_round(tracking, "round " + "/".join(self.dir.parts[-2:]),
                                                   self._tags(), self.redactor, self.dir, resume=self.parent)
        if resume:
            _say(f"resuming round {self.parent}: {len(self.jobs) - len(todo)} of {len(self.jobs)} jobs have a "
                 f"FINISHED run; launching {len(todo)}")
        returns: dict[int, JobReturn] = {}
        failed_launches = 0
        for start in range(0, len(todo), batch or 1):
            chosen = todo[start:start + batch]
            try:
                launched = self.sweeper.launch([self._with_parent(self.jobs[i]) for i in chosen], chosen[0])
            except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: close the round, then let the CLI say so
                for parent in self._close(returns, killed=True):
                    exc.add_note(f"the round's MLflow run {parent} marked KILLED")
                raise
            except Exception as exc:  # the launcher lost a job (its process was killed): go on with the rest
                failed_launches += 1
                why = " ".join(" ".join(str(exc).splitlines()[:2]).split())  # submitit adds the job's stderr
                _say(f"error: hydra/launcher={hc.runtime.choices.get('hydra/launcher')} lost job(s) "
                     f"{', '.join(map(str, chosen))}: {type(exc).__name__}: {self.redactor.text(why)[:300]}", err=True)
                continue
            returns.update(zip(chosen, launched, strict=True))
        reports = self._reports(returns)
        self._close(returns, reports=reports)
        crashed = [r._return_value for r in returns.values() if r.status == JobStatus.FAILED]
        if crashed and isinstance(crashed[0], BaseException) and not failed_launches:
            raise crashed[0]  # a bug in a job: its traceback, as without a round
        return reports

    def _round_settings(self) -> tuple[Any, str | None]:
        """The store and ``round.resume`` of the round: one for all its jobs."""
        first = self.configs[0]
        for i, c in enumerate(self.configs):
            if (c.tracking.backend, c.tracking.uri, c.tracking.experiment) != (
                    first.tracking.backend, first.tracking.uri, first.tracking.experiment):
                raise ConfigError(f"job {i}: a round's jobs share one MLflow store and experiment "
                                  "(tracking.backend, tracking.uri, tracking.experiment cannot be swept)")
        if any(c.round.parent for c in self.configs):
            raise ConfigError("round.parent is set by the harness for each job of a round; "
                              "to finish an earlier round, give round.resume=<its parent run id>")
        if self.kind == "peak" and first.round.resume:
            raise ConfigError("round.resume: harness-peak searches are not resumed (each search is its own "
                              "MLflow parent run)")
        return first.tracking, first.round.resume

    def _tags(self) -> dict[str, Any]:
        from harness import __version__
        from harness.environment import git_state, package_version
        from harness.tracking.schema import METRIC_SCHEMA

        hc = self.sweeper.config.hydra  # type: ignore[union-attr]
        return {"role": "round", "run_dir": str(self.dir), "command": shlex.join(["harness", *sys.argv[1:]]),
                "launcher": hc.runtime.choices.get("hydra/launcher"), "harness_version": __version__,
                **git_state(), "metric_schema": METRIC_SCHEMA,
                "loadgen_version": package_version("mlcommons-loadgen")}

    def _with_parent(self, job: Sequence[str]) -> list[str]:
        parent = [f"{ROUND_KEY}.parent={self.parent}"] if self.parent else []
        return [*job, *parent]

    def _reports(self, returns: dict[int, JobReturn]) -> list[JobReport | None]:
        """Each job's report: for a job launched now, its return value, else the child run it opened
        now, else the error it raised; for a job an earlier attempt finished, that attempt's run."""
        earlier = {r.run_id for r in self.earlier.values()}
        now: dict[tuple[str, ...], JobReport] = {}
        if self.parent:
            for report in (JobReport.of_run(r) for r in self.tracking.round_children(self.parent)):
                if report.run_id not in earlier:
                    now[report.key] = report
        reports: list[JobReport | None] = []
        for i, job in enumerate(self.jobs):
            ret = returns.get(i)
            value = ret._return_value if ret is not None else None
            if ret is not None and ret.status == JobStatus.COMPLETED and isinstance(value, JobReport):
                reports.append(value)
            elif job_key(job) in now:
                reports.append(now[job_key(job)])
            elif ret is not None and ret.status == JobStatus.FAILED:  # raised before its run was opened
                reports.append(JobReport(job_overrides(job), "FAILED", 1, num=i,
                                         error=self.redactor.text(f"{type(value).__name__}: {value}")))
            elif i in self.todo:
                reports.append(None)
            else:
                reports.append(self.earlier[job_key(job)])
        return reports

    def _close(self, returns: dict[int, JobReturn], reports: list[JobReport | None] | None = None,
               killed: bool = False) -> list[str]:
        """Tag overlaps, print and keep the table, close the parent run; returns the parents closed."""
        reports = reports if reports is not None else self._reports(returns)
        self.sweeper.round_reports.extend(r if r is not None else JobReport(job_overrides(j), NO_REPORT, 1, num=i)
                                          for i, (j, r) in enumerate(zip(self.jobs, reports, strict=True)))
        if self.kind != "round":
            return []
        lost = {r.run_id for r in reports if r is not None and r.status == NO_REPORT and r.run_id}
        if lost and self.parent:  # opened and never closed: the job's process died (killed, out of memory)
            self.tracking.end_runs(self.parent, lost, "KILLED", {"error": LOST})
        reports = [replace(r, status="KILLED", error=LOST) if r is not None and r.run_id in lost else r
                   for r in reports]
        present = [r for r in reports if r is not None]
        shared_of = shared_hosts(present)
        index = {id(r): i for i, r in enumerate(reports) if r is not None}
        shared = {index[id(r)]: [index[id(present[j])] for j in shared_of[k]] for k, r in enumerate(present)}
        table = round_table(self.jobs, reports, self.parent, shared)
        (self.dir / ROUND_TABLE).write_text(self.redactor.text(table) + "\n", encoding="utf-8")
        if len(self.jobs) > 1 or self.parent:
            _say(self.redactor.text(table))
        if not self.parent:
            return []
        tags: dict[str, dict[str, Any]] = {
            r.run_id: {"host": r.host, "shared_host_with": ", ".join(
                f"job {j}" + (f" ({reports[j].run_id})" if reports[j].run_id else "")  # type: ignore[union-attr]
                for j in shared.get(index[id(r)], [])) or "none"}
            for r in present if r.run_id}
        for i in self.todo:  # an earlier attempt's run of a job run again: harness-compare --round leaves it out
            if reports[i] is not None and reports[i].run_id:  # type: ignore[union-attr]
                for old in self.attempts:
                    if old.key == job_key(self.jobs[i]) and old.run_id and old.status != "FINISHED":
                        tags[old.run_id] = {"superseded_by": reports[i].run_id}  # type: ignore[union-attr]
        self.tracking.tag_runs(self.parent, tags)
        failed = killed or any(r is None or r.status != "FINISHED" for r in reports)
        finished = sum(1 for r in reports if r is not None and r.status == "FINISHED")
        return self.tracking.end_rounds(table, failed=failed, killed=killed,
                                        metrics={"jobs": len(self.jobs), "jobs_finished": finished})


def _launcher(hydra_cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(hydra_cfg.launcher, resolve=True)  # type: ignore[return-value]
    except Exception:  # an interpolation only the job can resolve: the keys read here are plain values
        return OmegaConf.to_container(hydra_cfg.launcher, resolve=False)  # type: ignore[return-value]


def _plain(config: Any) -> dict[str, Any]:
    from harness.config import to_dict

    return to_dict(config)


def _say(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()
