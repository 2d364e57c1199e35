"""Rounds on Hydra's launchers against a real tracking server (conftest.py): one parent run, a child
per job wherever it ran (host, times, who shared its host), the table, the parent's status, resume,
and the measurement-hygiene refusal. Jobs are fake SUTs through the real LoadGen."""

import importlib.util
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.compare import main as compare_main
from harness.rounds.jobs import from_timestamp

# MLflow's own SQLAlchemy models trigger this in the test process; nothing the harness can change.
pytestmark = [pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
              pytest.mark.usefixtures("mlflow_server_process")]

FAST = ["sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=16", "run.progress=false"]
HOST = platform.node()
# No network at run time: Ray would otherwise report usage statistics.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def harness(*args: str, cwd: Path, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def the_round(url: str, experiment: str):
    """The experiment's round parent and its children, by job number then start time."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("role") == "round"]
    children = [r for r in runs if r is not parent]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id == child.data.tags["round"]
        assert child.data.tags["host"] == HOST
    return parent, sorted(children, key=lambda r: (int(r.data.tags["job_num"]), r.info.start_time))


def check_shared_hosts(children) -> None:
    """Each child names the others that ran on its host at the same time, as their recorded times say."""
    spans = {r.info.run_id: (from_timestamp(r.data.tags["started_at"]), from_timestamp(r.data.tags["ended_at"]))
             for r in children}
    for child in children:
        start, end = spans[child.info.run_id]
        expected = sorted(other.info.run_id for other in children if other is not child
                          and spans[other.info.run_id][0] < end and start < spans[other.info.run_id][1])
        named = child.data.tags["shared_host_with"]
        assert sorted(n.split("(")[1].rstrip(")") for n in named.split(", ")) == expected if expected else (
            named == "none"), named


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # ended meanwhile
        return ""


def test_a_submitit_round_names_a_killed_job_and_resuming_runs_only_that_job(tmp_path, mlflow_server, capsys):
    url, _ = mlflow_server
    # Job 0 serves for 6 s (killed meanwhile, as a time limit or an out-of-memory kill would), job 1
    # for 0.2 s; one job at a time, each in its own submitit process.
    args = ["-m", "sut=echo", *FAST, "scenario=server", "scenario.target_qps=20", "scenario.min_query_count=10",
            "scenario.min_duration_s=6,0.2", "mode=performance", "hydra/launcher=submitit_local",
            "hydra.sweeper.max_batch_size=1", "tracking=mlflow", f"tracking.uri={url}", "tracking.experiment=submitit"]
    first = tmp_path / "first"
    proc = subprocess.Popen(command(*args, f"hydra.sweep.dir={first}"), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    detail = first / "0_server_echo" / "performance" / "mlperf_log_detail.txt"
    deadline = time.monotonic() + 150
    while not detail.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "job 0 never started its performance test"
        time.sleep(0.2)
    [job] = [p for p in psutil.Process(proc.pid).children(recursive=True) if "submitit.core._submit" in _cmdline(p)]
    job.send_signal(signal.SIGKILL)  # the job's own process; its LoadGen child ends by itself
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "hydra/launcher=submitit_local lost job(s) 0: " in err

    parent, (killed, done) = the_round(url, "submitit")
    assert parent.info.status == "FAILED" and parent.data.tags["launcher"] == "submitit_local"
    assert parent.data.metrics["jobs"] == 2 and parent.data.metrics["jobs_finished"] == 1
    assert killed.info.status == "KILLED" and "its process was killed" in killed.data.tags["error"]
    assert done.info.status == "FINISHED"  # too few queries for early stopping: INVALID, a result all the same
    assert done.data.tags["shared_host_with"] == "none"  # one job at a time
    lines = out.splitlines()
    assert f"round of 2 runs: 1 FINISHED, 1 KILLED · MLflow parent run {parent.info.run_id}" in lines
    assert any(line.startswith("job 0 KILLED (exit 1): the job ended without closing its run") for line in lines)

    # The same command with round.resume: only job 0 runs again; the parent is FINISHED at last.
    second = harness(*args, f"round.resume={parent.info.run_id[:8]}", f"hydra.sweep.dir={tmp_path}/second",
                     cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (f"resuming round {parent.info.run_id}: 1 of 2 jobs have a FINISHED run; launching 1"
            in second.stdout.splitlines())
    assert f"round of 2 runs: 2 FINISHED · MLflow parent run {parent.info.run_id}" in second.stdout
    parent, children = the_round(url, "submitit")
    assert parent.info.status == "FINISHED" and parent.data.tags["attempts"] == "2"
    assert [(c.data.tags["job_num"], c.info.status) for c in children] == [
        ("0", "KILLED"), ("0", "FINISHED"), ("1", "FINISHED")]
    rerun = children[1]
    assert rerun.data.tags["run_dir"] == str(tmp_path / "second" / "0_server_echo")
    assert children[0].data.tags["superseded_by"] == rerun.info.run_id
    assert not (tmp_path / "second" / "1_server_echo").exists()  # job 1 was not run again
    # harness-compare over HTTP shows the round as it now stands: the run that superseded the killed one.
    capsys.readouterr()
    assert compare_main(["--tracking-uri", url, "--round", parent.info.run_id[:8]]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert f"({rerun.info.run_id[:8]})" in header and f"({children[2].info.run_id[:8]})" in header
    assert f"({children[0].info.run_id[:8]})" not in header


def test_a_joblib_round_runs_accuracy_jobs_side_by_side_and_names_the_failed_one(tmp_path, mlflow_server, capsys):
    url, _ = mlflow_server
    # ${hydra:...} in a job's config resolves in the launching process (which checks every job first) too.
    proc = harness("-m", "sut=failing", "sut.fail_every=0,1", *FAST, "mode=accuracy", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2", "tracking=mlflow", f"tracking.uri={url}", "tracking.experiment=joblib",
                   "system.description=${hydra:runtime.cwd}", f"hydra.sweep.dir={tmp_path}/round", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr  # the failed job's SUT errors
    parent, (ok, failed) = the_round(url, "joblib")
    assert parent.info.status == "FAILED" and parent.data.tags["launcher"] == "joblib"
    assert ok.info.status == "FINISHED" and ok.data.tags["accuracy_verdict"] != "none"
    assert failed.info.status == "FAILED" and failed.data.tags["exit_code"] == "3"
    check_shared_hosts([ok, failed])  # two workers: side by side, which accuracy jobs may be
    assert ok.data.params["system.description"] == str(tmp_path)
    assert not [k for k in ok.data.params if k.startswith("round.")]  # how it was launched: tags, not params
    lines = proc.stdout.splitlines()
    assert f"round of 2 runs: 1 FINISHED, 1 FAILED · MLflow parent run {parent.info.run_id}" in lines
    assert [line.split()[:4] for line in lines if line.split()[:2] in (["0", "offline"], ["1", "offline"])] == [
        ["0", "offline", "failing", "-"], ["1", "offline", "failing", "FAILED"]]
    assert any(line.startswith("job 1 FAILED (exit 3): SUTError: 32 samples failed") for line in lines)
    assert (tmp_path / "round" / "round_table.txt").read_text().startswith("round of 2 runs: 1 FINISHED, 1 FAILED")

    capsys.readouterr()
    assert compare_main(["--tracking-uri", url, "--round", parent.info.run_id]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert f"({ok.info.run_id[:8]})" in header and f"({failed.info.run_id[:8]})" in header


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_performance_jobs_that_could_share_a_host_are_refused_before_anything_runs(tmp_path, launcher):
    proc = harness("-m", "sut=echo", "sut.ttft_ms=2,3", "sut.tpot_ms=0.2", "mode=performance", *launcher,
                   "tracking=mlflow", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.sweep.dir={tmp_path}/r",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"error: measurement hygiene: {launcher[0]} could run 2 of this round's 2 jobs at once")
    assert "run one job per host at a time" in line and "mode=accuracy" in line
    assert not (tmp_path / "mlflow.db").exists() and not list((tmp_path / "r").glob("*_echo"))


STORE = ["tracking=mlflow", "tracking.uri=sqlite:///mlflow.db"]  # in the test's directory


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "round.resume=0123abcd"], "error: round.resume needs tracking=mlflow"),
    (["round.resume=0123abcd", *STORE], "error: round.resume: only a round resumes"),
    (["-m", "round.parent=0123abcd", *STORE], "error: round.parent is set by the harness"),
    (["-m", "sut.ttft_ms=2,3", *STORE, "tracking.experiment=a,b"],
     "error: job 1: a round's jobs share one MLflow store and experiment"),
], ids=["untracked", "single-run", "parent", "two-stores"])
def test_round_settings_that_cannot_work_are_refused_in_one_line(tmp_path, args, message):
    flags, overrides = [a for a in args if a == "-m"], [a for a in args if a != "-m"]
    proc = harness(*flags, "sut=echo", "mode=performance", *overrides, f"hydra.sweep.dir={tmp_path}/r",
                   f"hydra.run.dir={tmp_path}/r", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr


def test_resuming_a_run_that_is_not_a_round_is_refused(tmp_path, mlflow_server):
    from mlflow import MlflowClient

    url, _ = mlflow_server
    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("not-a-round")
    run_id = client.create_run(experiment, tags={"role": "job"}).info.run_id
    proc = harness("-m", "sut=echo", "tracking=mlflow", f"tracking.uri={url}", "tracking.experiment=not-a-round",
                   f"round.resume={run_id[:8]}", f"hydra.sweep.dir={tmp_path}/r", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: round.resume={run_id[:8]}: run {run_id} is not a round's parent run "
                                   "(role=job)")


PEAK = ["sut=queue", "scenario.ttft_ms=1", "peak.start_qps=400", "peak.min_qps=400", "peak.probe_duration_s=0",
        "sut.slots=8,4"]  # two searches of one probe each: a 1 ms TTFT limit is INVALID at every rate


def test_peak_searches_run_as_rounds_with_their_exit_codes_and_the_hygiene_rule(tmp_path):
    def peak(*args):
        return subprocess.run([sys.executable, "-m", "harness.peak", "-m", *PEAK, *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=180)

    refused = peak("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/refused")
    assert refused.returncode == 2 and refused.stderr.startswith("error: measurement hygiene: hydra/launcher=joblib")
    # One worker: the searches run one after another in another process, and their exit code comes back.
    proc = peak("hydra/launcher=joblib", "hydra.launcher.n_jobs=1", f"hydra.sweep.dir={tmp_path}/s")
    assert proc.returncode == 4, proc.stdout + proc.stderr  # no VALID rate
    assert len(list((tmp_path / "s").glob("*/peak.json"))) == 2


ray_missing = importlib.util.find_spec("ray") is None or importlib.util.find_spec(
    "hydra_plugins.hydra_ray_launcher") is None


@pytest.mark.skipif(ray_missing, reason="ray and hydra-ray-launcher not installed (pip install -e '.[ray]')")
def test_a_ray_round_on_a_local_head_node(tmp_path, mlflow_server):
    url, _ = mlflow_server
    # A head node on 127.0.0.1 started by the launcher; the node offers one harness_host and each job
    # claims it, so performance jobs run one at a time, as on a cluster with one per node.
    proc = harness("-m", "sut=echo", "sut.ttft_ms=2,3", "sut.tpot_ms=0.2", "sut.output_tokens=16", "mode=performance",
                   "run.progress=false", "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
                   "+hydra.launcher.ray.init.resources={harness_host:1}",
                   "+hydra.launcher.ray.init.include_dashboard=false",
                   "+hydra.launcher.ray.init._node_ip_address=127.0.0.1",
                   "+hydra.launcher.ray.remote.resources={harness_host:1}", "tracking=mlflow", f"tracking.uri={url}",
                   "tracking.experiment=ray", f"hydra.sweep.dir={tmp_path}/round", cwd=tmp_path, env=RAY_ENV,
                   timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent, children = the_round(url, "ray")
    assert parent.info.status == "FINISHED" and parent.data.tags["launcher"] == "ray"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    assert [c.data.tags["shared_host_with"] for c in children] == ["none", "none"]
    assert f"round of 2 runs: 2 FINISHED · MLflow parent run {parent.info.run_id}" in proc.stdout


def test_a_job_whose_store_lacks_the_round_parent_opens_no_orphan_run(tmp_path, make_config):
    """A job that resolves tracking.uri to another store than the host that launched the round
    ($MLFLOW_TRACKING_URI set on one host only) says so, and opens no child there."""
    from harness import environment
    from harness.errors import TrackingError
    from harness.redact import Redactor
    from harness.tracking import JobInfo, TrackingSession

    uri = f"sqlite:///{tmp_path}/here.db"
    job = JobInfo(output_dir=tmp_path / "round" / "0_offline_echo", round_dir=tmp_path / "round", job_num=0)
    env = environment.capture()
    missing = "0123456789abcdef0123456789abcdef"
    config = make_config("sut=echo", "tracking=mlflow", f"tracking.uri={uri}", f"round.parent={missing}")
    assert TrackingSession().start(config, job, env, Redactor()) is None  # a warning, the benchmark goes on
    required = make_config("sut=echo", "tracking=mlflow", f"tracking.uri={uri}", f"round.parent={missing}",
                           "tracking.required=true")
    with pytest.raises(TrackingError, match=f"has no run {missing}, the round's parent run: this host resolves"):
        TrackingSession().start(required, job, env, Redactor())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert client.search_runs([client.get_experiment_by_name("harness").experiment_id]) == []
