"""``harness-peak``: the highest target QPS at which LoadGen reports VALID (Server, Interactive).

The config is ``conf/peak.yaml``: everything ``harness`` takes (same groups, overrides and
``scenarios/``) plus the ``peak:`` search settings. Every probe is a complete ``run_benchmark``
performance run in its own directory under the search directory
(``runs/peak/<date>/<time>_<scenario>_<sut>/probe_03_qps12.5``), repeatable on its own with the
``harness`` command in its ``environment.json``. With ``tracking=mlflow`` the search is one
parent run (tag ``role=peak``) with every probe and confirmation as a child, so
``harness-compare --round <parent>`` shows the load curve.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from harness import offline
from harness.config import HarnessConfig, LatencyLimits, to_dict
from harness.errors import HarnessError, ResultError
from harness.hydra_app import Jobs, hydra_files, log_to_file, run_command
from harness.peak import report
from harness.peak.search import Outcome, Probe, Search, Step, failed_outcome, probe_from
from harness.peak.settings import PeakConfig, confirm_config, probe_config, probe_overrides, start_rate
from harness.progress import Display
from harness.redact import Redactor, mask_logs
from harness.rounds.jobs import JobReport, job_overrides
from harness.tracking import JobInfo, TrackingSession
from harness.tracking.tracked import tracked_run

# Overrides the search sets per run itself: dropped from what a probe's `harness` command repeats.
_SEARCH_KEYS = ("peak", "hydra", "mode", "scenario.target_qps")
_PROBE_KEYS = ("scenario.min_duration_s", "scenario.min_query_count")


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def base_overrides(overrides: tuple[str, ...], config: HarnessConfig, step: Step) -> list[str]:
    """The user's overrides that still apply to one run, with the scenario named explicitly
    (``harness`` defaults to offline, ``harness-peak`` to server)."""
    # A quick-mode confirmation names its own length too (settings.confirm_length)
    lengths = step == "probe" or not config.benchmark.official
    dropped = _SEARCH_KEYS + (_PROBE_KEYS if lengths else ())
    kept = [o for o in overrides if not any(_key(o) == k or _key(o).startswith(k + ".") for k in dropped)]
    if not any(_key(o) == "scenario" for o in kept):
        kept.insert(0, f"scenario={config.scenario.name}")
    return kept


def _with_rerun(env: dict[str, Any], program: str, args: list[str], redactor: Redactor) -> dict[str, Any]:
    """``env`` with ``command.rerun`` naming the command that repeats this run (secrets masked)."""
    command = dict(env.get("command") or {})
    cwd = command.get("cwd") or str(Path.cwd())
    command["rerun"] = redactor.text(f"cd {shlex.quote(cwd)} && {shlex.join([program, *args])}")
    return {**env, "command": command}


@dataclasses.dataclass
class Runner:
    """Runs one probe or confirmation as a complete, tracked harness run; prints its progress line."""

    config: HarnessConfig
    settings: PeakConfig
    search_dir: Path
    overrides: tuple[str, ...]
    env: dict[str, Any]
    redactor: Redactor
    tracking: TrackingSession
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"probe": 0, "confirm": 0})
    failed: Probe | None = None  # the run that ended the search with SUT errors

    def __call__(self, n: int, step: Step, qps: float) -> Probe:
        from harness import environment
        from harness.loadgen.logs import parse_detail_log
        from harness.run import DETAIL_LOG, prepare_output_dir

        config = (probe_config(self.config, self.settings, qps) if step == "probe"
                  else confirm_config(self.config, self.settings, qps))
        out = self.search_dir / f"{step}_{n:02d}_qps{qps:g}"
        args = [*base_overrides(self.overrides, self.config, step), *probe_overrides(self.config, self.settings,
                                                                                    qps, step)]
        env = _with_rerun(self.env, "harness", args, self.redactor)
        prepare_output_dir(out)
        environment.write(out, env)
        job = JobInfo(output_dir=out, overrides=tuple(args), round_dir=self.search_dir, job_num=n,
                      argv=("harness", *args), tags=(("peak_step", step),))
        started = time.monotonic()
        display = Display(enabled=config.run.progress, label=f"[{step} {n} · {qps:g} QPS]")
        outcome = tracked_run(self.tracking, config, job, env, self.redactor, fail_on_invalid=False, display=display)
        result, error = outcome.result, outcome.error
        if result is None:
            assert error is not None
            raise error
        detail_path = out / "performance" / DETAIL_LOG
        detail = parse_detail_log(detail_path) if detail_path.is_file() else None
        probe = probe_from(n, step, qps, result, detail, time.monotonic() - started)
        self.counts[step] += 1
        _show(report.progress_line(probe, self.settings, self.counts[step]))
        if error is not None:
            self.failed = probe
            raise error
        return probe


def _job(cfg, jobs: Jobs) -> JobReport:
    """One search (one Hydra job); its report goes back to the sweeper (``harness-peak -m`` on any launcher)."""
    import platform

    from hydra.core.hydra_config import HydraConfig

    started = time.time()
    code = _search(cfg, jobs.tracking)
    jobs.exit_codes.append(code)
    return JobReport(job_overrides(HydraConfig.get().overrides.task), "FINISHED" if code == 0 else "FAILED", code,
                     num=HydraConfig.get().job.get("num"), host=platform.node(), started=started, ended=time.time(),
                     mode="performance")


def _search(cfg, tracking: TrackingSession) -> int:
    """One search: probes, confirmation, peak.json / peak.png / table, tracking; returns its exit code."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from harness import environment
    from harness.loadgen.settings import latency_limits
    from harness.peak.settings import load
    from harness.run import claim_output_dir

    hc = HydraConfig.get()
    search_dir = Path(hc.runtime.output_dir).absolute()
    overrides = job_overrides(hc.overrides.task)
    redactor = Redactor.collect()
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
        redactor = Redactor.collect(raw)
        mask_logs(redactor)
        config, settings = load(raw)
        claim_output_dir(search_dir, config.run.overwrite, hydra_files())
        limits = latency_limits(config)
        env = _with_rerun(environment.capture(overrides, redactor), "harness-peak", list(overrides), redactor)
        environment.write(search_dir, env)
    except HarnessError as exc:
        sys.stderr.write(f"error: {redactor.text(str(exc))}\n")
        log_to_file(redactor.text(str(exc)))
        return exc.exit_code

    started = time.monotonic()
    start = start_rate(config, settings)
    tags = {"role": "peak", "scenario": config.scenario.name, "sut": config.sut.name,
            "benchmark": config.benchmark.name, "model_key": config.benchmark.model_key,
            "command": shlex.join(["harness-peak", *overrides]), "overrides": shlex.join(overrides)}
    params = {**to_dict(config), "peak": dataclasses.asdict(settings)}
    error: BaseException | None = None
    try:
        parent = tracking.start_group(config, search_dir, f"peak {'/'.join(search_dir.parts[-2:])}", tags, env,
                                      redactor, params)
    except HarnessError as exc:  # tracking.required=true and the store cannot be reached
        sys.stderr.write(f"error: {redactor.text(str(exc))}\n")
        log_to_file(redactor.text(str(exc)))
        return exc.exit_code
    _show(f"peak search: {config.scenario.name} · sut={config.sut.name} · start {start:g} QPS in "
          f"[{settings.min_qps:g}, {settings.max_qps:g}], precision {settings.precision:g}, "
          f"at most {settings.max_probes} probes" + (f" · MLflow parent run {parent}" if parent else ""))
    search = Search(settings, start, limits)
    runner = Runner(config, settings, search_dir, overrides, env, redactor, tracking)
    try:
        outcome = search.run(runner)
    except HarnessError as exc:
        error = exc
        probes = search.probes + ([runner.failed] if runner.failed is not None else [])
        outcome = failed_outcome(probes, str(exc))
    except BaseException as exc:  # Ctrl-C or a bug: still leave a record, then re-raise
        error = exc
        outcome = failed_outcome(search.probes, f"interrupted ({type(exc).__name__})")
        _finish(outcome, config, settings, limits, search_dir, started, error, tracking)
        raise
    return _finish(outcome, config, settings, limits, search_dir, started, error, tracking)


def _finish(outcome: Outcome, config: HarnessConfig, settings: PeakConfig, limits: LatencyLimits | None,
            search_dir: Path, started: float, error: BaseException | None, tracking: TrackingSession) -> int:
    """Write peak.json, peak.png and the table; close the parent run; returns the search's exit code."""
    seconds = time.monotonic() - started
    redactor = Redactor.collect(to_dict(config))
    data = report.to_json(outcome, config, settings, limits, search_dir, seconds)
    files = [report.write_json(search_dir / report.PEAK_JSON, data)]
    title = (f"peak search: {config.scenario.name} · {config.benchmark.model_key} · sut={config.sut.name} · "
             + (f"peak {outcome.peak_qps:g} QPS" if outcome.peak_qps is not None else "no VALID rate"))
    png = report.plot(search_dir / report.PEAK_PNG, outcome, limits, title)
    if png is not None:
        files.append(png)
    text = redactor.text(report.table(outcome, config, limits, search_dir, seconds))
    (search_dir / report.PEAK_TABLE).write_text(text + "\n", encoding="utf-8")
    files.append(search_dir / report.PEAK_TABLE)
    _show(text)
    if error is None and not outcome.ok:
        error = ResultError(outcome.message)  # no VALID rate: INVALID everywhere, or not confirmed
    code = error.exit_code if isinstance(error, HarnessError) else (1 if error is not None else 0)
    try:
        parents = tracking.end_rounds(None, failed=error is not None, metrics=report.metrics(outcome),
                                      files=tuple(files), tags={"peak_status": outcome.status},
                                      killed=isinstance(error, KeyboardInterrupt))
        if isinstance(error, KeyboardInterrupt):  # run_command prints it with the interruption's line
            error.add_note(f"peak.json kept in {search_dir}")
            for parent in parents:
                error.add_note(f"the search's MLflow run {parent} marked KILLED")
    except HarnessError as exc:  # tracking.required=true and the store failed
        sys.stderr.write(f"error: {exc}\n")
        log_to_file(str(exc))
        code = max(code, exc.exit_code)
    if isinstance(error, HarnessError):
        sys.stderr.write(f"error: {redactor.text(str(error))}\n")
        log_to_file(redactor.text(str(error)))
    return code


def _show(text: str) -> None:
    """A line of the search's own story: on stdout and in harness-peak.log."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    log_to_file(text, logging.INFO)


def main() -> int:
    """``harness peak`` (alias ``harness-peak``): search the highest VALID Server / Interactive target QPS."""
    offline.enforce()  # before anything imports a Hugging Face library
    return run_command("peak", _job)


if __name__ == "__main__":
    sys.exit(main())
