"""Where things go in a v6.0+ submission tree (MLPERF_FACTS.md, "Submission tree"), and safe names.

``<root>/<division>/<submitter>/{src, systems/<system>.json, results/<system>/<benchmark>/<Scenario>/}``.
Every name that becomes a path component is checked, and every path is checked to stay inside
the root, so a hostile submitter or system name (``../x``) cannot write elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SubmissionError

DIVISIONS = ("closed", "open")
# harness scenario name -> submission folder; Interactive is a Server run under its own folder.
SCENARIO_DIRS = {"offline": "Offline", "server": "Server", "interactive": "Interactive",
                 "single_stream": "SingleStream"}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

# Files of one scenario result, relative to its folder.
PERF_DIR = "performance/run_1"
ACC_DIR = "accuracy"
TEST06_DIR = "TEST06"
DETAIL = "mlperf_log_detail.txt"
SUMMARY = "mlperf_log_summary.txt"
ACC_LOG = "mlperf_log_accuracy.json"
ACC_TXT = "accuracy.txt"
VERIFY = "verify_accuracy.txt"
MEASUREMENTS = "measurements.json"
USER_CONF = "user.conf"
README = "README.md"
# Harness record of what was written: source run, full accuracy-log hash and size, file hashes.
MANIFEST = "harness_manifest.json"

REQUIRED_FILES = (f"{PERF_DIR}/{DETAIL}", f"{PERF_DIR}/{SUMMARY}", f"{ACC_DIR}/{ACC_TXT}", f"{ACC_DIR}/{ACC_LOG}",
                  f"{ACC_DIR}/{DETAIL}", f"{ACC_DIR}/{SUMMARY}", MEASUREMENTS, USER_CONF, README, MANIFEST)
TEST06_FILES = (f"{TEST06_DIR}/{VERIFY}", f"{TEST06_DIR}/{ACC_DIR}/{ACC_LOG}", f"{TEST06_DIR}/{PERF_DIR}/{DETAIL}")


def safe_name(kind: str, value: str) -> str:
    """``value`` as one path component: letters, digits, ``._+-``, not starting with a dot."""
    if not isinstance(value, str) or not _SAFE.match(value) or value in (".", ".."):
        raise SubmissionError(f"{kind} name {value!r} is not allowed: use letters, digits and ._+- "
                              "(no '/', no leading '.', at most 64 characters)")
    return value


@dataclass(frozen=True)
class Tree:
    """One submitter's tree in one division, under ``root``."""

    root: Path
    division: str
    submitter: str

    def __post_init__(self) -> None:
        if self.division not in DIVISIONS:
            raise SubmissionError(f"division must be closed or open, got {self.division!r}")
        safe_name("submitter", self.submitter)

    @property
    def base(self) -> Path:
        return self.inside(Path(self.root) / self.division / self.submitter)

    def inside(self, path: Path) -> Path:
        """``path``, after proving it stays under the submission root (no traversal, no symlink out)."""
        root = Path(self.root).resolve()
        resolved = Path(path).resolve()
        if resolved != root and root not in resolved.parents:
            raise SubmissionError(f"refusing to write {path}: outside the submission root {root}")
        return resolved

    def system_file(self, system: str) -> Path:
        return self.inside(self.base / "systems" / f"{safe_name('system', system)}.json")

    def result_dir(self, system: str, benchmark: str, scenario: str) -> Path:
        folder = SCENARIO_DIRS.get(scenario)
        if folder is None:
            raise SubmissionError(f"scenario {scenario!r} has no submission folder (known: {', '.join(SCENARIO_DIRS)})")
        return self.inside(self.base / "results" / safe_name("system", system) / safe_name("benchmark", benchmark)
                           / folder)

    @property
    def src_dir(self) -> Path:
        return self.inside(self.base / "src")
