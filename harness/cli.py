"""Command-line entry points (thin): compose the Hydra config and call ``run_benchmark``.

Hydra stops here: the composed DictConfig becomes a plain dict, then frozen dataclasses
(:func:`harness.config.load_config`). Scenario files live in the top-level ``scenarios/``
folder and are registered as the ``scenario`` config group at startup.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from harness.config import CONF_DIR, quote_null_sut, register_scenarios
from harness.errors import HarnessError
from harness.results import round_table

log = logging.getLogger("harness")

# Exit codes and results of the jobs of this process (one per job in a multirun round).
_exit_codes: list[int] = []
_results: list = []


def _job(cfg) -> None:
    """One Hydra job: a complete benchmark run in Hydra's run directory."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from harness.config import load_config
    from harness.results import summary
    from harness.run import check_result, run_benchmark

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
        config = load_config(raw)
        result = run_benchmark(config, output_dir)
        _results.append(result)
        sys.stdout.write(summary(result) + "\n")
        sys.stdout.flush()
        check_result(result, config.fail_on_invalid)
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        _exit_codes.append(exc.exit_code)
        return
    _exit_codes.append(0)


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
    import hydra

    argv = quote_null_sut(sys.argv[1:])
    problem = _unwritable_output_dir(argv)
    if problem:
        sys.stderr.write(f"error: output directory not writable: {problem}\n")
        sys.exit(2)
    sys.argv[1:] = argv
    register_scenarios()
    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(_job)
    app()
    if len(_results) > 1:
        sys.stdout.write(round_table(_results) + "\n")
    sys.exit(max(_exit_codes, default=0))


if __name__ == "__main__":
    main()
