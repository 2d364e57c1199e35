"""MLflow tracking end to end: real harness processes, real LoadGen, real MLflow stores and server."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.audit import main as audit_main
from harness.compare import main as compare_main
from harness.submission.layout import MANIFEST
from harness.submission.writer import main as submit_main
from harness.tracking import download_run_dir
from tests.integration.conftest import closed_port
from tests.integration.test_submission import SYSTEM_YAML

FAST = ["sut=echo", "sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16"]
SECRET = "hf_test_secret_9f8e7d6c5b"  # must never reach a store, an artifact or environment.json

# MLflow's own SQLAlchemy models trigger this in the test process; nothing the harness can change.
# The tracking server (conftest.py) starts as the module begins and only its tests wait for it.
pytestmark = [pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
              pytest.mark.usefixtures("mlflow_server_process")]


def harness(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, experiment: str) -> list:
    c = client(uri)
    return c.search_runs([c.get_experiment_by_name(experiment).experiment_id])


def artifacts(uri: str, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client(uri).list_artifacts(run_id, path):
        found |= artifacts(uri, run_id, item.path) if item.is_dir else {item.path}
    return found


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def check_logged(uri: str, run, run_dir: Path) -> dict:
    """A logged job matches its run directory: params, schema metrics, tags, every file."""
    results = json.loads((run_dir / "results.json").read_text())
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    config = json.loads((run_dir / "config.json").read_text())
    assert params["sut.name"] == config["sut"]["name"] and params["sut.max_batch_size"] == "32"
    assert params["sut.tpot_ms"] == "0.2" and params["scenario.name"] == "offline"
    assert params["mode"] == results["mode"] and params["system.description"] == "***"
    assert metrics["tokens_per_second"] == pytest.approx(results["tokens_per_second"])
    assert metrics["samples_per_second"] == pytest.approx(results["samples_per_second"])
    assert metrics["latency_p99_ms"] == pytest.approx(results["latency_ms"]["p99"])
    assert metrics["valid"] == 1.0 and metrics["errors"] == results["errors"]
    assert "ttft_p99_ms" not in metrics  # Offline has no first-token latency
    assert (tags["scenario"], tags["mode"], tags["sut"], tags["benchmark"]) == (
        "offline", results["mode"], results["sut"], "sample")
    assert tags["validity"] == "VALID" and tags["loadgen_version"] == results["loadgen_version"]
    assert tags["dataset_fingerprint"] == results["dataset"]["fingerprint"]
    assert tags["harness_version"] == results["harness_version"] and tags["git_dirty"] in ("true", "false")
    assert tags["accuracy_verdict"] == ((results["accuracy"] or {}).get("verdict") or "none")
    logged = artifacts(uri, run.info.run_id)
    assert {"results.json", "user.conf", "config.json", "environment.json", ".hydra/config.yaml",
            "performance/mlperf_log_summary.txt", "performance/mlperf_log_detail.txt"} <= logged
    assert logged == files_under(run_dir)  # the whole run directory, laid out as on disk
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["env"]["HF_TOKEN"] == "***" and "harness" in env["command"]["rerun"]
    for name in ("environment.json", "config.json"):
        assert SECRET not in (run_dir / name).read_text()
    return results


def test_a_round_is_one_parent_run_with_linked_children_and_a_failing_job_is_failed(tmp_path, capsys):
    store = tmp_path / "store"
    uri = f"sqlite:///{store}/mlflow.db"
    # fail_every=0: no failures; fail_every=1: every sample fails (after run.max_errors, at once).
    # The secret reaches the config through an environment variable, under an ordinary key.
    proc = harness("-m", "sut=failing", "sut.fail_every=0,1", "sut.ttft_ms=2", "sut.tpot_ms=0.2",
                   "sut.output_tokens=16", "mode=performance", "tracking=mlflow", f"tracking.uri={uri}",
                   "tracking.experiment=round", "system.description=${oc.env:HF_TOKEN}",
                   f"hydra.sweep.dir={tmp_path}/round", cwd=tmp_path, env={"HF_TOKEN": SECRET})
    assert proc.returncode == 3, proc.stderr
    assert "round of 2 runs" in proc.stdout and "nothing was logged" not in proc.stdout + proc.stderr

    runs = runs_of(uri, "round")
    [parent] = [r for r in runs if r.data.tags.get("role") == "round"]
    # The MLflow UI opens the experiment on its runs: the kind tag, and the links the harness prints.
    experiment = client(uri).get_experiment_by_name("round")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert (f"in the UI: http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}"
            f"?workflowType=machine_learning") in proc.stdout
    children = sorted((r for r in runs if r is not parent), key=lambda r: int(r.data.tags["job_num"]))
    assert len(children) == 2
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["round"] == parent.info.run_id
    ok, failed = children
    assert ok.info.status == "FINISHED" and ok.data.params["sut.fail_every"] == "0"
    check_logged(uri, ok, tmp_path / "round" / ok.info.run_name)
    assert failed.info.status == "FAILED" and failed.data.params["sut.fail_every"] == "1"
    assert failed.data.metrics["errors"] == 32 and "samples failed" in failed.data.tags["error"]
    # Every sample failed: never a result, whatever LoadGen computed from the failed completions.
    assert failed.data.metrics["valid"] == 0.0 and failed.data.tags["validity"] == "FAILED"
    assert "samples_per_second" not in failed.data.metrics and "tokens_per_second" not in failed.data.metrics
    assert {"performance/mlperf_log_detail.txt", "performance/harness_test.log", "results.json",
            "environment.json"} <= artifacts(uri, failed.info.run_id)

    assert parent.info.status == "FAILED" and parent.data.metrics["jobs"] == 2
    assert {"round_table.txt", "multirun.yaml"} <= artifacts(uri, parent.info.run_id)
    table = (download_run_dir(parent.info.run_id, uri, tmp_path / "parent") / "round_table.txt").read_text()
    assert table.startswith(f"round of 2 runs: 1 FINISHED, 1 FAILED · MLflow parent run {parent.info.run_id}")
    assert table == (tmp_path / "round" / "round_table.txt").read_text()  # kept beside the jobs too
    assert "job 1 FAILED (exit 3): SUTError: 32 samples failed" in table
    assert files_containing(store, SECRET) == []

    # harness-compare reads the round as logged: the failed job fails the gate.
    code = compare_main(["--tracking-uri", uri, "--round", parent.info.run_id, "--baseline", ok.info.run_id,
                         "--fail-on-regression", "5%"])
    out = capsys.readouterr().out
    assert code == 1 and f"regression: {failed.info.run_name} ({failed.info.run_id[:8]}) FAILED" in out
    assert out.splitlines()[0].split()[1:] == [ok.info.run_name, f"({ok.info.run_id[:8]})", failed.info.run_name,
                                               f"({failed.info.run_id[:8]})"]


def _silent_server() -> socket.socket:
    """A port that accepts connections and never answers: a hung tracking server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_an_unreachable_store_keeps_local_results_and_warns_once(tmp_path):
    with _silent_server() as hung:
        start = time.monotonic()
        proc = harness(*FAST, "mode=performance", "tracking=mlflow",
                       f"tracking.uri=http://127.0.0.1:{hung.getsockname()[1]}", "tracking.timeout_s=1",
                       "tracking.retries=0", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, timeout=90)
        elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run/results.json").read_text())["valid"] is True
    out = proc.stdout + proc.stderr
    warnings = [line for line in out.splitlines() if "nothing was logged" in line]
    assert len(warnings) == 1 and "no answer within 1 s" in warnings[0], out
    assert "Traceback" not in out and elapsed < 60


def test_required_tracking_with_an_unreachable_store_exits_non_zero_before_the_benchmark(tmp_path):
    port = closed_port()
    proc = harness(*FAST, "mode=performance", "tracking=mlflow", f"tracking.uri=http://127.0.0.1:{port}",
                   "tracking.required=true", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, timeout=60)
    assert proc.returncode == 5
    assert proc.stderr.strip().splitlines()[-1].startswith("error: MLflow store http://127.0.0.1:")
    assert "unreachable (Connection refused)" in proc.stderr and "tracking.required=true" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run/results.json").exists()


def test_a_tracking_server_receives_the_run_and_every_command_reads_it_by_id(tmp_path, mlflow_server, capsys):
    url, server_root = mlflow_server
    # A token for the server in the environment: sent by MLflow, never recorded; HF_TOKEN reaches
    # the config under an ordinary key.
    proc = harness(*FAST, "mode=submission", "run.compliance=true", "tracking=mlflow", f"tracking.uri={url}",
                   "tracking.experiment=team",
                   "system.description=${oc.env:HF_TOKEN}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path,
                   env={"MLFLOW_TRACKING_TOKEN": SECRET, "HF_TOKEN": SECRET})
    assert proc.returncode == 0, proc.stderr
    [run] = runs_of(url, "team")
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    results = check_logged(url, run, tmp_path / "run")
    assert {"accuracy/mlperf_log_accuracy.json", "accuracy/mlperf_log_detail.txt"} <= artifacts(url, run.info.run_id)
    assert files_under(server_root / "artifacts")  # uploaded through the server, not written by the client

    fetched = download_run_dir(run.info.run_id, url, tmp_path / "fetched")
    assert json.loads((fetched / "results.json").read_text()) == results
    assert (fetched / "performance/mlperf_log_detail.txt").read_bytes() == (
        tmp_path / "run/performance/mlperf_log_detail.txt").read_bytes()
    assert files_containing(server_root, SECRET) == [] and files_containing(fetched, SECRET) == []

    # Every command that takes a run id reads it over HTTP: compare, audit (re-scores the fetched
    # accuracy log), submit (a tree from the fetched run directory).
    run_id = run.info.run_id
    assert compare_main(["--tracking-uri", url, run_id[:8]]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["run", f"({run_id[:8]})"]
    with pytest.raises(SystemExit) as audited:
        audit_main([run_id[:8], "--tracking-uri", url, "--json"])
    audit = json.loads(capsys.readouterr().out)
    assert audited.value.code in (0, 4) and audit["accuracy"]["scores"] == results["accuracy"]["scores"]
    system_yaml = tmp_path / "system.yaml"
    system_yaml.write_text(SYSTEM_YAML)
    with pytest.raises(SystemExit) as submitted:
        submit_main([run_id[:8], "--tracking-uri", url, "--submitter", "ACME", "--division", "open", "--system",
                     "box1", "--system-config", str(system_yaml), "--root", str(tmp_path / "submissions")])
    assert submitted.value.code == 0, capsys.readouterr().err
    [manifest] = (tmp_path / "submissions").rglob(MANIFEST)
    assert json.loads(manifest.read_text())["mlflow_run_id"] == run_id  # the full id, from its prefix
