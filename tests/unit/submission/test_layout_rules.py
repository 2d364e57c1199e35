"""Submission building blocks without runs: safe names, paths inside the root, truncation, rules."""

import pytest

from harness.errors import SubmissionError
from harness.loadgen.logs import DetailLog
from harness.submission import accuracy_log, rules
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


def test_truncation_keeps_head_and_tail_joined_by_the_official_marker(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(bytes(range(256)) * 64)  # 16384 bytes
    accuracy_log.truncate(big, tmp_path / "cut.json")
    cut = (tmp_path / "cut.json").read_bytes()
    # tools/submission/truncate_accuracy_log.py: first 4096 + "\n\n...\n\n" + last 4096 = 8,199 bytes
    assert len(cut) == accuracy_log.truncated_size(16384) == 8199
    assert cut == big.read_bytes()[:4096] + b"\n\n...\n\n" + big.read_bytes()[-4096:]
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
