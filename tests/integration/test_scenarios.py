"""End to end through the real LoadGen with the fake SUTs on the bundled data."""

import json
from pathlib import Path

import pytest

from harness.accuracy import decode_accuracy_log
from harness.config import compose
from harness.datasets import load_dataset
from harness.datasets.prompts import build_samples
from harness.loadgen.logs import parse_detail_log
from harness.sut.tokenizer import WordTokenizer

# Echo timings fast enough that the quick settings finish in seconds on two cores, and still VALID.
# The default SUT is the torch model, so these tests name the fake they measure.
TIMING = ["sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16"]
FAST = ["sut=echo", *TIMING]
QUICK = {
    "offline": [],
    "server": ["scenario.target_qps=250", "scenario.min_duration_s=1"],
    "interactive": ["scenario.target_qps=250", "scenario.min_duration_s=1"],
    "single_stream": ["scenario.min_duration_s=0.5", "scenario.expected_latency_ms=5"],
}
RESULT_FIELDS = {"scenario", "mode", "benchmark", "sut", "valid", "samples_per_second", "tokens_per_second",
                 "ttft_ms", "tpot_ms", "latency_ms", "errors", "loadgen_version", "accuracy"}


@pytest.mark.parametrize("scenario", list(QUICK))
@pytest.mark.parametrize("mode", ["performance", "accuracy"])
def test_every_scenario_in_both_modes(run, scenario, mode):
    result = run(f"scenario={scenario}", f"mode={mode}", *FAST, *QUICK[scenario])
    out = Path(result.output_dir)
    assert result.errors == 0 and result.loadgen_errors == 0, result.error_messages
    saved = json.loads((out / "results.json").read_text())
    assert RESULT_FIELDS <= set(saved) and saved["scenario"] == scenario and saved["mode"] == mode
    for name in ("user.conf", "config.json", f"{mode}/mlperf_log_detail.txt", f"{mode}/mlperf_log_summary.txt"):
        assert (out / name).is_file(), name
    if mode == "performance":
        assert result.valid is True, result.invalid_reasons
        assert result.samples_per_second > 0 and result.tokens_per_second > 0
        assert (result.ttft_ms is None) == (scenario == "offline")
        assert saved["ttft_ms"] is None or set(saved["ttft_ms"]) == {"p50", "p90", "p99"}
    else:
        assert result.valid is None and result.extra["accuracy_log_samples"] == 32


def test_server_token_latencies_match_the_echo_sut(run):
    result = run("sut=echo", "scenario=server", "mode=performance", "sut.ttft_ms=30", "sut.tpot_ms=5",
                 "sut.output_tokens=12", "scenario.target_qps=100", "scenario.min_duration_s=1")
    assert result.valid, result.invalid_reasons
    # LoadGen measures from the query's scheduled time, so the bridge's overhead is included.
    # Medians, not tails: a p99 on a shared 2-core machine swings by tens of milliseconds.
    assert 30 <= result.ttft_ms.p50 < 33
    assert 30 <= result.ttft_ms.p90 < 38
    assert result.ttft_ms.p99 >= 30
    assert result.tpot_ms.p50 == pytest.approx(5, abs=0.3)
    assert result.latency_ms.p50 == pytest.approx(30 + 11 * 5, abs=4)
    assert result.tokens_per_second == pytest.approx(12 * result.samples_per_second, rel=0.02)


@pytest.mark.parametrize("scenario", ["offline", "server", "single_stream"])
def test_oracle_accuracy_log_decodes_to_the_references(run, scenario):
    result = run("sut=oracle", f"scenario={scenario}", "mode=accuracy", "scenario.target_qps=200")
    config = compose(["sut=oracle"])
    references = {i: r.reference for i, r in enumerate(load_dataset(config.dataset).records)}
    acc = Path(result.output_dir) / "accuracy"
    # Decoded independently of the run, with the same vocabulary the oracle used...
    samples = build_samples(config.benchmark, load_dataset(config.dataset))
    tokenizer = WordTokenizer([s.prompt for s in samples] + [s.reference for s in samples])
    assert decode_accuracy_log(acc / "mlperf_log_accuracy.json", tokenizer.decode) == references
    # ...and by the run itself, with the SUT's tokenizer.
    predictions = json.loads((acc / "predictions.json").read_text())
    assert {int(k): v for k, v in predictions.items()} == references


def test_submission_mode_runs_each_test_with_mlperf_conf(run):
    result = run("sut=echo", "mode=submission")
    out = Path(result.output_dir)
    assert result.valid and json.loads((out / "accuracy/mlperf_log_accuracy.json").read_text())
    for test in ("performance", "accuracy"):
        log = parse_detail_log(out / test / "mlperf_log_detail.txt")
        # LoadGen reads mlperf.conf once per process; a second test in the same process would
        # lose its values (equal issue, token latencies) and log "Multiple conf files".
        assert log.errors == (), log.errors
        assert log.get("effective_sample_concatenate_permutation") is True
        assert log.get("requested_use_token_latencies") is True


@pytest.mark.parametrize("scenario", ["offline", "server", "single_stream"])
def test_failing_sut_ends_in_bounded_time_with_errors_reported(run, scenario):
    result = run("sut=failing", "sut.fail_every=0", "sut.fail_indices=[3,7]", f"scenario={scenario}",
                 "mode=submission", *TIMING, *QUICK[scenario], timeout_s=90)
    assert result.errors > 0
    assert any("failing SUT" in m for m in result.error_messages)
    assert not (Path(result.output_dir) / "accuracy").exists()  # later tests skipped


@pytest.mark.parametrize("scenario", ["offline", "server"])
def test_hanging_sut_is_timed_out_and_the_run_ends(run, scenario):
    result = run("sut=failing", "sut.failure=hang", "sut.fail_every=0", "sut.fail_indices=[0]",
                 f"scenario={scenario}", "mode=performance", "run.sample_timeout_s=1", *TIMING, *QUICK[scenario],
                 timeout_s=90)
    assert result.errors >= 1
    assert any("TimeoutError" in m and "run.sample_timeout_s" in m for m in result.error_messages)
    assert (Path(result.output_dir) / "results.json").is_file()


def test_every_sample_failing_fails_fast(run):
    # 5,000 queries at 250 QPS would take 20 s; the harness gives up after 5 failures and ends the test early.
    result = run("sut=failing", "sut.fail_every=1", "scenario=server", "mode=performance",
                 "run.max_errors=5", *QUICK["server"], "scenario.min_query_count=5000", timeout_s=90)
    assert result.errors == result.extra["samples_issued"]["performance"] < 5000
    assert any("gave up on the SUT: 5 samples failed (run.max_errors=5)" in m for m in result.error_messages)
    assert result.verdict == "FAILED" and result.samples_per_second is None


def test_gptj_server_is_judged_on_its_end_to_end_latency(run):
    # GPT-J has no token latencies: quick mode keeps mlperf.conf's 20 s p99 latency constraint.
    result = run("benchmark=gptj", "scenario=server", "mode=performance", *FAST, *QUICK["server"])
    assert result.errors == 0 and result.valid is True, result.invalid_reasons
    detail = parse_detail_log(Path(result.output_dir) / "performance" / "mlperf_log_detail.txt")
    assert detail.get("effective_target_latency_ns") == 20_000_000_000
    assert detail.get("requested_use_token_latencies") is not True


def test_null_sut_answered_on_loadgens_thread_completes_every_sample(run):
    # sut=null has submit_inline: the bridge answers each query within LoadGen's own issue call
    # (the bridge benchmark's path). Every sample must still get its first token and its output.
    perf = run("sut=null", "scenario=server", "mode=performance", *QUICK["server"])
    assert perf.errors == 0 and perf.valid, perf.invalid_reasons
    assert perf.tokens_per_second == pytest.approx(2 * perf.samples_per_second, rel=0.01)
    assert perf.ttft_ms is not None and perf.ttft_ms.p50 <= perf.latency_ms.p50
    acc = run("sut=null", "scenario=server", "mode=accuracy", *QUICK["server"])
    log = json.loads((Path(acc.output_dir) / "accuracy" / "mlperf_log_accuracy.json").read_text())
    config = compose(["sut=null"])
    samples = build_samples(config.benchmark, load_dataset(config.dataset))
    eos = WordTokenizer([s.prompt for s in samples] + [s.reference for s in samples]).eos_token_id
    token = eos.to_bytes(4, "little").hex().upper()  # LoadGen logs int32 little-endian hex
    assert len(log) == 32
    assert {(entry["data"], entry["token_data"]) for entry in log} == {(token * 2, token)}
