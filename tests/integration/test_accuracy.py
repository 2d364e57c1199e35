"""Accuracy mode end to end: the real LoadGen, fake SUTs with known outputs, ROUGE, verdicts, audit."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.audit import main as audit_main
from harness.errors import ResultError
from harness.run import check_result

TARGETS = "benchmark.accuracy_reference={rouge1:90,rouge2:90,rougeL:90,rougeLsum:90}"


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    from harness.config import compose
    from tests.conftest import run_bounded

    out = tmp_path_factory.mktemp("oracle") / "run"
    run_bounded(compose(["sut=oracle", "mode=accuracy", TARGETS]), out)
    return out


def test_oracle_scores_100_and_passes(oracle_run):
    results = json.loads((oracle_run / "results.json").read_text())
    acc = results["accuracy"]
    assert acc["scores"]["rouge1"] == acc["scores"]["rougeLsum"] == 100.0
    assert acc["verdict"] == "PASS" and acc["targets"]["rouge1"] == 89.1
    assert acc["compliance"]["passed"] and acc["splitter"]
    txt = (oracle_run / "accuracy" / "accuracy.txt").read_text().splitlines()
    assert txt[0].startswith("{'rouge1': 100.0, 'rouge2': 100.0") and txt[1] == f"hash={acc['hash']}"
    assert (oracle_run / "accuracy" / "verify_accuracy.txt").read_text().startswith("First token check pass: Skipped")


def test_empty_outputs_score_0_fail_and_break_the_eos_rule(run):
    result = run("sut=null", "mode=accuracy", "sut.output_tokens=3", TARGETS)
    acc = result.accuracy
    assert acc["scores"]["rouge1"] == 0.0 and acc["verdict"] == "FAIL"
    assert not acc["compliance"]["passed"] and "EOS check pass: False" in acc["compliance"]["lines"]
    check_result(result, fail_on_invalid=False)
    with pytest.raises(ResultError, match="accuracy FAIL"):
        check_result(result, fail_on_invalid=True)


def test_streaming_accuracy_log_passes_the_first_token_check(run):
    result = run("sut=echo", "scenario=server", "mode=accuracy", "scenario.target_qps=200", "sut.output_tokens=8",
                 "dataset.n_samples=8")
    assert result.accuracy["compliance"]["lines"][0] == "First token check pass: True"
    assert 0 < result.accuracy["scores"]["rouge1"] < 100 and result.accuracy["verdict"] == "NO_TARGET"


def test_audit_rescores_and_catches_a_tampered_log(oracle_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        audit_main([str(oracle_run)])
    assert exit_.value.code == 0 and "audit       PASS" in capsys.readouterr().out
    audit = json.loads((oracle_run / "accuracy" / "audit.json").read_text())
    assert audit["accuracy"]["scores"] == json.loads((oracle_run / "results.json").read_text())["accuracy"]["scores"]

    with pytest.raises(SystemExit) as exit_:
        audit_main([str(oracle_run), "--target", "0.999", "--json"])
    assert exit_.value.code == 0 and json.loads(capsys.readouterr().out)["accuracy"]["target_fraction"] == 0.999

    tampered = tmp_path / "tampered"
    subprocess.run(["cp", "-r", str(oracle_run), str(tampered)], check=True)
    log = tampered / "accuracy" / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    entries[0]["data"] = entries[0]["data"][8:]  # drop the first token of one output
    log.write_text(json.dumps(entries))
    with pytest.raises(SystemExit) as exit_:
        audit_main([str(tampered)])
    out = capsys.readouterr().out
    assert exit_.value.code == 4 and "hash" in out and "Sample length check pass: False" in out


def test_audit_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "harness.audit", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    proc = subprocess.run([sys.executable, "-m", "harness.audit", str(Path(tmp_path) / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "run directory not found" in proc.stderr


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_audit_of_a_tracked_run_by_its_mlflow_run_id(tmp_path, capsys):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-m", "harness", "sut=oracle", "mode=accuracy", TARGETS, "tracking=mlflow",
                           f"tracking.uri={uri}", f"tracking.artifact_location={tmp_path / 'artifacts'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments)
    with pytest.raises(SystemExit) as exit_:
        audit_main([run.info.run_id[:8], "--tracking-uri", uri])  # the prefix the tables show
    captured = capsys.readouterr()
    assert exit_.value.code == 0 and "PASS: rouge1 100.0000" in captured.out
    assert "%|" not in captured.err and "Downloading artifacts" not in captured.err  # no tqdm bars


def test_audit_of_a_run_id_in_a_dead_or_missing_store_is_bad_input_and_leaves_nothing(tmp_path):
    import os
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    temp = tmp_path / "tmp"
    temp.mkdir()
    for uri in (dead, f"sqlite:///{tmp_path}/missing/mlflow.db"):
        proc = subprocess.run([sys.executable, "-m", "harness.audit", "0123456789abcdef0123456789abcdef",
                               "--tracking-uri", uri], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TMPDIR": str(temp)})
        assert proc.returncode == 2, proc.stderr  # documented: 0 pass, 4 a check failed, 2 bad input
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: cannot "), proc.stderr
        assert list(temp.iterdir()) == []  # no harness-run-* directory left behind
    assert not (tmp_path / "missing").exists()  # reading a store never creates one
