"""``harness``: the front door. ``harness <command>`` for every tool; without a command, ``harness
[overrides]`` runs a benchmark (the ``run`` command) exactly as before.

Two argument styles, one per kind of command: Hydra overrides (``key=value``, ``group=option``,
``-m``) for the commands that build runs (run, peak), argparse options for the tools that read,
serve or compare results. The ``harness-<command>`` scripts are aliases of ``harness <command>``.

The run command's Hydra job is here too: the composed DictConfig becomes a plain dict, then frozen
dataclasses (:func:`harness.config.load_config`), and :func:`harness.tracking.tracked.tracked_run`
runs it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import logging
import math
import pkgutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from harness import offline
from harness.errors import ConfigError, HarnessError
from harness.hydra_app import Jobs, hydra_files, job_info, log_to_file, run_command
from harness.progress import Display
from harness.rounds.jobs import JobReport
from harness.tracking import JobInfo
from harness.tracking.session import exit_code, run_status
from harness.tracking.tracked import Outcome, tracked_run

log = logging.getLogger("harness")


@dataclass(frozen=True)
class Command:
    """One ``harness <command>``: the module whose ``main()`` runs it (reading ``sys.argv``), what it
    does, and its ``harness-<command>`` alias."""

    module: str
    summary: str
    alias: str | None = None


COMMANDS: dict[str, Command] = {
    "run": Command("harness.cli", "run a benchmark (the default command): Hydra overrides, -m for a round"),
    "peak": Command("harness.peak.cli", "the highest Server/Interactive QPS LoadGen reports VALID (Hydra "
                    "overrides)", "harness-peak"),
    "audit": Command("harness.audit", "re-score and re-judge a finished run's accuracy", "harness-audit"),
    "compare": Command("harness.compare", "tracked runs side by side, deltas, a regression gate, a report",
                       "harness-compare"),
    "submit": Command("harness.submission.writer", "an MLPerf submission tree from run directories",
                      "harness-submit"),
    "check": Command("harness.submission.checker", "check a submission tree against MLPerf's rules",
                     "harness-check"),
    "serve": Command("harness.serve", "an OpenAI-compatible server on the in-process SUT", "harness-serve"),
    "providers": Command("harness.providers", "OpenAI-compatible endpoints side by side (output speed, TTFT)",
                         "harness-providers"),
    "bench": Command("harness.cli", "the harness's own benchmarks (harness/bench): list them, or run one"),
}


def commands_help() -> str:
    """What ``harness --help`` says before the run's own help."""
    width = max(map(len, COMMANDS))
    lines = ["harness <command> [arguments]: the commands (harness <command> --help for each). Without a",
             "command, harness [overrides] runs a benchmark (harness run); harness-<command> scripts are aliases.",
             "", "Commands:"]
    lines += [f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items()]
    return "\n".join(lines) + "\n\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``harness [command] [arguments]``: dispatch to the command; ``run`` when none is named."""
    offline.enforce()  # before anything imports a Hugging Face library
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(commands_help())
        sys.stdout.flush()
    name = argv[0] if argv and argv[0] in COMMANDS else "run"
    args = argv[1:] if argv and argv[0] == name else argv
    sys.argv = [f"harness {name}" if name != "run" else "harness", *args]  # what the command reads, and its usage lines
    if name == "run":
        code = run()
    elif name == "bench":
        code = bench(args)
    else:
        code = importlib.import_module(COMMANDS[name].module).main()
    sys.exit(code or 0)


def run() -> int:
    """``harness run``: a benchmark run (``-m``: a round of runs, through the round sweeper)."""
    return run_command("config", _job)


def _job(cfg, jobs: Jobs) -> JobReport:
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

    job = job_info("harness")
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
        jobs.exit_codes.append(exc.exit_code)
        return JobReport(job.overrides, "FAILED", exc.exit_code, num=job.job_num, host=platform.node(),
                         run_dir=str(job.output_dir), error=redactor.text(f"{type(exc).__name__}: {exc}"))

    def show(result) -> None:
        text = redactor.text(summary(result))
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        log_to_file(text, logging.INFO)

    display = Display(enabled=config.run.progress, label=_job_label(job))
    try:
        outcome = tracked_run(jobs.tracking, config, job, env, redactor, fail_on_invalid=config.fail_on_invalid,
                              on_result=show, display=display)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: run_command reports it
        exc.add_note(f"partial results kept in {job.output_dir}")
        raise
    error = outcome.error
    if error is not None:
        sys.stderr.write(f"error: {redactor.text(str(error))}\n")
        log_to_file(redactor.text(str(error)))
    jobs.exit_codes.append(exit_code(error))
    return _report(job, config, env, outcome, redactor)


def _report(job: JobInfo, config, env, outcome: Outcome, redactor) -> JobReport:
    from harness.tracking.schema import metrics, validity

    result, error = outcome.result, outcome.error
    return JobReport(job.overrides, run_status(error), exit_code(error), num=job.job_num,
                     host=(env.get("os") or {}).get("hostname"), started=outcome.span[0] if outcome.span else None,
                     ended=outcome.span[1] if outcome.span else None, run_id=outcome.run_id,
                     run_dir=str(job.output_dir), scenario=config.scenario.name, sut=config.sut.name,
                     mode=config.mode, verdict=validity(result) if result is not None else None,
                     accuracy=result.accuracy.verdict if result is not None and result.accuracy is not None else None,
                     metrics=metrics(result) if result is not None else {},
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



def bench_scripts() -> dict[str, str]:
    """The scripts of ``harness/bench`` (modules with a ``main()`` run as ``__main__``): name -> what it measures."""
    import harness.bench

    scripts = {}
    for module in pkgutil.iter_modules(harness.bench.__path__):
        tree = ast.parse((importlib.resources.files("harness.bench") / f"{module.name}.py").read_text("utf-8"))
        is_script = any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)
        if is_script and any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            scripts[module.name] = (ast.get_docstring(tree) or "").split("\n\n")[0].replace("\n", " ")
    return scripts


def bench(argv: Sequence[str]) -> int:
    """``harness bench``: list the benchmark scripts; ``harness bench NAME [args]`` runs one."""
    scripts = bench_scripts()
    if not argv or argv[0] in ("-h", "--help", "list"):
        width = max(map(len, scripts))
        sys.stdout.write("harness bench NAME [arguments]: the harness's own benchmarks (python -m harness.bench.NAME "
                         "runs the same); harness bench NAME --help for each.\n\n"
                         + "".join(f"  {n:<{width}}  {doc}\n" for n, doc in sorted(scripts.items())))
        return 0
    name, args = argv[0], list(argv[1:])
    if name not in scripts:
        sys.stderr.write(f"error: no benchmark script '{name}' (available: {', '.join(sorted(scripts))})\n")
        return 2
    sys.argv = [f"harness bench {name}", *args]
    return importlib.import_module(f"harness.bench.{name}").main() or 0


if __name__ == "__main__":
    main()
