"""The client benchmark's plumbing: each client's per-request output, matched to the stub's records.

AIPerf and GuideLLM are not installed here; their output files are written in the shapes those
tools wrote in a real run (AIPerf 0.13.0 profile_export.jsonl, GuideLLM 0.8.1 JSON report),
trimmed to the fields read. The harness's own client runs for real against the stub server.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

from harness.bench.http_client import drive, server_records
from harness.bench.reference_clients import ClientRun, Measured, command, match, read, run
from harness.bench.tls import make_certificates
from tests.openai_servers import stub


def _aiperf_row(request_id: str, ttft_ms: float | None, itl_ms: float, error: bool = False) -> dict:
    metrics = {} if ttft_ms is None else {"time_to_first_token": {"value": ttft_ms, "unit": "ms"},
                                          "inter_token_latency": {"value": itl_ms, "unit": "ms"}}
    row = {"metadata": {"x_request_id": request_id, "session_num": 0}, "metrics": metrics}
    if error:
        row["error"] = {"type": "InvalidInferenceResultError", "message": "no content"}
    return row


def test_aiperf_rows_are_read_in_seconds_and_errors_are_left_out(tmp_path):
    (tmp_path / "aiperf").mkdir()
    rows = [_aiperf_row("a", 21.5, 5.1), _aiperf_row("b", None, 0.0, error=True), _aiperf_row("c", 30.0, 4.9)]
    (tmp_path / "aiperf" / "profile_export.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read("aiperf", tmp_path)
    assert [m.key for m in got] == ["a", "c"]
    assert got[0].ttft_s == pytest.approx(0.0215) and got[0].tpot_s == pytest.approx(0.0051)


def test_guidellm_requests_are_keyed_by_response_id(tmp_path):
    report = {"benchmarks": [{"requests": {"successful": [
        {"response_id": "cmpl-3", "time_to_first_token_ms": 22.0, "inter_token_latency_ms": 5.2},
        {"response_id": "cmpl-4", "time_to_first_token_ms": 25.0, "inter_token_latency_ms": None}],
        "errored": []}}]}
    (tmp_path / "guidellm.json").write_text(json.dumps(report))
    got = read("guidellm", tmp_path)
    assert [(m.key, m.ttft_s, m.tpot_s) for m in got] == [("cmpl-3", 0.022, pytest.approx(0.0052)),
                                                        ("cmpl-4", 0.025, None)]


def test_each_client_is_matched_on_its_own_key():
    server = [{"prompt": "request 0", "id": "cmpl-1", "request_id": "r-9", "arrival": 1.0}]
    for client, key in (("harness", "request 0"), ("aiperf", "r-9"), ("guidellm", "cmpl-1")):
        found = match(ClientRun(client, (Measured(key, 0.02, 0.005), Measured("other", 0.1, None)), 0, 0, 0,
                                Path("log")), server)
        assert [s["arrival"] for _, s in found] == [1.0]


def test_commands_name_the_stub_and_the_load(tmp_path):
    aiperf = command("aiperf", "aiperf", url="http://127.0.0.1:9/v1", streams=32, requests=300, tokens=32,
                     tokenizer=tmp_path, out=tmp_path)
    assert aiperf[aiperf.index("--url") + 1] == "http://127.0.0.1:9"
    assert aiperf[aiperf.index("--concurrency") + 1] == "32"
    guidellm = command("guidellm", "guidellm", url="http://127.0.0.1:9/v1", streams=32, requests=300, tokens=32,
                       tokenizer=tmp_path, out=tmp_path)
    assert "kind=concurrent,streams=32" in guidellm and "kind=max_requests,count=300" in guidellm
    with pytest.raises(ValueError, match="unknown client"):
        command("vegeta", "x", url="u", streams=1, requests=1, tokens=1, tokenizer=tmp_path, out=tmp_path)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_harness_client_runs_against_the_stub_and_matches_every_request(tmp_path, scheme):
    certs = make_certificates(tmp_path / "tls") if scheme == "https" else None
    tls = ["--tls", str(certs.cert.parent)] if certs else []
    with stub("--ttft-ms", "20", "--tpot-ms", "2", "--tokens", "8", *tls) as url:
        assert url.startswith(f"{scheme}://")
        result = run("harness", sys.executable, url=url, streams=2, requests=6, tokens=8, tokenizer=tmp_path,
                     out=tmp_path, timeout_s=60, ca=certs.ca if certs else None)
        pairs = match(result, server_records(url, certs))
    assert result.returncode == 0 and result.cpu_s > 0 and len(pairs) == 6, result.log.read_text()[-2000:]
    tpot_errors = []
    for measured, record in pairs:
        server_ttft = record["first"] - record["arrival"]
        # The client's clock starts before the server's and cannot see the first chunk before it is sent
        # (the server stamps it just after writing: allow that much).
        assert server_ttft >= 0.019 and measured.ttft_s >= server_ttft - 0.001
        tpot_errors.append(measured.tpot_s - (record["last"] - record["first"]) / (record["tokens"] - 1))
    assert abs(statistics.median(tpot_errors)) < 0.002  # seconds; loose: a busy 2-core machine


def test_the_harness_client_can_count_tokens_with_a_tokenizer_like_its_peers(tmp_path):
    from harness.sut.hf.tiny_model import ensure_tiny_model

    tokenizer = ensure_tiny_model()
    cmd = command("harness-tok", sys.executable, url="http://127.0.0.1:9/v1", streams=1, requests=1, tokens=8,
                  tokenizer=tokenizer, out=tmp_path)
    assert cmd[cmd.index("--tokenizer") + 1] == str(tokenizer)
    with stub("--ttft-ms", "5", "--tpot-ms", "1", "--tokens", "8") as url:
        result = run("harness-tok", sys.executable, url=url, streams=2, requests=4, tokens=8, tokenizer=tokenizer,
                     out=tmp_path, timeout_s=60)
        pairs = match(result, server_records(url))
    assert result.returncode == 0 and len(pairs) == 4
    # LoadGen's count is the server's usage (8), though the client re-tokenized the text as its peers do
    assert all(m.tokens == 8 for m, _ in pairs)
    assert all(r["tokens"] == 8 for _, r in pairs)
    with stub("--ttft-ms", "1", "--tpot-ms", "0", "--tokens", "8") as url:
        rows = drive(url, streams=1, requests=2, tokenizer=tokenizer)
    # the embedded tokenizer's ids for the streamed text " t0 t1 ... t7", not the server's 8 ids
    assert len(rows) == 2 and all(r["tokens"] == 8 and r["emitted"] not in (0, 8) for r in rows)
