"""The `harness` command as a user runs it: real processes, real LoadGen, exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["sut=echo", "sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16"]


def harness(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_default_run_prints_a_summary_and_writes_results(tmp_path):
    proc = harness(f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "offline · submission" in proc.stdout and "VALID" in proc.stdout and "samples/s" in proc.stdout
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["valid"] is True and results["errors"] == 0 and results["sut"] == "hf"
    assert (tmp_path / "run/.hydra/config.yaml").is_file()


def test_help_lists_groups_and_examples(tmp_path):
    proc = harness("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for text in ("scenario: interactive, offline, server, single_stream",
                 "sut: echo, failing, hf, null, openai, oracle",
                 "harness -m scenario=offline,server,single_stream", "Exit codes"):
        assert text in proc.stdout


def test_help_lists_every_command_before_the_runs_own_help(tmp_path):
    from harness.cli import COMMANDS

    proc = harness("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    commands, run_help = proc.stdout.split("harness: MLPerf-style", 1)
    assert all(f"\n  {name} " in commands for name in COMMANDS)
    assert set(COMMANDS) == {"run", "peak", "audit", "compare", "submit", "check", "serve", "providers", "bench"}
    run = harness("run", "--help", cwd=tmp_path)  # the run's own help, without the list
    assert run.returncode == 0 and run.stdout == "harness: MLPerf-style" + run_help


def test_harness_run_is_the_default_command(tmp_path):
    proc = harness("run", "mode=performance", *FAST, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run/results.json").read_text())["sut"] == "echo"


def test_bench_lists_its_scripts_and_refuses_an_unknown_one(tmp_path):
    listed = harness("bench", cwd=tmp_path)
    assert listed.returncode == 0 and "rouge_speed" in listed.stdout and "tls " not in listed.stdout
    unknown = harness("bench", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no benchmark script 'nope' (available: ")


def test_each_command_invocation_has_its_own_exit_code(tmp_path):
    """Two runs in one process: the second's exit code is its own (the jobs' record is per invocation,
    not a module global that still holds the first run's failure)."""
    script = (f"import sys; from harness.cli import _job; from harness.hydra_app import run_command\n"
              f"sys.argv = ['harness', 'scenario.target_qps=0', 'hydra.run.dir={tmp_path}/bad']\n"
              f"bad = run_command('config', _job)\n"
              f"sys.argv = ['harness', 'mode=performance', *{FAST!r}, 'hydra.run.dir={tmp_path}/good']\n"
              f"print(bad, run_command('config', _job))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["2", "0"]


def test_a_round_runs_one_job_per_scenario_and_prints_a_table(tmp_path):
    proc = harness("-m", "scenario=offline,single_stream", "mode=performance", "scenario.min_duration_s=0.3",
                   "scenario.expected_latency_ms=5", *FAST, f"hydra.sweep.dir={tmp_path}/round", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "round of 2 runs" in proc.stdout
    assert len(list((tmp_path / "round").glob("*/results.json"))) == 2
    # each job's progress, labelled with its place in the round
    assert "[job 1/2]  performance  done: " in proc.stdout and "[job 2/2]  performance  done: " in proc.stdout


def test_null_sut_is_selectable_by_name(tmp_path):
    proc = harness("sut=null", "mode=performance", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sut=null" in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["scenario=nope"], "Could not find 'scenario/nope' (available: interactive, offline, server, single_stream)"),
        (["sut.ttft_msx=3"], "Could not override 'sut.ttft_msx': Key 'ttft_msx' is not in struct"),
        (["-m", "scenario=offline,nope"], "scenario/nope"),
        (["sut.ttft_ms=[1,2"], "cannot read override 'sut.ttft_ms=[1,2'"),
        (["scenario.target_qps=fast"], "scenario.target_qps"),
        (["dataset.path=/no/such/file.jsonl"], "/no/such/file.jsonl"),
        (["sut=echo", "scenario=server", "sut.streaming=false"], "cannot stream"),
        (["benchmark=llama3_1-8b", "benchmark.official=true"], "benchmark.official"),
    ],
)
def test_bad_input_is_one_clear_error_and_exit_2(tmp_path, args, needle):
    proc = harness(*args, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/round", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr


def test_a_failed_start_leaves_its_error_in_harness_log(tmp_path):
    proc = harness("dataset.path=/no/such/file.jsonl", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "[ERROR] dataset file not found: /no/such/file.jsonl" in (tmp_path / "run/harness.log").read_text()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = harness(f"hydra.run.dir={blocker}/run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: output directory not writable") and str(blocker) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sut_errors_exit_non_zero_and_keep_the_logs(tmp_path):
    proc = harness("sut=failing", "sut.fail_every=0", "sut.fail_indices=[1]", f"hydra.run.dir={tmp_path}/run",
                   cwd=tmp_path)
    assert proc.returncode == 3
    assert "samples failed" in proc.stderr
    assert (tmp_path / "run/performance/mlperf_log_detail.txt").is_file()
    assert json.loads((tmp_path / "run/results.json").read_text())["errors"] > 0
    env = json.loads((tmp_path / "run/environment.json").read_text())  # written without tracking too
    assert env["command"]["rerun"].endswith("harness sut=failing sut.fail_every=0 'sut.fail_indices=[1]'")


def test_fail_on_invalid(tmp_path):
    # TPOT of 5 ms against a 1 ms limit: LoadGen reports INVALID.
    args = ["sut=echo", "scenario=server", "mode=performance", "sut.ttft_ms=2", "sut.tpot_ms=5", "sut.output_tokens=8",
            "scenario.tpot_ms=1", "scenario.target_qps=250", "scenario.min_duration_s=1"]
    proc = harness(*args, f"hydra.run.dir={tmp_path}/a", cwd=tmp_path)
    assert proc.returncode == 0 and "INVALID" in proc.stdout and "TPOT p99" in proc.stdout
    proc = harness(*args, "fail_on_invalid=true", f"hydra.run.dir={tmp_path}/b", cwd=tmp_path)
    assert proc.returncode == 4 and "INVALID" in proc.stderr
