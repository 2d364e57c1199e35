"""harness-providers against two scripted servers on 127.0.0.1 with known delays, and one that is down."""

from __future__ import annotations

import json

import pytest

from harness.providers import load, main
from tests.openai_servers import stub


def test_compares_endpoints_against_known_delays_and_logs_to_mlflow(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROVIDER_API_KEY", "sk-provider-secret-123456")
    with stub("--ttft-ms", "40", "--tpot-ms", "4", "--tokens", "16") as slow, stub("--tokens", "16") as fast:
        conf = tmp_path / "providers.yaml"
        conf.write_text(f"""max_tokens: 16
repetitions: 3
endpoints:
  - {{name: slow, base_url: "{slow}", model: stub, api: chat, api_key_env: PROVIDER_API_KEY}}
  - {{name: fast, base_url: "{fast}", model: stub}}
  - {{name: down, base_url: "http://127.0.0.1:9/v1", model: x}}
""")
        db = tmp_path / "ml.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
        # Exit 1: an endpoint (down) answered no request; the others are still measured and logged.
        assert main([f"conf={conf}", f"out={tmp_path / 'out'}", "tracking=mlflow"]) == 1
    shown = capsys.readouterr().out
    assert "slow" in shown and "down: cannot connect" in shown
    header = next(line for line in shown.splitlines() if line.startswith("endpoint"))
    assert header.split() == ["endpoint", "TTFT", "p50", "p90", "p99", "tok/s", "p50", "p90", "p99", "e2e", "p50",
                              "p90", "p99", "tokens", "errors"]
    rows = {r["name"]: r for r in json.loads((tmp_path / "out" / "providers.json").read_text())["endpoints"]}
    slow_row = rows["slow"]
    assert 40 <= slow_row["ttft_ms"]["p50"] < 60  # the role chunk at 0 ms is not the first token
    assert slow_row["output_tokens"]["p50"] == 16
    # 16 tokens in the 15 x 4 ms after the first one: ~267 tokens/s. The stub keeps an absolute
    # schedule, so a first token it sent late (a busy machine) is followed by the rest on time.
    assert 200 < slow_row["output_tokens_per_s"]["p50"] <= 16 / 0.060 * 1.3
    assert rows["fast"]["ttft_ms"]["p50"] < slow_row["ttft_ms"]["p50"]
    assert rows["down"]["errors"] == 3 and rows["slow"]["errors"] == 0
    assert (tmp_path / "out" / "providers.png").stat().st_size > 1000
    assert db.is_file()
    import mlflow

    runs = mlflow.search_runs(experiment_names=["harness"], output_format="list")
    assert {r.data.params["endpoint"] for r in runs} == {"slow", "fast", "down"}
    assert all(b"sk-provider-secret" not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize(("argv", "message"), [(["conf=/no/such.yaml"], "error: conf=/no/such.yaml"),
                                               (["a.yaml", "b.yaml"], "error: unrecognized arguments: b.yaml"),
                                               ([], "usage: harness-providers"),
                                               (["out=x"], "error: missing the endpoints file")])
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(message)


@pytest.mark.parametrize(("override", "message"), [
    ("repetitions=0", "error: config key 'repetitions' must be >= 1, got 0"),
    ("timeout_s=0", "error: config key 'timeout_s' must be > 0, got 0"),
])
def test_numbers_are_range_checked(tmp_path, capsys, override, message):
    conf = tmp_path / "providers.yaml"
    conf.write_text("endpoints:\n  - {name: a, base_url: 'http://127.0.0.1:9/v1', model: m}\n")
    assert main([f"conf={conf}", override]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_options_and_the_older_key_value_words_read_the_same(tmp_path):
    conf = tmp_path / "providers.yaml"
    conf.write_text("endpoints:\n  - {name: a, base_url: 'http://127.0.0.1:9/v1', model: m}\n")
    options = load([str(conf), "--out", "o", "--repetitions", "3", "--tracking", "mlflow", "--set", "max_tokens=8"])
    words = load([f"conf={conf}", "out=o", "repetitions=3", "tracking=mlflow", "max_tokens=8"])
    assert options == words
    assert (options.out, options.repetitions, options.tracking.backend, options.max_tokens) == ("o", 3, "mlflow", 8)
