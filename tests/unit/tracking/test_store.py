"""Store helpers that need no MLflow: URIs, the default store, redacted artifact staging."""

import hashlib
import json
from pathlib import Path

import yaml

from harness.redact import REDACTED, Redactor
from harness.tracking import store


def test_local_sqlite_uris_resolve_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store.sqlite_path("sqlite:///runs/mlflow.db") == tmp_path / "runs/mlflow.db"
    assert store.resolve_uri("sqlite:///runs/mlflow.db") == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert store.resolve_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert store.resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert store.sqlite_path("http://127.0.0.1:5000") is None


def test_default_store_is_the_documented_one_unless_mlflow_tracking_uri_is_set(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store.default_uri() == "sqlite:///runs/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    assert store.default_uri() == "http://team:5000"


def test_staging_masks_secrets_and_keeps_other_files_byte_for_byte(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "accuracy").mkdir()
    accuracy_log = b'[{"seq_id": 0, "qsl_idx": 0, "data": "0A000000"}]'  # compact: must not be reformatted
    (run / "accuracy/mlperf_log_accuracy.json").write_bytes(accuracy_log)
    (run / "config.json").write_text(json.dumps({"sut": {"name": "x", "api_key": "k"}, "n": 1}))
    (run / ".hydra/overrides.yaml").write_text("- sut.api_key=k\n- sut.ttft_ms=3\n")
    (run / ".hydra/config.yaml").write_text("sut:\n  token: abc\n  ttft_ms: 3\n")
    (run / "harness.log").write_text("connecting with sk-live-123456\n")
    copies = store.stage_redacted(run, tmp_path / "staged", Redactor(frozenset({"sk-live-123456"})))
    staged = tmp_path / "staged"
    assert sorted(p.relative_to(staged) for p in copies) == sorted(
        p.relative_to(run) for p in run.rglob("*") if p.is_file())
    assert (staged / "accuracy/mlperf_log_accuracy.json").read_bytes() == accuracy_log
    assert json.loads((staged / "config.json").read_text()) == {"sut": {"name": "x", "api_key": REDACTED}, "n": 1}
    assert yaml.safe_load((staged / ".hydra/overrides.yaml").read_text()) == ["sut.api_key=***", "sut.ttft_ms=3"]
    assert yaml.safe_load((staged / ".hydra/config.yaml").read_text()) == {"sut": {"token": REDACTED, "ttft_ms": 3}}
    assert (staged / "harness.log").read_text() == "connecting with ***\n"
    digest = hashlib.sha256(accuracy_log).hexdigest()
    assert hashlib.sha256(Path(staged / "accuracy/mlperf_log_accuracy.json").read_bytes()).hexdigest() == digest


def test_printed_store_uris_and_errors_mask_url_passwords_and_stay_short():
    assert store.shown("http://bob:pw-123@mlflow:5000") == "http://bob:***@mlflow:5000"
    urllib3_chain = Exception(
        "API request to http://bob:pw-123@127.0.0.1:9/api/2.0/mlflow/experiments/get-by-name failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded (Caused by NewConnectionError("
        "'<urllib3.connection.HTTPConnection object>: Failed to establish a new connection: "
        "[Errno 111] Connection refused'))")
    assert store.short(urllib3_chain) == "Connection refused"
    long_error = Exception("http://bob:pw-123@host " + "x" * 1000)
    assert "pw-123" not in store.short(long_error) and len(store.short(long_error)) < 250
