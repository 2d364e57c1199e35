"""How many jobs each launcher may run at once on one host, from its own settings, and the refusal."""

import pytest

from harness.errors import ConfigError
from harness.rounds.hygiene import check, placement

BASIC = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"


def joblib(n_jobs):
    return {"_target_": JOBLIB, "n_jobs": n_jobs}


def slurm(**kw):
    return {"_target_": SLURM, "array_parallelism": 256, "additional_parameters": {}, **kw}


def ray(init=None, remote=None):
    return {"_target_": RAY, "ray": {"init": {"address": None, **(init or {})}, "remote": remote or {}}}


def test_the_basic_launcher_runs_one_job_at_a_time():
    assert placement(BASIC, 8).at_once == 1


@pytest.mark.parametrize(("n_jobs", "batch", "at_once"), [(1, 4, 1), (2, 4, 2), (8, 3, 3), (None, 4, 1)])
def test_joblib_runs_n_jobs_at_once(n_jobs, batch, at_once):
    assert placement(joblib(n_jobs), batch).at_once == at_once


def test_joblib_all_cpus_means_the_cpus_of_this_process(monkeypatch):
    monkeypatch.setattr("harness.rounds.hygiene._cpus", lambda: 16)
    assert placement(joblib(-1), 32).at_once == 16
    assert placement(joblib(-15), 32).at_once == 2  # joblib: n_cpus + 1 + n_jobs
    assert placement(joblib(-16), 32).at_once == 1


def test_submitit_local_starts_every_job_of_a_launch():
    assert placement({"_target_": LOCAL}, 3).at_once == 3


def test_slurm_is_one_per_node_only_when_nodes_are_exclusive_or_jobs_one_at_a_time():
    assert placement(slurm(), 4).at_once is None  # Slurm may pack jobs onto one node
    assert placement(slurm(additional_parameters={"exclusive": True}), 4).at_once == 1
    assert placement(slurm(additional_parameters={"exclusive": "user"}), 4).at_once is None  # the user's jobs share
    assert placement(slurm(array_parallelism=1), 4).at_once == 1


def test_a_local_ray_instance_runs_as_many_jobs_as_its_resources_fit():
    assert placement(ray({"num_cpus": 4}), 8).at_once == 4  # each task claims 1 CPU by default
    assert placement(ray({"num_cpus": 4}, {"num_cpus": 4}), 8).at_once == 1
    assert placement(ray({"num_cpus": 4, "resources": {"harness_host": 1}}, {"resources": {"harness_host": 1}}),
                     8).at_once == 1
    assert placement(ray({"num_cpus": 4}, {"resources": {"harness_host": 1}}), 8).at_once is None  # never offered


def test_a_ray_cluster_is_one_per_node_only_when_jobs_claim_a_per_node_resource():
    cluster = {"address": "ray://head:10001"}
    assert placement(ray(cluster), 4).at_once is None
    assert placement(ray(cluster, {"resources": {"harness_host": 1}}), 4).at_once == 1
    assert placement(ray(), 4, environ={"RAY_ADDRESS": "head:6379"}).at_once is None  # RAY_ADDRESS: a cluster


def test_an_unknown_launcher_cannot_be_told():
    assert placement({"_target_": "hydra_plugins.hydra_rq_launcher.rq_launcher.RQLauncher"}, 2).at_once is None


def test_performance_jobs_that_could_share_a_host_are_refused_in_one_line():
    with pytest.raises(ConfigError) as refused:
        check(joblib(2), "joblib", batch=2, performance=1)
    text = str(refused.value)
    assert "\n" not in text and text.startswith("measurement hygiene: hydra/launcher=joblib could run 2 of")
    assert "hydra.launcher.n_jobs=1" in text and "mode=accuracy" in text
    exclusive = r"\(\+hydra.launcher.additional_parameters.exclusive=true\)"
    with pytest.raises(ConfigError, match=rf"could run several .* at a time {exclusive}"):
        check(slurm(), "submitit_slurm", batch=4, performance=4)


def test_accuracy_rounds_single_jobs_and_one_at_a_time_launches_pass():
    assert check(joblib(2), "joblib", batch=2, performance=0).at_once == 2  # accuracy-only: in parallel
    check(joblib(2), "joblib", batch=1, performance=1)  # hydra.sweeper.max_batch_size=1
    check({"_target_": LOCAL}, "submitit_local", batch=1, performance=5)
    check(slurm(additional_parameters={"exclusive": True}), "submitit_slurm", batch=8, performance=8)
