"""Several processes creating one new SQLite MLflow store at once (harness/tracking/store.py)."""

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

# Each child imports MLflow (seconds), says it is ready, then waits for the go file: the stores
# are opened within milliseconds of each other, which is when MLflow's schema creation races.
CHILD = """
import sys, time
from pathlib import Path
import mlflow  # noqa: F401
from harness.config import TrackingConfig
from harness.tracking.store import Store
uri, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.write_text("")
while not go.exists():
    time.sleep(0.001)
store = Store.open(TrackingConfig(backend="mlflow", uri=uri, experiment="race"))
run = store.start_run("r", {"k": "v"})
store.log(run, params={"p": "1"}, metrics={"m": 1.0})
store.end(run, "FINISHED")
"""


def test_processes_creating_a_new_store_together_all_log_their_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    n = 4
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, uri, str(tmp_path / f"ready{i}"), str(tmp_path / "go")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (tmp_path / "go").write_text("")
    outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert all(rc == 0 for rc, _ in outcomes), [err[-1500:] for _, err in outcomes]
    assert (tmp_path / "store" / "mlflow.db.lock").exists()  # the lock beside the database

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert len(runs) == n and all(r.info.status == "FINISHED" and r.data.metrics["m"] == 1.0 for r in runs)


def test_a_write_while_another_process_holds_the_database_waits_instead_of_failing(tmp_path):
    from harness.config import TrackingConfig
    from harness.tracking.store import Store

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store = Store.open(TrackingConfig(backend="mlflow", uri=uri, experiment="busy"))
    run = store.start_run("r", {})
    # Another process holds SQLite's write lock for longer than the 20 s busy timeout MLflow sets
    # (a long transaction of another run): MLflow raises "database is locked"; the store retries.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(24); c.execute('COMMIT')"),
        str(tmp_path / "mlflow.db")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    store.log(run, metrics={"m": 2.0})
    assert holder.wait(timeout=30) == 0
    store.end(run, "FINISHED")
    assert store.client.get_run(run).data.metrics["m"] == 2.0
