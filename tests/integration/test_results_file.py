"""results.json through the real LoadGen: what a run writes loads back as the RunResult it returned."""

import json
from pathlib import Path

import pytest

from harness.results import SCHEMA_VERSION, RunResult

TIMING = ["sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16"]
OLD = Path(__file__).resolve().parent.parent / "data" / "results_v0" / "server_performance_echo.json"


@pytest.mark.parametrize("overrides", [
    ["sut=echo", "mode=submission", *TIMING],
    ["sut=echo", "scenario=server", "mode=performance", "scenario.target_qps=250", "scenario.min_duration_s=1",
     *TIMING],
    ["sut=failing", "sut.fail_every=0", "sut.fail_indices=[3]", "scenario=single_stream", "mode=performance",
     "scenario.min_duration_s=0.5", "scenario.expected_latency_ms=5", *TIMING],
], ids=["offline-submission", "server-performance", "single_stream-failed"])
def test_a_runs_results_json_loads_as_the_result_it_returned(run, overrides):
    result = run(*overrides)
    written = json.loads((Path(result.output_dir) / "results.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    assert RunResult.load(result.output_dir) == result
    # Only schema_version is new: every key of a file written before it is still written
    assert set(written) == {"schema_version", *json.loads(OLD.read_text())}
    if result.verdict == "FAILED":
        assert result.samples_per_second is None and result.extra.failed_run_figures.samples_per_second > 0
