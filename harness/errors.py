"""The HarnessError family: expected failures that end a run with one clear line.

Anything raised as a HarnessError is reported by the CLI as ``error: <message>`` with a
non-zero exit and no traceback; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal


class HarnessError(Exception):
    """Base of every error the harness reports to the user without a traceback."""

    exit_code = 2


class ConfigError(HarnessError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


class DatasetError(HarnessError):
    """A dataset file is missing, unreadable or lacks a field; the message names the file."""


class SUTError(HarnessError):
    """The system under test failed to start or failed samples during a run."""

    exit_code = 3


class OutputError(HarnessError):
    """The output directory cannot be created or written."""


class AccuracyError(HarnessError):
    """An accuracy log cannot be decoded or scored."""


class ResultError(HarnessError):
    """The run finished but its result fails a check the user asked for (fail_on_invalid)."""

    exit_code = 4


class TrackingError(HarnessError):
    """The tracking store cannot be reached or written (fatal only with tracking.required=true)."""

    exit_code = 5


class RunIdError(HarnessError):
    """A run id (or the start of one) names no run of the store, or more than one."""


class SubmissionError(HarnessError):
    """A run cannot go into a submission tree, or a tree cannot be written or read."""


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived: SIGTERM (what ``timeout``, Slurm and Kubernetes send) or Ctrl-C.

    Raised in the main thread by the CLI's signal handlers, so both take Ctrl-C's path: the test
    process is ended, the MLflow run is closed KILLED, and what the run directory holds is kept.
    The exit code is the shell's for the signal (128 + its number: 143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
