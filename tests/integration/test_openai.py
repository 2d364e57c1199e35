"""sut=openai through the real LoadGen against real servers on 127.0.0.1: harness-serve and the stub."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.loadgen.logs import parse_detail_log, performance_result
from harness.results import summary
from harness.run import DETAIL_LOG
from tests.openai_servers import fake, serve, stub

SMALL = ["dataset.n_samples=8", "benchmark.max_new_tokens=16"]
QUICK = {
    "offline": [],
    # VALID needs ~500 queries (LoadGen's early stopping at p99), as in test_scenarios.
    "server": ["scenario.target_qps=250", "scenario.min_duration_s=1"],
    "single_stream": ["scenario.min_duration_s=0.3", "scenario.expected_latency_ms=10",
                      "scenario.min_query_count=20"],
}
FAULTY_SERVER = ["scenario=server", "scenario.target_qps=100", "scenario.min_duration_s=0.5",
                 "scenario.min_query_count=50"]  # not VALID (too few queries), and not meant to be


@pytest.fixture(scope="module")
def echo_url():
    with serve("sut=echo", "sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16") as url:
        yield url


@pytest.mark.parametrize("scenario", list(QUICK))
def test_every_scenario_through_harness_serve(run, echo_url, scenario):
    api = "chat" if scenario == "server" else "completions"  # chat: a role chunk precedes the first token
    result = run("sut=openai", f"sut.base_url={echo_url}", f"sut.api={api}",
                 f"scenario={scenario}", "mode=performance", *SMALL, *QUICK[scenario], timeout_s=90)
    assert result.errors == 0 and result.loadgen_errors == 0, result.error_messages
    assert result.valid is True, result.invalid_reasons
    assert result.tokens_per_second > 0 and (result.ttft_ms is None) == (scenario == "offline")
    stats = result.extra["sut_stats"]["performance"]
    assert stats["errors"] == 0 and stats["requests"] >= 8
    assert stats["token_count_source"] == "server usage" and stats["token_counts_approximate"] is False
    assert stats["usage_mismatch_rate"] == 0.0  # the echo's words re-tokenize to its own ids


def test_accuracy_through_an_oracle_server_is_perfect(run):
    # The oracle answers every dataset prompt with its whole reference: no length limit cuts it.
    with serve("sut=oracle", "benchmark.max_new_tokens=4096") as url:
        result = run("sut=openai", f"sut.base_url={url}", "mode=accuracy", "dataset.n_samples=8",
                     "benchmark.max_new_tokens=4096", timeout_s=90)
    assert result.errors == 0, result.error_messages
    # No token ids: the client tokenizes the text losslessly, so the references come back exactly.
    assert result.accuracy["scores"]["rouge1"] == pytest.approx(100, abs=0.01)
    assert result.extra["accuracy_log_samples"] == 8


@pytest.mark.parametrize("ids", [False, True])
def test_the_tiny_model_served_over_http(run, ids):
    with serve("sut=hf") as url:
        result = run("sut=openai", f"sut.base_url={url}", "sut.tokenizer_path=embedded", "mode=performance",
                     f"sut.return_token_ids={str(ids).lower()}", "dataset.n_samples=4",
                     "benchmark.max_new_tokens=8", timeout_s=120)
    assert result.errors == 0 and result.valid is True, result.error_messages
    stats = result.extra["sut_stats"]["performance"]
    assert stats["requests"] == 4 and stats["usage_reported"] == 4
    # Re-encoding decoded random-weight text may split differently from the ids generated; the count
    # LoadGen gets is the server's either way (its ids, or its usage).
    assert stats["counted_tokens"] == stats["server_completion_tokens"]
    assert stats["token_count_source"] == ("server token ids" if ids else "server usage")
    assert stats["output_token_ids"] == ("server" if ids else "re-tokenized")
    assert 4 <= stats["server_completion_tokens"] <= 4 * 8  # max_new_tokens=8; EOS may stop a sample early


# An independent server's truth (issue 16): 32 tokens per answer, 50 ms to the first, 5 ms each after.
TRUTH = {"tokens": 32, "ttft_ms": 50.0, "tpot_ms": 5.0}
SERVER_4_QPS = ["scenario=server", "scenario.target_qps=4", "scenario.min_duration_s=4", "scenario.min_query_count=16"]


@pytest.mark.parametrize("tokenizer", ["none", "embedded"])
def test_tpot_and_tokens_per_second_agree_with_an_independent_servers_truth(run, tokenizer):
    """The fake's text re-tokenizes to other counts than its own (twice as many by the dataset's word
    tokenizer); LoadGen must still get the server's count, so TPOT and tokens/s are the truth."""
    with fake("--tokens", "32", "--ttft-ms", "50", "--tpot-ms", "5") as url:
        result = run("sut=openai", f"sut.base_url={url}", "mode=performance", "dataset.n_samples=8",
                     "benchmark.max_new_tokens=32", *SERVER_4_QPS,
                     *([f"sut.tokenizer_path={tokenizer}"] if tokenizer != "none" else []), timeout_s=90)
    assert result.errors == 0, result.error_messages
    assert result.tpot_ms.p50 == pytest.approx(TRUTH["tpot_ms"], rel=0.02), result.tpot_ms
    assert result.ttft_ms.p50 >= TRUTH["ttft_ms"]
    # LoadGen's Server figures share one span: completed samples/s counts n - 1 samples over it,
    # tokens/s all n samples' tokens; the truth is 32 tokens for each of the n.
    n = performance_result(parse_detail_log(Path(result.output_dir) / "performance" / DETAIL_LOG)).query_count
    truth = TRUTH["tokens"] * result.samples_per_second * n / (n - 1)
    assert result.tokens_per_second == pytest.approx(truth, rel=0.02)
    stats = result.extra["sut_stats"]["performance"]
    assert stats["token_count_source"] == "server usage" and stats["token_counts_approximate"] is False
    assert stats["counted_tokens"] == stats["server_completion_tokens"] == 32 * stats["requests"]
    assert "approximate" not in summary(result)


@pytest.mark.parametrize("usage", [True, False])
def test_offline_counts_are_the_servers_usage_else_flagged_approximate(run, usage):
    with fake("--tokens", "32", "--ttft-ms", "0", "--tpot-ms", "0", *([] if usage else ["--no-usage"])) as url:
        result = run("sut=openai", f"sut.base_url={url}", "mode=performance", "scenario=offline",
                     "dataset.n_samples=8", "benchmark.max_new_tokens=32", timeout_s=90)
    assert result.errors == 0, result.error_messages
    stats = result.extra["sut_stats"]["performance"]
    per_sample = result.tokens_per_second / result.samples_per_second
    text = summary(result)
    if usage:
        assert per_sample == pytest.approx(32, rel=0.02) and stats["token_count_source"] == "server usage"
        assert "approximate" not in text
    else:  # the dataset's word tokenizer: a count, not the truth, and said so
        assert per_sample > 32 * 1.5 and stats["token_count_source"] == "dataset word tokenizer"
        assert stats["token_counts_approximate"] is True
        assert "tokens      APPROXIMATE" in text and "performance" in text.split("APPROXIMATE", 1)[1]


def test_faults_end_as_counted_errors_in_bounded_time(run):
    # Every 3rd request fails: HTTP 500, a stream cut mid-way, a hang past sut.read_timeout_s, in turn.
    with stub("--fault", "500,cut,hang", "--fault-every", "3", "--tokens", "8", "--tpot-ms", "1") as url:
        start = time.monotonic()
        result = run("sut=openai", f"sut.base_url={url}", "sut.read_timeout_s=1", "mode=performance",
                     "run.max_errors=1000", *SMALL, *FAULTY_SERVER, timeout_s=90)
    assert time.monotonic() - start < 60
    for message in ("HTTP 500", "connection lost|cut mid-way", "read timeout",
                    "gave up on the SUT: sample .* timed out"):  # a hung server: the rest fail at once
        assert any(re.search(message, m) for m in result.error_messages), (message, result.error_messages)
    stats = result.extra["sut_stats"]["performance"]
    assert result.errors >= 3 and stats["errors"] >= 3  # one failed request, one failed sample
    assert stats["requests"] <= result.extra["samples_issued"]["performance"]  # no retries
    assert result.verdict == "FAILED"


@pytest.mark.parametrize("scenario", ["single_stream", "server"])
def test_a_silent_server_ends_the_run_within_one_read_timeout(run, scenario):
    # Before: SingleStream waited out sut.read_timeout_s for run.max_errors (10) samples in turn.
    with stub("--fault", "hang", "--fault-every", "1") as url:
        start = time.monotonic()
        result = run("sut=openai", f"sut.base_url={url}", "sut.read_timeout_s=2", "sut.preflight=false",
                     "mode=performance", f"scenario={scenario}", *QUICK[scenario], timeout_s=90)
    assert time.monotonic() - start < 15  # one read timeout (2 s), the give-up grace (2 s), process start
    assert result.verdict == "FAILED" and any("gave up on the SUT" in m for m in result.error_messages)


def test_a_server_that_dies_mid_run_ends_the_run_with_errors(run):
    with stub("--exit-after", "20", "--tokens", "8", "--tpot-ms", "1") as url:
        start = time.monotonic()
        result = run("sut=openai", f"sut.base_url={url}", "mode=performance", *SMALL, *FAULTY_SERVER,
                     timeout_s=90)
    assert time.monotonic() - start < 60
    assert result.errors >= 10, result.error_messages  # run.max_errors=10: the rest failed fast
    assert any("connect" in m or "connection lost" in m for m in result.error_messages), result.error_messages


def test_preflight_failure_is_one_error_line_and_the_api_key_is_never_written(tmp_path, echo_url):
    key = "sk-harness-test-7f3a9c1e5b"
    env = {**os.environ, "LLM_CRED": key}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "sut=openai", f"sut.base_url={echo_url}", "sut.api_key_env=LLM_CRED",
           "mode=performance", *SMALL, f"hydra.run.dir={out}"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = subprocess.run([*cmd[:-1], "sut.model=nope", f"hydra.run.dir={tmp_path / 'bad'}"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert [line for line in bad.stderr.splitlines() if line.startswith("error:")] == \
        [f"error: sut.model=nope is not served by {echo_url} (it serves: echo)"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in written) and json.loads((out / "results.json").read_text())
    for p in written:
        assert key.encode() not in p.read_bytes(), p
    for text in (ok.stdout, ok.stderr, bad.stdout, bad.stderr):
        assert key not in text
    assert "LLM_CRED" in (out / "config.json").read_text()  # the variable's name, not its value


def test_answers_past_max_tokens_fail_their_samples_and_are_counted(run):
    # A server that ignores max_tokens (issue 17): 64 tokens for a limit of 16, with usage saying so.
    with fake("--ignore-max-tokens", "--tokens", "64", "--ttft-ms", "0", "--tpot-ms", "0") as url:
        result = run("sut=openai", f"sut.base_url={url}", "mode=performance", "scenario=offline",
                     "dataset.n_samples=4", "benchmark.max_new_tokens=16", timeout_s=90)
    assert result.errors == 4, result.error_messages
    assert any("more than max_tokens=16" in m for m in result.error_messages), result.error_messages
    over = result.extra["sut_stats"]["performance"]["over_max_tokens"]
    assert over == {"samples": 4, "tokens_past_limit": 4 * 48}


def test_a_server_run_over_https_with_the_ca_in_sut_ca_bundle(run, tmp_path, monkeypatch):
    from harness.bench.tls import make_certificates

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    certs = make_certificates(tmp_path / "tls")
    with fake("--tls", str(certs.ca.parent), "--host", "localhost", "--tokens", "32", "--ttft-ms", "50",
              "--tpot-ms", "5") as url:
        result = run("sut=openai", f"sut.base_url={url}", f"sut.ca_bundle={certs.ca}", "mode=performance",
                     "dataset.n_samples=8", "benchmark.max_new_tokens=32", *SERVER_4_QPS, timeout_s=90)
    assert result.errors == 0, result.error_messages
    assert result.tpot_ms.p50 == pytest.approx(TRUTH["tpot_ms"], rel=0.02), result.tpot_ms
    assert result.extra["sut_stats"]["performance"]["token_count_source"] == "server usage"
