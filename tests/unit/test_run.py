"""Run-directory guards of harness/run.py."""

import pytest

from harness.errors import OutputError
from harness.run import claim_output_dir

HYDRA = (".hydra", "harness.log")


def _earlier_run(path):
    (path / ".hydra").mkdir(parents=True)
    (path / "harness.log").write_text("the earlier run's log\n")
    (path / "environment.json").write_text("{}")
    (path / "accuracy").mkdir()
    (path / "accuracy" / "mlperf_log_accuracy.json").write_text("[]")


def test_a_fresh_or_hydra_only_directory_is_claimed(tmp_path):
    claim_output_dir(tmp_path / "missing", overwrite=False, hydra_files=HYDRA)
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / "harness.log").write_text("")
    claim_output_dir(tmp_path / "run", overwrite=False, hydra_files=HYDRA)


def test_an_earlier_runs_directory_is_refused_naming_the_key(tmp_path):
    _earlier_run(tmp_path)
    with pytest.raises(OutputError, match=r"already holds an earlier run's files \(accuracy, environment.json\).*"
                                          r"run\.overwrite=true"):
        claim_output_dir(tmp_path, overwrite=False, hydra_files=HYDRA)
    assert (tmp_path / "accuracy").is_dir()


def test_overwrite_clears_it_but_keeps_what_hydra_wrote_for_this_job(tmp_path):
    _earlier_run(tmp_path)
    (tmp_path / ".hydra" / "config.yaml").write_text("this job")
    claim_output_dir(tmp_path, overwrite=True, hydra_files=HYDRA)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "harness.log"]
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "this job"
    assert (tmp_path / "harness.log").read_text() == ""


def test_overwrite_never_deletes_a_directory_no_run_wrote(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="holds files no harness run wrote"):
        claim_output_dir(tmp_path, overwrite=True, hydra_files=HYDRA)
    assert (tmp_path / "thesis.tex").read_text() == "years of work"
