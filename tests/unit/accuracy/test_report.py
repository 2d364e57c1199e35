import ast
import hashlib
import json

import numpy as np
import pytest

from harness.accuracy.report import accuracy_txt, score_accuracy_log, write_accuracy_txt
from harness.config import BenchmarkConfig
from harness.errors import AccuracyError

BENCH = BenchmarkConfig(name="b", model_key="m", submission_name="b", accuracy_reference={"rouge1": 50.0})


def _log(tmp_path, entries):
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(json.dumps([{"seq_id": n, "qsl_idx": i, "data": np.array(ids, dtype="<i4").tobytes().hex(),
                                 "token_count": len(ids)} for n, (i, ids) in enumerate(entries)]))
    return path


def test_scores_lengths_verdict_and_hash(tmp_path):
    path = _log(tmp_path, [(1, [1, 2, 3]), (0, [4]), (1, [9, 9])])  # duplicate qsl_idx 1 dropped
    refs = ["the cat sat", "a dog ran far"]
    acc = score_accuracy_log(path, {0: "the cat sat", 1: "a dog ran"}, refs, BENCH)
    s = acc["scores"]
    assert s["gen_num"] == 2 and s["gen_len"] == len("the cat sat") + len("a dog ran")
    assert s["tokens_per_sample"] == 2.0  # (1 + 3) / 2 tokens
    assert s["rouge1"] == round((1.0 + 2 * 0.75 / 1.75) / 2 * 100, 4)
    assert acc["verdict"] == "PASS" and acc["hash"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_accuracy_txt_is_mlperfs_format_with_plain_numbers(tmp_path):
    acc = {"scores": {"rouge1": np.float64(38.12345), "gen_len": np.int64(12), "gen_num": 3,
                      "tokens_per_sample": 4.0}, "hash": "ab" * 32}
    text = write_accuracy_txt(tmp_path, acc).read_text()
    first, second = text.splitlines()
    assert "np." not in text and ast.literal_eval(first) == {"rouge1": 38.12345, "gen_len": 12, "gen_num": 3,
                                                              "tokens_per_sample": 4.0}
    assert second == "hash=" + "ab" * 32 and accuracy_txt(acc) == text


def test_log_of_another_dataset_or_without_predictions_fails_clearly(tmp_path):
    path = _log(tmp_path, [(5, [1])])
    with pytest.raises(AccuracyError, match="qsl_idx 5 but the dataset has 2 records"):
        score_accuracy_log(path, {5: "x"}, ["a", "b"], BENCH)
    path = _log(tmp_path, [(1, [1])])
    with pytest.raises(AccuracyError, match="no decoded prediction for qsl_idx 1"):
        score_accuracy_log(path, {}, ["a", "b"], BENCH)
    path.write_text("[]")
    with pytest.raises(AccuracyError, match="no entries"):
        score_accuracy_log(path, {}, ["a"], BENCH)


def test_a_mixed_dataset_is_scored_per_task(tmp_path):
    # Mixtral: ROUGE and gen_len on OpenOrca, exact-match GSM8K, MBXP not executed (not judged).
    path = _log(tmp_path, [(0, [1, 2]), (1, [3, 4, 5, 6]), (2, [7, 8]), (3, [9])])
    refs = ["the cat sat", "18", "7", "def f(): pass"]
    tasks = ["OpenOrca", "GSM8K", "GSM8K", "MBXP"]
    preds = {0: "the cat sat", 1: "9 + 9 = 18. The answer is 18.", 2: "The answer is 8.", 3: "def f(): return 1"}
    bench = BenchmarkConfig(name="x", model_key="mixtral-8x7b", submission_name="mixtral-8x7b",
                            accuracy_reference={"rouge1": 45.5989, "gsm8k": 73.66, "mbxp": 60.16})
    acc = score_accuracy_log(path, preds, refs, bench, tasks)
    s = acc["scores"]
    assert s["rouge1"] == 100.0 and s["gsm8k"] == 50.0 and "mbxp" not in s
    assert s["gen_len"] == len("the cat sat") and s["gen_num"] == 4 and s["tokens_per_sample"] == 2.2
    assert acc["verdict"] == "FAIL"  # gsm8k 50 < 72.9234
    assert any(f.startswith("mbxp not judged: MBXP needs the generated code executed") for f in acc["failed"])
    only_orca = score_accuracy_log(_log(tmp_path, [(0, [1, 2])]), {0: "the cat sat"}, refs, bench, tasks)
    assert only_orca["verdict"] == "INCOMPLETE"  # never PASS while MBXP and GSM8K are not judged
    assert "gsm8k not judged: the dataset has no GSM8K records" in only_orca["failed"]
