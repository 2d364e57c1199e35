import json

import pytest

from harness.accuracy.judge import FAIL, NO_TARGET, PASS, judge
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
    assert (check["minimum"], check["maximum"], check["pass"]) == (90.0, 110.0, True)
    assert judge({**REF, "gen_len": 200}, bench, 10)["failed"] == ["gen_len 200 > 110 allowed"]


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
