"""SIGTERM and Ctrl-C sent to a real `harness` process: one line, children ended, runs KILLED, files kept."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

# A Server run of two minutes: long enough to be interrupted while LoadGen runs.
LONG = ["sut=echo", "sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=8", "scenario=server",
        "scenario.target_qps=20", "mode=performance"]


def _start(tmp_path, *args: str) -> subprocess.Popen:
    # Its own session, so the test can signal its process group as a terminal's Ctrl-C does.
    return subprocess.Popen([sys.executable, "-m", "harness", *args, "tracking=mlflow",
                             f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(path, proc: subprocess.Popen, timeout_s: float = 150) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def _test_processes(proc: subprocess.Popen) -> list[psutil.Process]:
    children = psutil.Process(proc.pid).children(recursive=True)
    found = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    assert found, [c.cmdline() for c in children]
    return found


def _runs(tmp_path) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    return {r.data.tags["role"] + ("" if r.data.tags["role"] == "round" else r.data.tags.get("job_num", "")):
            r.info.status for r in runs}


def _one_line(stderr: str, prefix: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("[")]  # log lines start with [time]
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    return lines[0]


def test_sigterm_ends_the_test_process_marks_the_run_killed_and_keeps_its_files(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(tmp_path, *LONG, "scenario.min_duration_s=120", f"hydra.run.dir={run_dir}")
    _wait_for(run_dir / "performance" / "mlperf_log_detail.txt", proc)
    children = _test_processes(proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    line = _one_line(stderr, "error: interrupted by SIGTERM")
    assert f"partial results kept in {run_dir}" in line and "marked KILLED" in line
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "the LoadGen test process outlived the run"
    assert _runs(tmp_path) == {"job": "KILLED"}
    for kept in ("environment.json", "config.json", "user.conf", "performance/mlperf_log_detail.txt",
                 "performance/harness_test.log"):
        assert (run_dir / kept).is_file(), kept


def test_ctrl_c_in_a_round_is_one_line_and_the_round_is_killed(tmp_path):
    round_dir = tmp_path / "round"
    proc = _start(tmp_path, "-m", *LONG, "scenario.min_duration_s=120,121", f"hydra.sweep.dir={round_dir}")
    _wait_for(round_dir / "0_server_echo" / "performance" / "mlperf_log_detail.txt", proc)
    children = _test_processes(proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole process group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT
    line = _one_line(stderr, "error: interrupted by Ctrl-C (SIGINT)")
    assert "the round's MLflow run" in line and line.endswith("marked KILLED")
    assert not psutil.wait_procs(children, timeout=10)[1]
    assert _runs(tmp_path) == {"job0": "KILLED", "round": "KILLED"}  # the second job never started
    assert not (round_dir / "1_server_echo").exists()
