"""sut=hf end to end through the real LoadGen, with the embedded tiny model on the bundled data."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.accuracy import read_accuracy_log
from harness.config import compose
from harness.datasets import load_dataset
from harness.datasets.prompts import build_samples
from harness.sut import SUTContext
from harness.sut.hf.adapter import HFSUT, HFParams

N_SAMPLES, MAX_NEW = 8, 12
SMALL = ["sut=hf", f"dataset.n_samples={N_SAMPLES}", f"benchmark.max_new_tokens={MAX_NEW}"]


@pytest.fixture(scope="module")
def expected() -> dict[int, tuple[int, ...]]:
    """The tokens greedy decoding gives each sample, computed here without LoadGen or the bridge."""
    config = compose(SMALL)
    samples = build_samples(config.benchmark, load_dataset(config.dataset))
    sut = HFSUT.create(HFParams(), SUTContext(corpus=[], max_new_tokens=MAX_NEW))
    try:
        return {s.index: sut.generate([s])[0].token_ids for s in samples}
    finally:
        sut.close()


def test_offline_accuracy_logs_the_greedy_tokens(run, expected):
    # (The default CLI run covers an Offline performance test of sut=hf.)
    result = run(*SMALL, "scenario=offline", "mode=accuracy", "sut.max_batch_size=4")
    assert result.ok, result.error_messages
    acc = Path(result.output_dir) / "accuracy"
    logged = {i: tuple(ids) for i, ids in read_accuracy_log(acc / "mlperf_log_accuracy.json").items()}
    assert logged == expected  # left-padded batches of 4 give each sample's own greedy tokens
    assert (acc / "predictions.json").is_file()
    model = result.extra["model"]  # what MLflow tags as the model fingerprint
    assert model["architecture"] == "LlamaForCausalLM" and len(model["fingerprint"]) == 64
    assert model["weight_bytes"] == 4 * model["parameters"]  # float32 on CPU


def test_server_streams_first_tokens_and_its_outputs_match_offline(run, expected):
    result = run(*SMALL, "scenario=server", "mode=submission", "scenario.target_qps=20",
                 "scenario.min_duration_s=1", "scenario.min_query_count=40", timeout_s=180)
    assert result.ok, result.error_messages
    # LoadGen measured TTFT from FirstTokenComplete: it comes before the whole answer.
    assert result.ttft_ms.p50 < result.latency_ms.p50 and result.tpot_ms.p50 > 0
    assert result.tokens_per_second > 0
    acc = Path(result.output_dir) / "accuracy"
    logged = {i: tuple(ids) for i, ids in read_accuracy_log(acc / "mlperf_log_accuracy.json").items()}
    assert logged == expected  # in-flight batching changes no token


def test_single_stream_reports_token_latencies(run):
    result = run(*SMALL, "scenario=single_stream", "mode=performance", "scenario.min_duration_s=0.5",
                 "scenario.min_query_count=20", "scenario.expected_latency_ms=5")
    assert result.ok, result.error_messages
    assert result.extra["samples_issued"]["performance"] >= 20
    assert 0 < result.ttft_ms.p50 < result.latency_ms.p50
    assert result.tokens_per_second > 0


@pytest.mark.parametrize(("override", "error", "message"), [
    ("sut.model_path={missing}", "ConfigError", "sut.model_path: no model directory at"),
    ("sut.draft_model_path={missing}", "ConfigError", "sut.draft_model_path: no model directory at"),
    ("sut.max_batch_size=0", "ConfigError", "config key .sut.max_batch_size. must be >= 1, got 0"),
])
def test_bad_sut_settings_fail_before_any_loadgen_test(make_config, tmp_path, override, error, message):
    """The preflight in the parent names the key at once; no LoadGen process is started."""
    from harness.errors import HarnessError
    from harness.run import run_benchmark

    config = make_config("sut=hf", "mode=performance", override.format(missing=tmp_path / "nowhere"))
    with pytest.raises(HarnessError, match=message) as err:
        run_benchmark(config, tmp_path / "run")
    assert type(err.value).__name__ == error
    assert not (tmp_path / "run" / "performance").exists()


def test_a_streamed_run_prints_no_warnings(tmp_path):
    """Server and SingleStream decode through the in-flight decoder's own forward calls: no library
    warning (transformers' FutureWarning on `past_key_values`) reaches the run's output."""
    import re
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "harness", *SMALL, "scenario=single_stream", "mode=performance",
                           "scenario.min_query_count=16", "scenario.min_duration_s=0.5",
                           f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert not re.search(r"\w+Warning\b|deprecated", output), output
