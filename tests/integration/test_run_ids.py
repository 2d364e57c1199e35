"""A run id may be any unique prefix wherever one is taken: the lookup every command shares, and
harness-submit's run loading (compare and audit have their own tests)."""

import json

import pytest

from harness.errors import RunIdError
from harness.submission.sources import load_run
from harness.tracking.store import client, resolve_run_id

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two experiments, a run in each with a run directory's files as artifacts."""
    root = tmp_path_factory.mktemp("ids")
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow = client(uri)
    files = root / "files"
    files.mkdir()
    (files / "results.json").write_text(json.dumps({"scenario": "offline", "verdict": "VALID"}))
    (files / "config.json").write_text(json.dumps({"mode": "submission"}))
    ids = []
    for name in ("a", "b"):
        experiment = mlflow.create_experiment(name, artifact_location=(root / name).as_uri())
        run_id = mlflow.create_run(experiment).info.run_id
        mlflow.log_artifacts(run_id, str(files))
        ids.append(run_id)
    return uri, ids


def test_a_prefix_finds_its_run_in_any_experiment(store):
    uri, ids = store
    for run_id in ids:
        assert resolve_run_id(client(uri), run_id[:8]) == run_id
        assert resolve_run_id(client(uri), run_id.upper()) == run_id


def test_submit_loads_a_run_by_its_prefix_and_records_the_full_id(store):
    uri, ids = store
    run = load_run(ids[1][:8], uri)
    assert run.mlflow_run_id == ids[1] and run.results["verdict"] == "VALID"


def test_unknown_and_malformed_ids_are_refused_in_one_line(store):
    uri, ids = store
    unknown = next(p for p in ("0000", "ffff", "1234") if not any(i.startswith(p) for i in ids))
    with pytest.raises(RunIdError, match=f"no run id starts with '{unknown}'"):
        resolve_run_id(client(uri), unknown)
    with pytest.raises(RunIdError, match="is not an MLflow run id"):
        resolve_run_id(client(uri), "g" * 8)
    with pytest.raises(RunIdError, match="is not an MLflow run id"):
        resolve_run_id(client(uri), "a" * 33)
