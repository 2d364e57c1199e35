"""A full disk under a real `harness` run: a small tmpfs (needs root and mount; skipped elsewhere)."""

import subprocess
import sys

import pytest


@pytest.fixture
def small_disk(tmp_path):
    def mount(size: str):
        point = tmp_path / f"disk-{size}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(point)
        return point

    mounted: list = []
    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def _harness(run_dir, *args):
    return subprocess.run([sys.executable, "-m", "harness", "sut=echo", "sut.ttft_ms=0", "sut.tpot_ms=0", *args,
                           f"hydra.run.dir={run_dir}"], cwd=run_dir.parent.parent, capture_output=True, text=True,
                          timeout=180)


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    assert "corrupt" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("[")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_disk_too_full_to_start_is_refused_in_one_line(small_disk):
    run_dir = small_disk("256k") / "run"
    proc = _harness(run_dir)
    assert proc.returncode == 2
    assert _one_line(proc.stderr).startswith(f"error: no space left on device in {run_dir}")


def test_a_disk_that_fills_during_the_run_is_named_not_read_as_a_corrupt_log(small_disk):
    # 4,000-token answers make the accuracy test's LoadGen log about 1 MB: it does not fit.
    run_dir = small_disk("1400k") / "run"
    proc = _harness(run_dir, "sut.output_tokens=4000", "benchmark.max_new_tokens=4000")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert line.startswith(f"error: no space left on device in {run_dir}"), line
    assert (run_dir / "performance" / "mlperf_log_detail.txt").is_file()  # what fitted is kept
