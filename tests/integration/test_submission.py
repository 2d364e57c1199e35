"""Submission trees end to end: real quick runs (fake SUTs, real LoadGen) -> harness-submit -> harness-check."""

import json
import shutil
import subprocess
import sys

import pytest

from harness import environment
from harness.errors import SubmissionError
from harness.submission.checker import check_tree
from harness.submission.writer import submit

FAST = ["dataset.n_samples=8", "sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16", "run.compliance=true"]
ORACLE = ["sut=oracle", "scenario=offline", "benchmark.accuracy_reference={rouge1:90,rouge2:90,rougeL:90,rougeLsum:90}"]
ECHO = ["sut=echo", "scenario=interactive", "scenario.target_qps=200"]
SYSTEM_YAML = 'system_name: "ACME test box"\nstatus: available\nsystem_type: edge\nframework: "harness fakes"\n'


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from harness.config import compose
    from tests.conftest import run_bounded

    base = tmp_path_factory.mktemp("submission-runs")
    out = []
    for name, overrides in (("oracle", ORACLE + FAST), ("echo", ECHO + FAST)):
        run_dir = base / name
        run_dir.mkdir()
        environment.write(run_dir, environment.capture(overrides))  # as the CLI does before a run
        run_bounded(compose(overrides), run_dir)
        out.append(run_dir)
    system_yaml = base / "system.yaml"
    system_yaml.write_text(SYSTEM_YAML)
    return out, system_yaml


@pytest.fixture(scope="module")
def tree(runs, tmp_path_factory):
    run_dirs, system_yaml = runs
    root = tmp_path_factory.mktemp("submissions")
    base, notes = submit([str(r) for r in run_dirs], submitter="ACME", division="open", system_id="box1",
                         system_config_path=str(system_yaml), root=str(root))
    assert any("open division only" in n for n in notes)
    return base


def copy(tree, tmp_path):
    dst = tmp_path / "open" / "ACME"
    shutil.copytree(tree, dst)
    return dst


def failures(base, metric):
    return [ln for ln in check_tree(base) if not ln.ok and ln.metric == metric]


def result(base, scenario="Offline"):
    return base / "results" / "box1" / "llama3.1-8b" / scenario


def test_tree_from_quick_runs_passes_the_checker(tree):
    lines = check_tree(tree)
    assert [str(ln) for ln in lines if not ln.ok] == []
    assert {(ln.scenario, ln.metric) for ln in lines} >= {
        ("Offline", "performance"), ("Offline", "accuracy"), ("Offline", "TEST06"), ("Interactive", "TEST06"),
        ("Interactive", "token_latencies"), ("Offline", "accuracy_hash"), ("-", "system")}
    desc = json.loads((tree / "systems" / "box1.json").read_text())
    assert desc["system_name"] == "ACME test box" and desc["host_processor_core_count"] >= 1
    readme = (result(tree, "Interactive") / "README.md").read_text()
    assert "harness sut=echo scenario=interactive" in readme
    assert (result(tree) / "TEST06" / "verify_accuracy.txt").read_text().startswith("First token check pass: Skipped")
    verify = (result(tree, "Interactive") / "TEST06" / "verify_accuracy.txt").read_text()
    assert "First token check pass: True" in verify
    assert "harness 0.1.0" in (tree / "src" / "README.md").read_text()


def test_cli_check_prints_one_line_per_result_and_exits_0(tree):
    proc = subprocess.run([sys.executable, "-m", "harness.submission.checker", str(tree)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "box1" in proc.stdout and "Interactive" in proc.stdout and "checks passed" in proc.stdout


def test_missing_file_fails(tree, tmp_path):
    base = copy(tree, tmp_path)
    (result(base) / "performance" / "run_1" / "mlperf_log_summary.txt").unlink()
    [line] = failures(base, "files")
    assert "missing performance/run_1/mlperf_log_summary.txt" in line.problem


def test_edited_accuracy_log_fails_the_hash(tree, tmp_path):
    base = copy(tree, tmp_path)
    log = result(base) / "accuracy" / "mlperf_log_accuracy.json"
    text = log.read_text()
    i = text.index('"data" : "') + 10
    log.write_text(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])  # one token id changed, same size
    assert "the log was edited" in failures(base, "accuracy_hash")[0].problem
    assert "accuracy/mlperf_log_accuracy.json" in failures(base, "integrity")[0].problem


def test_invalid_run_fails(tree, tmp_path):
    base = copy(tree, tmp_path)
    detail = result(base) / "performance" / "run_1" / "mlperf_log_detail.txt"
    detail.write_text(detail.read_text().replace('"result_validity", "value": "VALID"',
                                                 '"result_validity", "value": "INVALID"'))
    assert failures(base, "performance")[0].problem.startswith("INVALID")


def test_missing_system_field_fails(tree, tmp_path):
    base = copy(tree, tmp_path)
    path = base / "systems" / "box1.json"
    desc = json.loads(path.read_text())
    del desc["framework"]
    path.write_text(json.dumps(desc))
    assert failures(base, "system")[0].problem == "missing fields: framework"


def test_accuracy_below_target_fails(tree, tmp_path):
    base = copy(tree, tmp_path)
    txt = result(base) / "accuracy" / "accuracy.txt"
    txt.write_text(txt.read_text().replace("'rouge1': 100.0", "'rouge1': 50.0"))
    assert "below target: rouge1 50 < 89.1 required" in failures(base, "accuracy")[0].problem


def test_writer_refuses_hostile_names_and_existing_trees(runs, tree, tmp_path):
    run_dirs, system_yaml = runs
    with pytest.raises(SubmissionError, match="submitter name '../x' is not allowed"):
        submit([str(run_dirs[0])], submitter="../x", division="open", system_config_path=str(system_yaml),
               root=str(tmp_path))
    with pytest.raises(SubmissionError, match="system name '../../etc' is not allowed"):
        submit([str(run_dirs[0])], submitter="ACME", division="open", system_id="../../etc",
               system_config_path=str(system_yaml), root=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SubmissionError, match="exists; pass --force"):
        submit([str(run_dirs[0])], submitter="ACME", division="open", system_id="box1",
               system_config_path=str(system_yaml), root=str(tree.parent.parent))
    proc = subprocess.run([sys.executable, "-m", "harness.submission.writer", "--submitter", "../x", "--division",
                           "open", str(run_dirs[0])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: submitter name") and "Traceback" not in proc.stderr


def test_missing_system_fields_are_reported_by_the_writer(runs, tmp_path):
    with pytest.raises(SubmissionError, match="required fields missing: status, system_name, system_type, framework"):
        submit([str(runs[0][0])], submitter="ACME", division="open", root=str(tmp_path))


def test_closed_division_rejects_quick_runs(runs, tree, tmp_path):
    run_dirs, system_yaml = runs
    with pytest.raises(SubmissionError) as exc:
        submit([str(run_dirs[0])], submitter="ACME", division="closed", system_config_path=str(system_yaml),
               root=str(tmp_path))
    assert "quick settings (benchmark.official=false)" in str(exc.value)
    assert "Quick runs may only go to the open division" in str(exc.value)
    closed = tmp_path / "closed" / "ACME"
    shutil.copytree(tree, closed)
    desc = json.loads((closed / "systems" / "box1.json").read_text())
    (closed / "systems" / "box1.json").write_text(json.dumps({**desc, "division": "closed"}))
    problems = [ln.problem for ln in check_tree(closed) if ln.metric == "division"]
    assert problems and all("quick settings" in p and "user.conf overrides" in p for p in problems)
