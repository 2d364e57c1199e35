"""Secrets end to end: a URL password and an API key a server echoes, through a real round and a search."""

import json
import os
import subprocess
import sys

import pytest

from tests.openai_servers import stub

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

PASSWORD = "PASSWORD123secret"
KEY = "sk-testkey-0123456789abcdefXYZ"
# Hydra's own records of the command line (.hydra/, multirun.yaml) are written by Hydra as typed;
# their MLflow copies are masked like every artifact.
HYDRAS_OWN = (".hydra", "multirun.yaml")


def _leaks(root, *secrets) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not any(part in HYDRAS_OWN for part in path.relative_to(root).parts):
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in data]
    return found


def test_a_round_against_a_server_that_echoes_the_key_leaks_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with stub("--tokens", "8", "--fault", "401", "--fault-every", "3") as url:
        host = url.removeprefix("http://")
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "-m", "sut=openai", f"sut.base_url=http://USER:{PASSWORD}@{host}",
             "sut.api_key_env=ECHOED_KEY", "mode=performance", "scenario=offline,single_stream",
             "scenario.expected_latency_ms=5", "scenario.min_duration_s=0.2", "scenario.min_query_count=10",
             "tracking=mlflow", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path}/round"],
            cwd=tmp_path, capture_output=True, text=True, timeout=240, env={**os.environ, "ECHOED_KEY": KEY})
    assert proc.returncode == 3, proc.stderr[-3000:]  # the 401s failed samples
    assert "Incorrect API key provided: Bearer ***" in proc.stderr  # the error: line says why, masked
    assert PASSWORD not in proc.stdout + proc.stderr and KEY not in proc.stdout + proc.stderr
    assert not _leaks(tmp_path / "round", PASSWORD, KEY)
    results = json.loads((tmp_path / "round/0_offline_openai/results.json").read_text())
    assert any("Bearer ***" in m for m in results["error_messages"])
    assert "http://USER:***@" in (tmp_path / "round/0_offline_openai/performance/harness_test.log").read_text()

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    assert len(runs) == 3
    for run in runs:
        assert not [k for k, v in run.data.tags.items() if PASSWORD in v or KEY in v], run.data.tags
        assert not [k for k, v in run.data.params.items() if PASSWORD in v or KEY in v]
        local = tmp_path / "downloaded" / run.info.run_id
        local.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, "", str(local))
        assert not [p for p in local.rglob("*") if p.is_file() and (PASSWORD.encode() in p.read_bytes()
                                                                     or KEY.encode() in p.read_bytes())]


def test_harness_peak_masks_the_url_password_in_peak_json(tmp_path):
    with stub("--tokens", "4") as url:
        host = url.removeprefix("http://")
        proc = subprocess.run(
            [sys.executable, "-m", "harness.peak", "sut=openai", f"sut.base_url=http://USER:{PASSWORD}@{host}",
             "peak.max_probes=1", "peak.confirm=false", "peak.probe_duration_s=0.2", "peak.probe_min_query_count=10",
             "peak.start_qps=50", f"hydra.run.dir={tmp_path}/peak"],
            cwd=tmp_path, capture_output=True, text=True, timeout=240)
    peak = (tmp_path / "peak" / "peak.json").read_text()
    assert "http://USER:***@" in json.loads(peak)["config"]["sut"]["base_url"], proc.stderr[-2000:]
    assert PASSWORD not in proc.stdout + proc.stderr
    assert not _leaks(tmp_path / "peak", PASSWORD)
