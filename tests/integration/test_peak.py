"""harness-peak end to end: real LoadGen runs against sut=queue (a server of known capacity),
a real MLflow SQLite store, and harness-compare reading the search back.

sut=queue's defaults: 8 slots x 25 ms per request = 320 requests/s. Above that its queue, and
so TTFT, grows without bound; below it TTFT p99 stays far under the 100 ms limit used here.
Bands are wide on purpose: the machine is small and shared, and a 500-query probe near the knee
can go either way, so the checks are about the search (bracket, precision, bounds, records),
not about the exact knee.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.compare import main as compare_main
from harness.config import compose
from harness.loadgen.logs import parse_detail_log
from harness.peak.search import probe_from
from tests.conftest import run_bounded

CAPACITY = 320.0  # conf/sut/queue.yaml: slots / (ttft_ms + (output_tokens - 1) x tpot_ms)
PRECISION = 0.3
MAX_PROBES = 8
# Short runs everywhere: 500 queries (early stopping's minimum is ~460) at a few hundred QPS.
SEARCH = ["sut=queue", "scenario.ttft_ms=100", "scenario.min_duration_s=1", "peak.start_qps=240",
          f"peak.precision={PRECISION}", "peak.probe_duration_s=1", f"peak.max_probes={MAX_PROBES}"]
PROGRESS = re.compile(r"^(probe|confirm) +\d+/\d+ +qps=\d+\.\d\d +(VALID|INVALID|BEHIND) +\S.*\(completed [\d.,]+/s, "
                      r"[\d.]+ s\)$")

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


def harness_peak(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.peak", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """One tracked search; the tests below read what it left."""
    root = tmp_path_factory.mktemp("peak")
    uri = f"sqlite:///{root}/store/mlflow.db"
    started = time.monotonic()
    proc = harness_peak(*SEARCH, "tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment=peak",
                        f"hydra.run.dir={root}/search", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((root / "search" / "peak.json").read_text())
    return proc, root / "search", uri, data, time.monotonic() - started


def test_the_search_finds_the_peak_of_a_server_of_known_capacity(search):
    proc, search_dir, _, data, seconds = search
    assert data["status"] == "found" and data["confirmed"] is True
    peak, invalid = data["peak_qps"], data["lowest_invalid_qps"]
    assert 0.5 * CAPACITY <= peak <= 1.15 * CAPACITY, data["message"]
    assert invalid / peak - 1 <= PRECISION and data["achieved_precision"] == pytest.approx(invalid / peak - 1)
    probes = data["probes"]
    assert sum(p["step"] == "probe" for p in probes) <= MAX_PROBES
    assert sum(p["step"] == "confirm" for p in probes) <= data["settings"]["confirm_attempts"]
    assert probes[-1]["step"] == "confirm" and probes[-1]["qps"] == peak and probes[-1]["valid"]
    # The probes bracket consistently; confirmations that failed (a step down) lie above the answer.
    searched = [p for p in probes if p["step"] == "probe"]
    accepted = [p["qps"] for p in searched if p["valid"] and not p["behind"]]
    assert max(accepted) < min(p["qps"] for p in searched if p["qps"] not in accepted)
    confirms = [p for p in probes if p["step"] == "confirm"]
    assert all(c["qps"] > peak and not (c["valid"] and not c["behind"]) for c in confirms[:-1])
    # One progress line per run, as it happens, then the table.
    lines = proc.stdout.splitlines()
    progress = [line for line in lines if line.startswith(("probe ", "confirm "))]
    assert len(progress) == len(probes) and all(PROGRESS.match(line) for line in progress), progress
    assert f"peak        {peak:.2f} QPS: highest VALID rate {peak:g} QPS (confirmed at full length)" in proc.stdout
    assert (search_dir / "peak_table.txt").read_text() in proc.stdout
    log = (search_dir / "harness-peak.log").read_text()  # the search's own lines, and its runs' log lines
    assert all(line in log for line in progress) and (search_dir / "peak_table.txt").read_text() in log
    assert "LoadGen Server performance test" in log
    assert (search_dir / "peak.png").read_bytes()[:4] == b"\x89PNG"
    for p in probes:  # each run is a complete harness run directory, judged as LoadGen judged it
        results = json.loads((Path(p["output_dir"]) / "results.json").read_text())
        assert results["valid"] == p["valid"] and results["mode"] == "performance"
        assert Path(p["output_dir"]).name == f"{p['step']}_{p['n']:02d}_qps{p['qps']:g}"
        if not p["valid"]:
            assert p["limits"][0]["metric"] in ("ttft_p99_ms", "early_stopping_ttft"), p["limits"]
    assert seconds < 200  # bounded: a handful of ~5 s runs


def test_the_answer_agrees_with_direct_runs_below_and_above_it(search, tmp_path):
    """The same system gives the same answer: harness runs made from a probe's own `harness` command
    (environment.json) are VALID well below the peak and not VALID above the lowest INVALID rate.
    The knee of a 500-query run is itself about +-10% wide, hence 0.8x and 1.25x."""
    _, _, _, data, _ = search
    probe_dir = Path(data["probes"][0]["output_dir"])
    rerun = json.loads((probe_dir / "environment.json").read_text())["command"]["rerun"]
    args = shlex.split(rerun.split("&&", 1)[1])
    assert args[0] == "harness" and "scenario=server" in args and "mode=performance" in args
    for qps, expect in ((0.8 * data["peak_qps"], True), (1.25 * data["lowest_invalid_qps"], False)):
        config = compose([a for a in args[1:] if not a.startswith("scenario.target_qps=")]
                         + [f"scenario.target_qps={qps:.5g}"])
        out = tmp_path / f"direct_{qps:.0f}"
        result = run_bounded(config, out)
        probe = probe_from(0, "probe", qps, result, parse_detail_log(out / "performance" / "mlperf_log_detail.txt"))
        assert probe.accepted is expect, (qps, probe.verdict, probe.limiting)


def test_the_search_is_one_mlflow_parent_with_a_child_per_run_and_compare_shows_the_curve(search, capsys,
                                                                                         tmp_path):
    from mlflow import MlflowClient

    _, search_dir, uri, data, _ = search
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("peak").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("role") == "peak"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and parent.data.tags["peak_status"] == "found"
    assert parent.data.metrics["peak_qps"] == data["peak_qps"] and parent.data.params["peak.precision"] == "0.3"
    assert parent.data.tags["command"].startswith("harness-peak sut=queue")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"peak.json", "peak.png", "peak_table.txt"}
    assert len(children) == len(data["probes"]) == parent.data.metrics["jobs"]
    by_name = {r.info.run_name: r for r in children}
    for p in data["probes"]:
        child = by_name[Path(p["output_dir"]).name]
        assert child.info.status == "FINISHED" and child.data.tags["peak_step"] == p["step"]
        assert float(child.data.params["scenario.target_qps"]) == p["qps"]
        assert child.data.tags["validity"] == ("VALID" if p["valid"] else "INVALID")

    code = compare_main(["--tracking-uri", uri, "--round", parent.info.run_id, "--columns", "--report",
                         str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert code == 0
    header = out.splitlines()[0]
    assert all(name in header for name in by_name) and "peak " not in header  # the probes, not the parent
    assert "scenario.target_qps" in out
    assert (tmp_path / "rep" / "latency_vs_target_qps.png").is_file()


@pytest.mark.parametrize(("overrides", "code", "message"), [
    # The queue's own TTFT is 10 ms, so a 1 ms limit fails at every rate (halving down to min_qps is
    # unit-tested; here the start is min_qps, one probe).
    (["sut=queue", "scenario.ttft_ms=1", "peak.start_qps=400", "peak.min_qps=400"], 4,
     r"error: INVALID at every rate tried, down to peak\.min_qps=400 QPS \(TTFT p99 [\d.]+ ms > limit 1 ms\)"),
    # Every sample fails: the first probe ends the search.
    (["sut=failing", "peak.start_qps=400"], 3, r"error: \d+ samples failed \(first: "),
], ids=["invalid-everywhere", "sut-errors"])
def test_a_sut_that_fails_at_every_rate_ends_the_search_with_one_line(tmp_path, overrides, code, message):
    started = time.monotonic()
    proc = harness_peak(*overrides, "peak.probe_duration_s=0", f"hydra.run.dir={tmp_path}/s", cwd=tmp_path,
                        timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.match(message, errors[0]), proc.stderr
    data = json.loads((tmp_path / "s" / "peak.json").read_text())
    assert data["status"] == "failed" and data["peak_qps"] is None
    assert len(data["probes"]) == 1 and "peak        none:" in proc.stdout
    assert time.monotonic() - started < 100


def test_bad_input_is_one_line_naming_the_key(tmp_path):
    proc = harness_peak("scenario=offline", f"hydra.run.dir={tmp_path}/s", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: config key 'scenario': harness-peak searches the Server target QPS, and scenario=offline is a "
        "LoadGen Offline scenario (use scenario=server or scenario=interactive)"]
    assert not (tmp_path / "s" / "peak.json").exists()
