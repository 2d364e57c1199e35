"""Submission building blocks without runs: safe names, paths inside the root, truncation, rules, systems."""

import pytest

from harness.errors import SubmissionError
from harness.loadgen.logs import DetailLog
from harness.submission import accuracy_log, rules, system
from harness.submission.layout import Tree, safe_name


@pytest.mark.parametrize("name", ["../x", "..", ".hidden", "a/b", "", "x" * 65, "a b"])
def test_unsafe_names_are_rejected(name):
    with pytest.raises(SubmissionError, match="not allowed"):
        safe_name("submitter", name)


def test_tree_paths_stay_inside_the_root(tmp_path):
    tree = Tree(tmp_path, "open", "ACME")
    assert tree.result_dir("box", "llama3.1-8b", "interactive") == \
        (tmp_path / "open/ACME/results/box/llama3.1-8b/Interactive").resolve()
    (tmp_path / "open" / "ACME").mkdir(parents=True)
    (tmp_path / "open" / "ACME" / "systems").symlink_to("/tmp")  # a link out of the root
    with pytest.raises(SubmissionError, match="outside the submission root"):
        tree.system_file("box")
    with pytest.raises(SubmissionError, match="division"):
        Tree(tmp_path, "secret", "ACME")


def test_truncation_keeps_head_and_tail(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(bytes(range(256)) * 64)  # 16384 bytes
    accuracy_log.truncate(big, tmp_path / "cut.json")
    cut = (tmp_path / "cut.json").read_bytes()
    assert len(cut) == accuracy_log.truncated_size(16384) == 8192 + len(accuracy_log.MARKER)
    assert cut[:4096] == big.read_bytes()[:4096] and cut[-4096:] == big.read_bytes()[-4096:]
    small = tmp_path / "small.json"
    small.write_bytes(b"[]")
    accuracy_log.truncate(small, tmp_path / "same.json")
    assert (tmp_path / "same.json").read_bytes() == b"[]" and accuracy_log.truncated_size(2) == 2


def test_closed_rules_name_every_quick_setting():
    detail = DetailLog({"effective_min_duration_ms": 5000, "requested_use_token_latencies": False}, (), ())
    problems = rules.closed_problems({"official": False, "model_key": "llama3_1-8b", "dataset_samples": 8,
                                      "official_sample_count": 13368},
                                     detail, "llama3_1-8b.Server.target_qps = 2\nllama3_1-8b.Server.min_duration = 1\n")
    assert problems == ["quick settings (benchmark.official=false)", "dataset has 8 of the 13368 samples",
                        "effective min_duration 5000 ms < 600000 ms of mlperf.conf", "user.conf overrides min_duration",
                        "token latencies off (use_token_latencies must be 1 for this LLM)"]
    official = DetailLog({"effective_min_duration_ms": 600000, "requested_use_token_latencies": True}, (), ())
    assert rules.closed_problems({"official": True, "model_key": "llama3_1-8b", "dataset_samples": 13368,
                                  "official_sample_count": 13368}, official, "x.Server.target_qps = 2\n") == []
    assert rules.token_latency_problem("gptj", detail) is None


def test_system_description_merges_config_over_environment():
    env = {"cpu": {"model": "EPYC", "physical_cores": 64, "memory_gib": 512.0}, "os": {"platform": "Linux-6"},
           "gpus": {"devices": [{"name": "NVIDIA H200", "memory_gib": 139.8, "driver": "560"}]},
           "python": {"version": "3.11"}, "loadgen": {"version": "6.0.17"}, "harness": {"version": "0.1.0"}}
    config = {"name": "h200", "system_name": "Box", "status": "available", "system_type": "datacenter",
              "framework": "vLLM", "number_of_nodes": 1, "accelerators_per_node": 8, "peak_tflops": 989.0}
    desc = system.describe(config, env, "closed", "ACME")
    assert "peak_tflops" not in desc  # the roofline's input, not a field of MLPerf's systems JSON
    assert desc["accelerator_model_name"] == "NVIDIA H200" and desc["accelerators_per_node"] == 8
    assert desc["host_memory_capacity"] == "512.0 GiB" and "mlcommons-loadgen 6.0.17" in desc["other_software_stack"]
    assert system.missing_fields(desc) == []
    assert system.missing_fields(system.describe({}, None, "open", "ACME"))[:2] == ["status", "system_name"]
