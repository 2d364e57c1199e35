"""MLflow as the system of record: every run logged, rounds as parent runs, runs fetched back.

``schema`` fixes what a run looks like in MLflow (params, metrics, tags), ``store`` talks to
one MLflow store, ``session`` is the CLI's per-process tracking (jobs, rounds, trouble). MLflow
itself is imported only when a store is opened.
"""

from harness.tracking.session import JobInfo, TrackedRun, TrackingSession
from harness.tracking.store import default_uri, download_run_dir

__all__ = ["JobInfo", "TrackedRun", "TrackingSession", "default_uri", "download_run_dir"]
