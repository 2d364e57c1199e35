"""Run directories: never shared by runs started together, never inherited from an earlier run."""

import json
import subprocess
import sys
import time

FAST = ["sut=echo", "sut.ttft_ms=1", "sut.tpot_ms=0.1", "sut.output_tokens=8", "mode=performance"]


def _start(*args: str, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _together(n: int, *args: str, cwd) -> list[tuple[int, str, str]]:
    """``n`` harness processes started within the same second (retried if a second boundary splits them)."""
    while time.time() % 1 > 0.5:  # start early in a second, so all n start within it
        time.sleep(0.05)
    procs = [_start(*args, cwd=cwd) for _ in range(n)]
    return [(p.wait(timeout=180), *p.communicate()) for p in procs]


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path):
    outcomes = _together(3, *FAST, cwd=tmp_path)
    assert all(rc == 0 for rc, _, _ in outcomes), [err[-2000:] for _, _, err in outcomes]
    dirs = sorted(tmp_path.glob("runs/*/*"))
    assert len(dirs) == 3, dirs
    for d in dirs:
        assert json.loads((d / "results.json").read_text())["output_dir"] == str(d)


def test_rounds_launched_together_get_their_own_sweep_directories(tmp_path):
    outcomes = _together(2, "-m", "scenario=offline,offline", *FAST, cwd=tmp_path)
    assert all(rc == 0 for rc, _, _ in outcomes), [err[-2000:] for _, _, err in outcomes]
    rounds = sorted(tmp_path.glob("runs/multirun/*/*"))
    assert len(rounds) == 2, rounds
    assert all(len(list(r.glob("*/results.json"))) == 2 for r in rounds)


def test_a_reused_run_directory_is_refused_unless_overwrite_clears_it(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.run([sys.executable, "-m", "harness", *FAST[:-1], "mode=submission",
                            f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    assert (run_dir / "accuracy").is_dir()
    again = subprocess.run([sys.executable, "-m", "harness", *FAST, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "already holds an earlier run's files" in again.stderr
    assert "run.overwrite=true" in again.stderr and (run_dir / "accuracy").is_dir()
    over = subprocess.run([sys.executable, "-m", "harness", *FAST, f"hydra.run.dir={run_dir}", "run.overwrite=true"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert over.returncode == 0, over.stderr
    assert not (run_dir / "accuracy").exists()  # nothing of the earlier run is inherited
    assert json.loads((run_dir / "results.json").read_text())["mode"] == "performance"
