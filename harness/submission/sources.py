"""A finished harness run as a submission source: its directory (or MLflow run, downloaded) and records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import SubmissionError
from harness.results import RESULTS_FILE, ResultsError, ResultsMissing, RunResult


@dataclass(frozen=True)
class RunSource:
    """What harness-submit reads from one run directory."""

    path: Path
    results: RunResult
    config: dict[str, Any]
    environment: dict[str, Any] | None  # absent for runs made through the Python API
    mlflow_run_id: str | None = None

    @property
    def scenario(self) -> str:
        return self.results.scenario

    @property
    def label(self) -> str:
        return self.mlflow_run_id or str(self.path)


def _json(path: Path, required: bool) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        if not required:
            return None
        raise SubmissionError(f"{path} not found: is {path.parent} a harness run directory?") from exc
    except (OSError, ValueError) as exc:
        raise SubmissionError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: expected a JSON object")
    return data


def load_run(ref: str, tracking_uri: str | None = None) -> RunSource:
    """A run directory, or an MLflow run id whose artifacts are downloaded first."""
    path = Path(ref).expanduser()
    run_id = None
    if not path.is_dir():
        from harness.tracking.store import client, default_uri, download_run_dir, looks_like_run_id, resolve_run_id

        if path.exists() or not looks_like_run_id(ref):
            raise SubmissionError(f"run directory not found: {path}")
        run_id = resolve_run_id(client(tracking_uri or default_uri()), ref)  # any unique prefix
        path = download_run_dir(run_id, tracking_uri)
    return RunSource(path=path, results=_results(path), config=_json(path / "config.json", True),
                     environment=_json(path / "environment.json", False), mlflow_run_id=run_id)


def _results(run_dir: Path) -> RunResult:
    try:
        return RunResult.load(run_dir / RESULTS_FILE)
    except ResultsMissing as exc:
        raise SubmissionError(f"{exc}: is {run_dir} a harness run directory?") from exc
    except ResultsError as exc:
        raise SubmissionError(str(exc)) from exc
