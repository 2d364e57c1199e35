"""Submission trees end to end: real quick runs (fake SUTs, real LoadGen) -> harness-submit -> harness-check."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from harness import environment
from harness.errors import SubmissionError
from harness.submission import system
from harness.submission.checker import check_tree
from harness.submission.layout import Tree
from harness.submission.sources import load_run
from harness.submission.writer import Planned, missing_scenario_notes, round_problems, submit

FAST = ["dataset.n_samples=8", "sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16", "run.compliance=true"]
# Llama 3.1 8B's settings on the bundled sample, with reachable references (the closed division
# re-judges against the official ones of conf/benchmark/llama3_1-8b.yaml).
ORACLE = ["sut=oracle", "scenario=offline", "benchmark=llama3_1-8b", "benchmark.accuracy_length=null",
          "benchmark.accuracy_reference={rouge1:90,rouge2:90,rougeL:90,rougeLsum:90}"]
ECHO = ["sut=echo", "scenario=interactive", "scenario.target_qps=200"]
# What the machine cannot tell, and what a CI machine may or may not tell (NICs, memory modules,
# GPUs without NVML): the processor fields still come from environment.json.
SYSTEM_YAML = """\
system_name: "ACME test box"
status: available
system_type: datacenter
framework: "harness fakes"
cooling: air
host_networking_topology: "N/A"
host_memory_configuration: "test VM"
host_storage_capacity: "256 GiB"
host_storage_type: "virtual disk"
host_networking: "1x Ethernet"
host_network_card_count: 1
accelerator_host_interconnect: "N/A"
accelerator_interconnect: "N/A"
accelerator_memory_configuration: "N/A"
accelerator_on-chip_memories: ""
"""
V60_SEEDS = (2465351861681999779, 14276810075590677512, 3936089224930324775)


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


def edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def closed(tree, tmp_path):
    """The open tree relabelled closed (its system file then differs from what was written)."""
    dst = tmp_path / "closed" / "ACME"
    shutil.copytree(tree, dst)
    edit_json(dst / "systems" / "box1.json", division="closed")
    return dst


def result(base, scenario="Offline"):
    return base / "results" / "box1" / "llama3.1-8b" / scenario


def test_tree_from_quick_runs_passes_the_checker(tree):
    lines = check_tree(tree)
    assert [str(ln) for ln in lines if not ln.ok] == []
    assert {(ln.scenario, ln.metric) for ln in lines} >= {
        ("Offline", "performance"), ("Offline", "accuracy"), ("Offline", "TEST06"), ("Interactive", "TEST06"),
        ("Interactive", "token_latencies"), ("Offline", "accuracy_hash"), ("-", "system"), ("-", "integrity"),
        ("-", "round"), ("Offline", "round"), ("Interactive", "round")}
    assert str(lines[0]).split()[4:6] == ["v6.1", "(installed"]
    desc = json.loads((tree / "systems" / "box1.json").read_text())
    assert desc["system_name"] == "ACME test box" and desc["host_processor_core_count"] >= 1
    assert list(desc)[:35] == list(system.FIELDS) and desc["accelerator_on-chip_memories"] == ""
    assert next(ln for ln in lines if ln.metric == "system").value == "35 of 35 fields"
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


def test_a_count_of_zero_must_be_a_string_and_hand_edits_are_caught(tree, tmp_path):
    base = copy(tree, tmp_path)
    edit_json(base / "systems" / "box1.json", accelerators_per_node=0, host_networking="")
    [line] = failures(base, "system")
    assert line.problem.startswith("empty fields: accelerators_per_node, host_networking (the official checker")
    assert [ln.problem for ln in failures(base, "integrity")] == ["changed since written: systems/box1.json"]
    edit_json(base / "systems" / "box1.json", accelerators_per_node="0", host_networking="1x Ethernet")
    assert failures(base, "system") == []


def test_seeds_of_another_round_fail(tree, tmp_path):
    base = copy(tree, tmp_path)
    detail = result(base) / "performance" / "run_1" / "mlperf_log_detail.txt"
    text = detail.read_text()
    for name, seed in zip(("qsl", "sample_index", "schedule"), V60_SEEDS, strict=True):
        text = re.sub(rf'("key": "effective_{name}_rng_seed", "value": )\d+', rf"\g<1>{seed}", text)
    detail.write_text(text)
    [line] = failures(base, "round")
    assert (line.scenario, line.problem) == ("Offline", "LoadGen seeds of v6.0: the v6.1 checker rejects them")
    assert [ln.problem for ln in check_tree(base, "v6.0") if ln.metric == "round" and not ln.ok] == [
        "LoadGen seeds of v6.1: the v6.0 checker rejects them"]


def test_a_benchmark_the_round_lacks_fails_even_in_the_open_division(tree, tmp_path):
    base = copy(tree, tmp_path)
    (base / "results" / "box1" / "llama3.1-8b").rename(base / "results" / "box1" / "gptj-99")
    problems = {ln.problem for ln in failures(base, "round")}
    assert problems == {"gptj-99 is not a benchmark of v6.1 (last in v5.0; the harness's benchmarks of v6.1: "
                        "llama3.1-8b, llama3.1-8b-edge, llama2-70b-99.9): the official checker rejects it even in "
                        "the open division"}


def test_closed_scenarios_the_round_lacks_or_requires(tree, tmp_path):
    base = closed(tree, tmp_path)
    bench = base / "results" / "box1" / "llama3.1-8b"
    (bench / "Interactive").rename(bench / "SingleStream")
    [line] = failures(base, "round")
    assert line.problem == ("SingleStream is not a scenario of llama3.1-8b in v6.1 for datacenter systems "
                            "(Offline required; one of Server or Interactive)")
    [line] = failures(base, "scenarios")
    assert line.problem == "missing one of Server or Interactive, required by v6.1 for datacenter systems"
    shutil.rmtree(bench / "SingleStream")
    assert failures(base, "scenarios")[0].value == "Offline"


def test_closed_accuracy_is_judged_exactly_against_the_official_targets(tree, tmp_path):
    base = closed(tree, tmp_path)
    txt = result(base) / "accuracy" / "accuracy.txt"
    hash_line = txt.read_text().splitlines()[1]
    scores = {"rouge1": 38.3914, "rouge2": 15.7485, "rougeL": 24.2508, "rougeLsum": 35.4351, "gen_len": 8167644,
              "gen_num": 13368, "tokens_per_sample": 128.0}
    txt.write_text(f"{scores}\n{hash_line}\n")
    [line] = [ln for ln in failures(base, "accuracy") if ln.scenario == "Offline"]
    assert line.problem == "below target: rouge1 38.3914 < 38.391408 required"  # 38.7792 x 0.99, unrounded
    txt.write_text(f"{ {**scores, 'rouge1': 38.3915} }\n{hash_line}\n")
    assert [ln for ln in failures(base, "accuracy") if ln.scenario == "Offline"] == []


def test_a_streaming_test06_log_without_first_tokens_fails(tree, tmp_path):
    base = copy(tree, tmp_path)
    log = result(base, "Interactive") / "TEST06" / "accuracy" / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    log.write_text(json.dumps([{k: v for k, v in e.items() if k != "token_data"} for e in entries]))
    [line] = failures(base, "TEST06")
    assert "First token check pass: False" in line.problem and line.scenario == "Interactive"


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


def test_missing_system_fields_are_reported_by_the_writer_in_one_line(runs, tmp_path):
    with pytest.raises(SubmissionError) as exc:
        submit([str(runs[0][0])], submitter="ACME", division="open", root=str(tmp_path))
    message = str(exc.value)
    assert message.startswith("systems/local.json: no value for status, system_name, framework, system_type, ")
    assert "cooling" in message and "host_networking_topology" in message and "\n" not in message


def test_the_writer_names_the_round_of_a_benchmark_it_lacks(runs, tree, tmp_path):
    run = load_run(str(runs[0][0]))
    assert round_problems(run, "llama3.1-8b", "closed", "datacenter") == ([], "")
    why, _ = round_problems(run, "gptj-99", "closed", "datacenter")
    assert why[0].startswith("gptj-99 is not a benchmark of v6.1 (last in v5.0")
    _, warning = round_problems(run, "mixtral-8x7b", "open", "datacenter")
    assert warning.endswith("the official v6.1 checker rejects it, even in the open division")
    assert "mixtral-8x7b is not a benchmark of v6.1 (last in v6.0" in warning
    assert round_problems(run, "llama3.1-8b", "closed", "edge")[0] == [
        "llama3.1-8b is not a benchmark for edge systems in v6.1 (it is for datacenter and datacenter,edge systems; "
        "for edge: llama3.1-8b-edge)"]
    layout_tree = Tree(tree.parent.parent, "open", "ACME")
    offline_only = [Planned(run, result(tree), "llama3.1-8b")]
    assert missing_scenario_notes(layout_tree, "box1", offline_only, "datacenter") == []  # Interactive is there
    assert missing_scenario_notes(layout_tree, "box2", offline_only, "datacenter") == [
        "warning: llama3.1-8b on box2 lacks one of Server or Interactive, required by v6.1 for datacenter systems "
        "in the closed division (add the run, or the official checker rejects the benchmark)"]


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
