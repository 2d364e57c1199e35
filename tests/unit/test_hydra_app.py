"""The record of one command's jobs: handed to Hydra's task, fresh in a launcher's worker process."""

import pickle

from harness.cli import _job
from harness.hydra_app import HydraTask, Jobs
from harness.rounds.jobs import JobReport


def test_the_exit_code_is_the_highest_of_the_jobs_or_of_the_rounds_reports():
    assert Jobs().exit_code() == 0
    jobs = Jobs(exit_codes=[0, 3])
    assert jobs.exit_code() == 3
    jobs.round_reports.append(JobReport(("scenario=offline",), "FINISHED", 0))
    assert jobs.exit_code() == 0  # a round: its reports (each job's, wherever it ran) decide


def test_a_pickled_task_runs_the_same_job_with_a_fresh_record():
    jobs = Jobs(exit_codes=[2])
    task = pickle.loads(pickle.dumps(HydraTask(_job, jobs)))
    assert task.job is _job and task.jobs.exit_codes == [] and task.jobs is not jobs
