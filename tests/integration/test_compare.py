"""harness-compare against a real MLflow store holding constructed runs."""

import subprocess
import sys

import pytest

from harness.compare import main

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

SERVER = {"tokens_per_second": 1000.0, "samples_per_second": 10.0, "ttft_p99_ms": 100.0, "tpot_p99_ms": 10.0,
          "latency_p99_ms": 500.0, "ttft_p50_ms": 60.0, "ttft_p90_ms": 90.0, "errors": 0.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A round (parent + 3 jobs) and one run outside it, logged as the harness logs them."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("cmp")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("cmp", artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(experiment, run_name="round", tags={"role": "round"}).info.run_id
    ids = {"parent": parent}
    jobs = {"base": ({}, "8"), "faster": ({"tokens_per_second": 1030.0, "ttft_p99_ms": 102.0}, "16"),
            "slower": ({"tokens_per_second": 900.0}, "8")}
    for name, (changes, batch) in jobs.items():
        run = client.create_run(experiment, run_name=name, tags={
            "role": "job", "scenario": "server", "sut": "echo", "mlflow.parentRunId": parent}).info.run_id
        client.log_param(run, "sut.max_batch_size", batch)
        for key, value in {**SERVER, **changes}.items():
            client.log_metric(run, key, value)
        client.set_terminated(run, "FINISHED")
        ids[name] = run
    other = client.create_run(experiment, run_name="other", tags={"role": "job", "scenario": "offline"}).info.run_id
    client.log_metric(other, "tokens_per_second", 5000.0)
    ids["other"] = other
    return uri, ids


def compare(capsys, uri, *args):
    code = main(["--tracking-uri", uri, *args])
    return code, capsys.readouterr()


def test_a_round_side_by_side(store, capsys):
    uri, ids = store
    code, out = compare(capsys, uri, "--round", ids["parent"])
    assert code == 0
    header = out.out.splitlines()[0]
    assert all(f"{name} ({ids[name][:8]})" in header for name in ("base", "faster", "slower"))
    assert "other" not in header and "round" not in header
    rows = {line.split()[0]: line.split()[1:] for line in out.out.splitlines()[2:]}
    assert rows["sut.max_batch_size"] == ["8", "16", "8"]
    assert rows["tokens_per_second"] == ["[tokens/s]", "1,000", "1,030", "900"]


def test_baseline_deltas_and_the_regression_gate(store, capsys):
    uri, ids = store
    code, out = compare(capsys, uri, "--round", ids["parent"], "--baseline", ids["base"], "--fail-on-regression", "5%")
    assert code == 1
    assert "1,030 (+3.0%)" in out.out and "900 (-10.0%)" in out.out and "102 (+2.0%)" in out.out
    assert f"regression: slower ({ids['slower'][:8]}) tokens_per_second 1,000 -> 900 (-10.0%)" in out.out
    assert "faster" not in "".join(line for line in out.out.splitlines() if line.startswith("regression"))

    code, out = compare(capsys, uri, "--round", ids["parent"], "--baseline", ids["base"], "--fail-on-regression", "15")
    assert code == 0 and "no regression beyond 15% in 2 runs" in out.out
    code, out = compare(capsys, uri, ids["faster"], "--baseline", ids["base"], "--fail-on-regression", "5%")
    assert code == 0 and out.out.splitlines()[0].index("base") < out.out.splitlines()[0].index("faster")


def test_filters_select_by_tag_and_param(store, capsys):
    uri, ids = store
    code, out = compare(capsys, uri, "--experiment", "cmp", "--filter", "scenario=offline")
    assert code == 0 and "other" in out.out.splitlines()[0] and "base" not in out.out.splitlines()[0]
    code, out = compare(capsys, uri, "--experiment", "cmp", "--filter", "sut.max_batch_size=16")
    assert code == 0 and out.out.splitlines()[0].split() == ["faster", f"({ids['faster'][:8]})"]


def test_report_is_written_and_logged(store, capsys, tmp_path):
    from mlflow import MlflowClient

    uri, ids = store
    code, out = compare(capsys, uri, "--round", ids["parent"], "--baseline", ids["base"], "--report",
                        str(tmp_path / "rep"), "--log-to", ids["parent"])
    assert code == 0, out.err
    written = {p.name for p in (tmp_path / "rep").iterdir()}
    assert written == {"report.html", "throughput_vs_latency.png", "throughput.png", "latency_percentiles.png"}
    page = (tmp_path / "rep/report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "tokens_per_second" in page
    logged = {f.path for f in MlflowClient(uri).list_artifacts(ids["parent"], "report")}
    assert "report/report.html" in logged and "report/throughput.png" in logged


def test_selection_errors_exit_2(store, capsys):
    uri, _ = store
    code, out = compare(capsys, uri, "--experiment", "nope")
    assert code == 2 and "no experiment named 'nope'" in out.err
    with pytest.raises(SystemExit) as exc:
        main(["--tracking-uri", uri, "--experiment", "cmp", "--fail-on-regression", "5%"])
    assert exc.value.code == 2 and "--baseline" in capsys.readouterr().err


def test_help_explains_selection_filters_and_exit_codes():
    proc = subprocess.run([sys.executable, "-m", "harness.compare", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for text in ("--round PARENT_RUN_ID", "--fail-on-regression PCT", "scenario=server", "tokens_per_second",
                 "exit codes"):
        assert text in proc.stdout


def test_run_ids_may_be_unique_prefixes(store, capsys):
    uri, ids = store
    code, out = compare(capsys, uri, ids["base"][:8], ids["faster"][:6], "--baseline", ids["base"][:8])
    assert code == 0, out.err
    assert f"* base ({ids['base'][:8]})" in out.out and f"faster ({ids['faster'][:8]})" in out.out
    code, out = compare(capsys, uri, "--round", ids["parent"][:8])
    assert code == 0 and "slower" in out.out.splitlines()[0]


def test_unknown_and_ambiguous_prefixes_are_one_clear_error(store, capsys, tmp_path):
    from mlflow import MlflowClient

    uri, ids = store
    unknown = next(p for p in ("0000000", "fffffff", "1234567") if not any(i.startswith(p) for i in ids.values()))
    code, out = compare(capsys, uri, unknown)
    assert code == 2 and out.err == f"error: no run id starts with '{unknown}' in {uri}\n"
    code, out = compare(capsys, uri, "not-a-run")
    assert code == 2 and "'not-a-run' is not an MLflow run id" in out.err and out.err.count("\n") == 1
    # Two runs sharing a first digit (at most 17 ids make sure of it, 16 hex digits).
    client = MlflowClient(uri)
    experiment = client.create_experiment("ambiguous")
    seen: dict[str, str] = {}
    while True:
        run_id = client.create_run(experiment).info.run_id
        if run_id[0] in seen:
            break
        seen[run_id[0]] = run_id
    code, out = compare(capsys, uri, run_id[0])
    assert code == 2 and f"run id '{run_id[0]}' is ambiguous: " in out.err and run_id in out.err
    assert "give more characters" in out.err and out.err.count("\n") == 1


def test_report_by_default_under_runs_names_the_round_and_baseline(store, capsys, tmp_path, monkeypatch):
    uri, ids = store
    monkeypatch.chdir(tmp_path)
    code, out = compare(capsys, uri, "--round", ids["parent"][:8], "--baseline", ids["base"], "--report")
    assert code == 0, out.err
    (page,) = (tmp_path / "runs" / "reports").glob("*/*/report.html")
    assert f"report: {page.relative_to(tmp_path)} (" in out.out
    text = page.read_text()
    assert "<title>harness-compare: round</title>" in text and f"round ({ids['parent']})" in text
    assert f"<th>baseline</th><td>base ({ids['base'][:8]})</td>" in text
    assert f"harness-compare --tracking-uri {uri} --round {ids['parent'][:8]}" in text
