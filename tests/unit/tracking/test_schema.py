"""The MLflow view of a run: flattened params, the fixed metric schema, tags."""

from harness.config import compose, to_dict
from harness.loadgen.logs import Percentiles
from harness.results import RunResult
from harness.tracking import schema
from tests.unit.test_roofline import worked_example

ENV = {"harness": {"version": "0.1.0", "git_commit": "abc123", "git_dirty": True}, "loadgen": {"version": "6.0.17"}}


def _result(**changes) -> RunResult:
    fields = dict(scenario="server", mode="submission", benchmark="sample", model_key="llama3_1-8b", sut="echo",
                  official=False, valid=True, verdict="VALID", loadgen_valid=True, invalid_reasons=(),
                  samples_per_second=12.5, tokens_per_second=800.0,
                  ttft_ms=Percentiles(30.0, 31.0, 35.5), tpot_ms=Percentiles(5.0, 5.1, 5.4),
                  latency_ms=Percentiles(85.0, 90.0, 99.0), errors=0, error_messages=(), loadgen_errors=0,
                  loadgen_version="6.0.17", dataset={"name": "bundled", "samples": 32, "fingerprint": "f00d"},
                  output_dir="/tmp/run")
    return RunResult(**{**fields, **changes})


def test_flatten_gives_dotted_keys_and_json_scalars():
    flat = schema.flatten(to_dict(compose(["sut=echo", "scenario=server"])))
    assert flat["sut.max_batch_size"] == "32" and flat["sut.name"] == "echo"
    assert flat["scenario.name"] == "server" and flat["scenario.min_query_count"] == "500"
    assert flat["benchmark.official"] == "false" and flat["dataset.path"] == "null"
    assert flat["benchmark.latency.server.ttft_ms"] == "2000.0"
    assert all(isinstance(v, str) for v in flat.values())


def test_flatten_truncates_values_over_mlflows_limit():
    flat = schema.flatten({"a": {"long": "x" * 10_000, "items": [1, 2]}})
    assert len(flat["a.long"]) == schema.MAX_PARAM_VALUE and flat["a.long"].endswith("...")
    assert flat["a.items"] == "[1, 2]"


def test_metrics_follow_the_schema_and_leave_out_what_is_absent():
    accuracy = {"scores": {"rouge1": 38.8, "rouge2": 15.9, "rougeL": 24.5, "rougeLsum": 35.8, "gen_len": 1234,
                           "gen_num": 32, "tokens_per_sample": 40.5}, "targets": {"rouge1": 38.4}, "verdict": "PASS"}
    speculative = {"sut_stats": {"performance": {"acceptance_rate": 0.75, "mean_accepted_tokens": 3.25}}}
    roof = worked_example().to_json()  # tests/unit/test_roofline.py: Llama 3.1 8B on an H100 SXM, Server
    found = schema.metrics(_result(accuracy=accuracy, extra=speculative, roofline=roof).to_json())
    assert (found["spec_acceptance_rate"], found["spec_mean_accepted_tokens"]) == (0.75, 3.25)
    assert found["roofline_bw_util"] == roof["decode"]["bandwidth_utilization"] and found["roofline_mfu"] > 0
    assert found["roofline_weight_bytes"] == 2 * 8030261248 and found["roofline_peak_bw_gbs"] == 3350
    assert found["tokens_per_second"] == 800.0 and found["samples_per_second"] == 12.5
    assert (found["ttft_p50_ms"], found["ttft_p99_ms"], found["tpot_p99_ms"]) == (30.0, 35.5, 5.4)
    assert (found["latency_p50_ms"], found["latency_p99_ms"]) == (85.0, 99.0)
    assert found["rouge1"] == 38.8 and found["rougeLsum"] == 35.8 and found["gen_len"] == 1234.0
    assert found["valid"] == 1.0 and found["errors"] == 0.0 and found["dataset_samples"] == 32.0
    assert set(found) == {m.name for m in schema.METRICS}

    offline_accuracy_mode = _result(valid=None, verdict=None, loadgen_valid=None, ttft_ms=None, tpot_ms=None,
                                    samples_per_second=None).to_json()
    found = schema.metrics(offline_accuracy_mode)
    assert not {"ttft_p50_ms", "tpot_p99_ms", "valid", "loadgen_valid", "samples_per_second", "rouge1"} & set(found)
    assert found["tokens_per_second"] == 800.0


def test_metric_names_are_unique_and_every_metric_has_a_direction_or_none():
    names = [m.name for m in schema.METRICS]
    assert len(names) == len(set(names))
    assert schema.METRICS_BY_NAME["tokens_per_second"].better == "higher"
    assert schema.METRICS_BY_NAME["ttft_p99_ms"].better == "lower"


def test_tags_name_what_ran_and_the_verdicts():
    config = to_dict(compose(["sut=echo", "scenario=server"]))
    results = _result(valid=False, verdict="BEHIND", accuracy={"scores": {}, "verdict": "FAIL"},
                      extra={"model": {"fingerprint": "sha256:beef"}}).to_json()
    tags = schema.tags(config, results, ENV)
    assert tags["scenario"] == "server" and tags["sut"] == "echo" and tags["mode"] == "submission"
    assert tags["benchmark"] == "sample" and tags["system"] == "local"
    assert tags["validity"] == "BEHIND" and tags["accuracy_verdict"] == "FAIL"
    assert tags["git_commit"] == "abc123" and tags["git_dirty"] == "true" and tags["harness_version"] == "0.1.0"
    assert tags["loadgen_version"] == "6.0.17" and tags["dataset_fingerprint"] == "f00d"
    assert tags["model_fingerprint"] == "sha256:beef" and tags["metric_schema"] == schema.METRIC_SCHEMA


def test_tags_of_a_run_that_failed_before_results():
    tags = schema.tags(to_dict(compose(["sut=echo"])), None, ENV)
    assert tags["scenario"] == "offline" and "validity" not in tags and "dataset_fingerprint" not in tags
    no_accuracy = schema.tags(to_dict(compose(["sut=echo"])), _result(accuracy=None).to_json(), ENV)
    assert no_accuracy["accuracy_verdict"] == "none" and "model_fingerprint" not in no_accuracy


def test_validity_of_results_written_before_the_verdict_existed():
    old = {k: v for k, v in _result().to_json().items() if k not in ("verdict", "loadgen_valid")}
    assert schema.validity(old) == "VALID"
    assert schema.validity({**old, "errors": 3}) == "FAILED"
    assert schema.validity({**old, "valid": False}) == "INVALID" and schema.validity({**old, "valid": None}) == "none"


def test_a_result_and_its_json_give_the_same_metrics_and_tags():
    from pathlib import Path

    old = Path(__file__).resolve().parents[2] / "data" / "results_v0" / "offline_submission_hf_test06.json"
    config = to_dict(compose(["sut=hf"]))
    for result in (_result(accuracy={"scores": {"rouge1": 38.8}, "verdict": "PASS"}), RunResult.load(old)):
        assert schema.metrics(result) == schema.metrics(result.to_json())
        assert schema.tags(config, result, ENV) == schema.tags(config, result.to_json(), ENV)
    found, tags = schema.metrics(result), schema.tags(config, result, ENV)  # the file written before schema_version
    assert found["roofline_bw_util"] == result.roofline.decode.bandwidth_utilization and found["rouge1"] > 0
    assert tags["model_fingerprint"] == result.extra.model.fingerprint and tags["validity"] == "VALID"
