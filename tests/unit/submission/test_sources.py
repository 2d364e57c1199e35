"""harness-submit's run sources: results.json read typed through RunResult.load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import SubmissionError
from harness.results import RunResult
from harness.submission.sources import load_run

OLD = Path(__file__).resolve().parents[2] / "data" / "results_v0" / "offline_submission_hf_test06.json"


def _run_dir(tmp_path: Path, results: str) -> Path:
    (tmp_path / "results.json").write_text(results)
    (tmp_path / "config.json").write_text(json.dumps({"benchmark": {"name": "sample"}}))
    return tmp_path


def test_a_run_written_before_schema_version_is_read_typed(tmp_path):
    run = load_run(str(_run_dir(tmp_path, OLD.read_text())))
    assert run.results == RunResult.load(OLD) and run.scenario == "offline"
    assert run.results.extra.compliance["TEST06"].passed is True and run.environment is None


def test_a_run_whose_results_cannot_be_read_is_refused_naming_the_file_and_key(tmp_path):
    with pytest.raises(SubmissionError, match=r"results.json: errors: expected a number, got a string$"):
        load_run(str(_run_dir(tmp_path, json.dumps({"scenario": "offline", "errors": "none"}))))
    with pytest.raises(SubmissionError, match=r"results.json: written with results schema_version 7, newer"):
        load_run(str(_run_dir(tmp_path, json.dumps({"schema_version": 7}))))
    (tmp_path / "results.json").unlink()
    with pytest.raises(SubmissionError, match=f"{tmp_path / 'results.json'} not found: is {tmp_path} a harness run"):
        load_run(str(tmp_path))
