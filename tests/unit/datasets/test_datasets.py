import json

import pytest

from harness.config import DatasetConfig
from harness.datasets import BUNDLED_SAMPLE, load_dataset
from harness.errors import DatasetError


def test_bundled_sample_loads_in_cnn_dailymail_schema():
    ds = load_dataset(DatasetConfig())
    assert len(ds) >= 30 and ds.source == str(BUNDLED_SAMPLE)
    assert all(r.input and r.reference for r in ds.records)
    assert ds.fingerprint == load_dataset(DatasetConfig()).fingerprint


def test_subset_is_deterministic_and_changes_the_fingerprint():
    a = load_dataset(DatasetConfig(n_samples=5, seed=1))
    assert a == load_dataset(DatasetConfig(n_samples=5, seed=1))
    assert len(a) == 5 and a.fingerprint != load_dataset(DatasetConfig()).fingerprint
    assert a.records != load_dataset(DatasetConfig(n_samples=5, seed=2)).records


def test_custom_fields(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) for i in range(3)))
    ds = load_dataset(DatasetConfig(path=str(path), prompt_field="question", reference_field="answer"))
    assert [(r.input, r.reference) for r in ds.records] == [("q0", "a0"), ("q1", "a1"), ("q2", "a2")]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("", "empty"), ("{not json", "not a readable jsonl"), ('{"article": "x"}', "highlights")],
)
def test_bad_files_name_the_file_and_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(DatasetConfig(path=str(path)))
    assert str(path) in str(err.value)


def test_subset_larger_than_dataset():
    with pytest.raises(DatasetError, match="n_samples"):
        load_dataset(DatasetConfig(n_samples=10_000))
