"""Progress as a person watching `harness` sees it when stdout is not a terminal (CI, a pipe)."""

import re
import subprocess
import sys
from pathlib import Path

SERVER = ["sut=echo", "sut.ttft_ms=2", "sut.tpot_ms=0.5", "sut.output_tokens=16", "scenario=server",
          "scenario.target_qps=200", "scenario.min_duration_s=2", "mode=performance"]


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def test_a_server_run_prints_plain_progress_lines(tmp_path):
    proc = harness(*SERVER, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # Up front: how long it takes at least (500 queries at 200 QPS: 2.5 s; min duration 2 s).
    assert lines[0] == ("server · performance · sut=echo: performance test (Poisson arrivals at 200 QPS until at "
                        "least 500 queries and 2 s: at least 2.5 s); each test starts its own process and loads "
                        "the SUT")
    assert "performance  loading sut=echo · " in proc.stdout
    running = [line for line in lines if line.startswith("performance  Server ")]
    # LoadGen's own count (500 rounded up to whole passes over the 32 samples), at most one line a second.
    assert running and all(re.search(r" \d+/512 completed", line) for line in running), running
    assert len(running) <= 2 + 2.56 / 1.0 + 2, running
    assert any("TTFT p50" in line and "TPOT p50" in line for line in running), running
    assert "performance  done: 512 of 512 samples completed (LoadGen " in proc.stdout
    # The test process's log lines come through the parent, which also writes them to harness.log.
    assert "LoadGen Server performance test: 32 samples" in proc.stdout
    assert "LoadGen Server performance test: 32 samples" in (tmp_path / "run/harness.log").read_text()
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    assert proc.stdout.index("performance  done:") < proc.stdout.index("server · performance · sample")


def test_progress_false_prints_none(tmp_path):
    proc = harness(*SERVER, "run.progress=false", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "performance  " not in proc.stdout and "each test starts its own process" not in proc.stdout
    assert proc.stdout.startswith("[") or proc.stdout.startswith("server · performance · sample"), proc.stdout
