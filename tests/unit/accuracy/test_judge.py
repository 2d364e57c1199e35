import json

import pytest

from harness.accuracy.judge import FAIL, INCOMPLETE, NO_TARGET, PASS, judge
from harness.config import BenchmarkConfig, LengthGuard
from harness.errors import AccuracyError

REF = {"rouge1": 40.0, "rouge2": 20.0, "rougeL": 30.0}


def _bench(**kw) -> BenchmarkConfig:
    return BenchmarkConfig(name="b", model_key="m", submission_name="b", accuracy_reference=REF, **kw)


def test_each_metric_must_reach_the_target_fraction():
    ok = judge({"rouge1": 39.6, "rouge2": 19.8, "rougeL": 29.7}, _bench(), 10)
    assert ok["verdict"] == PASS and ok["targets"] == {"rouge1": 39.6, "rouge2": 19.8, "rougeL": 29.7}
    bad = judge({"rouge1": 39.6, "rouge2": 19.79, "rougeL": 29.7}, _bench(), 10)
    assert bad["verdict"] == FAIL and bad["failed"] == ["rouge2 19.79 < 19.8 required"]
    strict = judge({"rouge1": 39.6, "rouge2": 19.8, "rougeL": 29.7}, _bench(accuracy_target=0.999), 10)
    assert strict["verdict"] == FAIL and len(strict["failed"]) == 3


def test_gen_len_guard_scales_to_the_samples_scored():
    guard = LengthGuard("gen_len", reference=1000.0, min_ratio=0.9, max_ratio=1.1)
    bench = _bench(accuracy_length=guard, official_sample_count=100)
    scores = {**REF, "gen_len": 95}
    out = judge(scores, bench, 10)  # 10 of 100 samples: expected about 100 characters
    check = out["checks"][-1]
    assert (check["minimum"], check["maximum"], check["pass"]) == (90.0, pytest.approx(110.0), True)
    assert judge({**REF, "gen_len": 200}, bench, 10)["failed"] == ["gen_len 200 > 110 allowed"]


LLAMA3_8B = {"rouge1": 38.7792, "rouge2": 15.9075, "rougeL": 24.4957, "rougeLsum": 35.793}


def test_targets_are_the_unrounded_products_as_the_official_checker_compares():
    # The official checker: float(score in accuracy.txt) >= 38.7792 * 0.99 (= 38.391408...).
    # Rounding the product to 4 decimals (38.3914) let these three scores pass.
    bench = BenchmarkConfig(name="l", model_key="llama3_1-8b", submission_name="llama3.1-8b",
                            accuracy_reference=LLAMA3_8B)
    just_below = {"rouge1": 38.3914, "rouge2": 15.7484, "rougeL": 24.2507, "rougeLsum": 35.4351}
    out = judge(just_below, bench, 13368)
    assert out["verdict"] == FAIL
    assert out["failed"] == ["rouge1 38.3914 < 38.391408 required", "rouge2 15.7484 < 15.748425 required",
                             "rougeL 24.2507 < 24.250743 required"]
    assert out["targets"]["rouge1"] == 38.7792 * 0.99
    assert judge({"rouge1": 38.3915, "rouge2": 15.7485, "rougeL": 24.2508, "rougeLsum": 35.4351}, bench,
                 13368)["verdict"] == PASS


def test_a_band_with_two_references_and_a_target_that_was_not_scored():
    # Mixtral: tokens per sample within 0.9 x 144.84 and 1.1 x 145.9; MBXP is not computed.
    guard = LengthGuard("tokens_per_sample", reference=144.84, min_ratio=0.9, max_ratio=1.1, max_reference=145.9)
    bench = BenchmarkConfig(name="x", model_key="mixtral-8x7b", submission_name="mixtral-8x7b",
                            accuracy_reference={"rouge1": 45.5989, "gsm8k": 73.66, "mbxp": 60.16},
                            accuracy_length=guard)
    scores = {"rouge1": 46.0, "gsm8k": 74.0, "tokens_per_sample": 160.4}
    out = judge(scores, bench, 15000, not_scored={"mbxp": "no code execution"})
    band = out["checks"][-1]
    assert (band["minimum"], band["maximum"]) == (144.84 * 0.9, 145.9 * 1.1) and band["pass"]
    assert out["verdict"] == INCOMPLETE and out["failed"] == ["mbxp not judged: no code execution"]
    assert judge({**scores, "gsm8k": 72.9}, bench, 15000, not_scored={"mbxp": "x"})["verdict"] == FAIL
    assert judge({**scores, "tokens_per_sample": 160.5}, bench, 15000,
                 not_scored={"mbxp": "x"})["failed"][-1] == "tokens_per_sample 160.5 > 160.49 allowed"
    assert judge({**scores, "mbxp": 60.0}, bench, 15000)["verdict"] == PASS


def test_tokens_per_sample_guard_is_not_scaled_and_missing_values_fail():
    bench = _bench(accuracy_length=LengthGuard("tokens_per_sample", 294.45), official_sample_count=24576)
    assert judge({**REF, "tokens_per_sample": 290.0}, bench, 5)["verdict"] == PASS
    assert judge(dict(REF), bench, 5)["failed"] == ["tokens_per_sample missing"]


def test_no_reference_means_no_target():
    out = judge({"rouge1": 1.0}, BenchmarkConfig(name="s", model_key="m", submission_name="s"), 3)
    assert out["verdict"] == NO_TARGET and out["checks"] == []


def test_reference_run_supplies_the_reference_scores(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"accuracy": {"scores": {"rouge1": 50.0, "gen_len": 9}}}))
    bench = BenchmarkConfig(name="s", model_key="m", submission_name="s", accuracy_reference_run=str(tmp_path))
    out = judge({"rouge1": 49.6}, bench, 3)
    assert out["verdict"] == PASS and out["targets"] == {"rouge1": 49.5}
    assert out["reference_source"] == f"run {tmp_path}"
    with pytest.raises(AccuracyError, match="not found"):
        judge({}, BenchmarkConfig(name="s", model_key="m", submission_name="s",
                                  accuracy_reference_run=str(tmp_path / "nope")), 3)
    (tmp_path / "results.json").write_text(json.dumps({"accuracy": None}))
    with pytest.raises(AccuracyError, match="no accuracy scores"):
        judge({}, bench, 3)


def test_a_reference_run_the_harness_cannot_read_is_named_with_its_file(tmp_path):
    bench = BenchmarkConfig(name="s", model_key="m", submission_name="s", accuracy_reference_run=str(tmp_path))
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 99, "accuracy": {"scores": {"rouge1": 1}}}))
    with pytest.raises(AccuracyError, match=f"accuracy_reference_run: {tmp_path / 'results.json'}: written with "
                                            "results schema_version 99"):
        judge({}, bench, 3)
    (tmp_path / "results.json").write_text(json.dumps({"accuracy": {"scores": {"rouge1": "50"}}}))
    with pytest.raises(AccuracyError, match=r"results.json: accuracy.scores.rouge1: expected a number"):
        judge({}, bench, 3)
