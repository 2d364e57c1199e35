"""results.json: the versioned schema, the typed loader, old files, and the shape of every scenario's result."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.accuracy.judge import Check
from harness.config import LatencyLimits
from harness.loadgen.logs import DetailLog, Percentiles, PerformanceResult
from harness.results import (
    SCHEMA_VERSION,
    Accuracy,
    Compliance,
    DatasetInfo,
    Extra,
    Figures,
    ModelRecord,
    PaceFigures,
    ResultsError,
    ResultsMissing,
    RooflineFigures,
    RunResult,
    SutStats,
    summary,
)
from harness.verdict import Reason, judge

OLD = Path(__file__).resolve().parent.parent / "data" / "results_v0"  # written before schema_version existed
OLD_FILES = sorted(OLD.glob("*.json"))


def _raw(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_is_an_old_file_for_every_result_shape():
    assert {p.stem for p in OLD_FILES} == {
        "offline_submission_echo", "offline_submission_hf_test06", "server_performance_echo",
        "single_stream_performance_echo", "server_accuracy_echo", "offline_performance_failed"}
    assert not any("schema_version" in _raw(p) for p in OLD_FILES)


@pytest.mark.parametrize("path", OLD_FILES, ids=lambda p: p.stem)
def test_an_old_file_loads_typed_and_writes_back_the_same_json_plus_the_version(path, tmp_path):
    raw = _raw(path)
    result = RunResult.load(path)
    assert isinstance(result.dataset, DatasetInfo) and isinstance(result.extra, Extra)
    assert result.dataset.samples == raw["dataset"]["samples"] == 32
    assert result.dataset.fingerprint == raw["dataset"]["fingerprint"]
    assert (result.scenario, result.mode, result.verdict, result.valid) == (
        raw["scenario"], raw["mode"], raw["verdict"], raw["valid"])
    for name in ("ttft_ms", "tpot_ms", "latency_ms"):
        value = getattr(result, name)
        assert value == (None if raw[name] is None else Percentiles(**raw[name]))
    assert isinstance(result.roofline, RooflineFigures) and result.roofline.reason == raw["roofline"]["reason"]
    assert result.extra.samples_issued == raw["extra"]["samples_issued"]
    assert (result.accuracy is None) == (raw["accuracy"] is None)

    written = json.loads(result.write(tmp_path).read_text())
    assert written == {"schema_version": SCHEMA_VERSION, **raw}
    assert RunResult.load(tmp_path) == result  # a run directory loads as its results.json does


def test_an_old_submission_file_of_sut_hf_reads_every_section_typed():
    raw = _raw(OLD / "offline_submission_hf_test06.json")
    result = RunResult.load(OLD / "offline_submission_hf_test06.json")
    acc = result.accuracy
    assert isinstance(acc, Accuracy) and acc.verdict == "NO_TARGET" and acc.checks == ()
    assert acc.scores == raw["accuracy"]["scores"] and isinstance(acc.scores["gen_len"], int)
    assert acc.compliance == Compliance.from_dict(raw["accuracy"]["compliance"])
    assert acc.compliance.passed is True and acc.compliance.lines[-1] == "TEST06 verification complete"
    test06 = result.extra.compliance["TEST06"]
    assert test06.passed is True and test06.entries == 100
    model = result.extra.model
    assert isinstance(model, ModelRecord) and model.architecture == "LlamaForCausalLM"
    assert model.fingerprint == raw["extra"]["model"]["fingerprint"] and model.weight_bytes == 1780992
    assert result.extra.inputs_cut.of == 32 and result.extra.inputs_cut.samples == 0
    roof = result.roofline
    assert roof.model.weight_bytes == raw["roofline"]["model"]["weight_bytes"]
    assert roof.peaks.accelerator == "cpu" and roof.peaks.bandwidth_source.startswith("measured")
    assert roof.decode.achieved_bandwidth_gbs == raw["roofline"]["decode"]["achieved_bandwidth_gbs"]
    assert roof.decode.rest["bound"] == raw["roofline"]["decode"]["bound"]  # untyped keys kept as written
    assert roof.overall.mfu == raw["roofline"]["overall"]["mfu"] and roof.prefill.mfu is None
    assert roof.prefill.null_reasons["mfu"].startswith("Offline has no TTFT")
    assert "roofline    decode" in summary(result) and "TEST06      PASS (100 responses checked)" in summary(result)


def test_an_old_failed_file_keeps_its_figures_withheld_and_loadgens_for_the_record():
    raw = _raw(OLD / "offline_performance_failed.json")
    result = RunResult.load(OLD / "offline_performance_failed.json")
    assert result.verdict == "FAILED" and result.samples_per_second is None and result.latency_ms is None
    assert result.verdict_reasons == (Reason(**raw["verdict_reasons"][0]),)
    assert result.verdict_reasons[0].metric == "errors" and result.verdict_reasons[0].value == 32
    kept = result.extra.failed_run_figures
    assert isinstance(kept, Figures)
    assert kept.latency_ms == Percentiles(**raw["extra"]["failed_run_figures"]["latency_ms"])
    assert kept.samples_per_second == raw["extra"]["failed_run_figures"]["samples_per_second"]
    assert result.roofline.model is None and result.roofline.decode.to_json() == {}


def test_an_old_server_file_reads_pace_and_limits_typed():
    raw = _raw(OLD / "server_performance_echo.json")
    result = RunResult.load(OLD / "server_performance_echo.json")
    assert result.pace == PaceFigures.from_dict(raw["pace"]) and result.pace.ratio == raw["pace"]["ratio"]
    assert result.latency_limits == LatencyLimits(**raw["latency_limits"])
    # Scripts written against the plain JSON still read it
    assert result.pace["completed_qps"] == raw["pace"]["completed_qps"] and result["verdict"] == "VALID"
    assert result.dataset["samples"] == 32 and dict(result.extra) == raw["extra"]


LIMITS = LatencyLimits(2000.0, 100.0)
FIGURES = {"samples_per_second": 240.3, "tokens_per_second": 3845, "latency": Percentiles(5.1, 6.0, 7.25)}


def _shape(scenario: str, mode: str, failed: bool = False) -> RunResult:
    """A result as run_benchmark builds it (LoadGen's figures judged by harness.verdict), per scenario and mode."""
    loadgen = {"offline": "Offline", "server": "Server", "single_stream": "SingleStream"}[scenario]
    streams = scenario != "offline"
    ttft, tpot = (Percentiles(2.5, 3.9, 6.6), Percentiles(0.2, 0.3, 0.38)) if streams else (None, None)
    perf = verdict = None
    detail = None
    if mode in ("performance", "submission"):
        detail = DetailLog({"result_validity": "VALID", "result_scheduled_samples_per_sec": 240.9,
                            "result_query_count": 512}, (), ())
        perf = PerformanceResult(loadgen, True, (), FIGURES["samples_per_second"], FIGURES["tokens_per_second"],
                                 FIGURES["latency"], ttft, tpot, 512, 0, (), "6.0.17")
    errors = 32 if failed else 0
    verdict = judge(detail=detail, ttft=ttft, tpot=tpot, latency=FIGURES["latency"] if perf else None,
                    samples_per_second=perf.samples_per_second if perf else None, streaming_server=scenario == "server",
                    limits=LIMITS if scenario == "server" else None, errors=errors, issued=32, loadgen_errors=0,
                    first_error="performance: RuntimeError: failing SUT" if failed else None)
    accuracy = None
    if mode in ("accuracy", "submission"):
        checks = (Check("rouge1", 38.9, 38.391408, reference=38.7792), Check("gen_len", 1494, 1400.0, 1700.0, 1500.0))
        accuracy = {"scores": {"rouge1": 38.9, "rouge2": 15.0, "rougeL": 24.1, "rougeLsum": 35.9, "gen_len": 1494,
                               "gen_num": 32, "tokens_per_sample": 16.0},
                    "verdict": "PASS", "target_fraction": 0.99, "reference_source": "benchmark sample",
                    "targets": {c.metric: c.minimum for c in checks}, "checks": [c.to_json() for c in checks],
                    "failed": [], "splitter": "punkt", "hash": "ab" * 32, "accuracy_log": "/x/accuracy/log.json",
                    "compliance": {"passed": True, "lines": ["EOS check pass: True"]}}
    extra = {"accuracy_log_samples": 32 if accuracy else None, "samples_issued": {"performance": 32},
             "sut_stats": {"performance": {"requests": 32, "token_count_source": "server ids",
                                           "token_counts_approximate": False, "http_errors": {}}}}
    roofline = {"method": "docs/ROOFLINE.md", "reason": "sut=echo is a fake SUT", "model": None, "peaks": None,
                "workload": None, "decode": {}, "prefill": {}, "overall": {}, "warnings": []}
    return RunResult.from_perf(perf, verdict, scenario=scenario, mode=mode, benchmark="sample",
                               model_key="llama3_1-8b", sut="echo", official=False, errors=errors,
                               error_messages=("performance: RuntimeError: failing SUT",) * bool(failed),
                               loadgen_errors=0, loadgen_version="6.0.17",
                               dataset={"name": "bundled", "source": "/d.jsonl", "samples": 32, "fingerprint": "f0"},
                               output_dir="/x", latency_limits=LIMITS if scenario == "server" else None,
                               accuracy=accuracy, harness_version="0.1.0", extra=extra, roofline=roofline)


SHAPES = [(s, m, False) for s in ("offline", "server", "single_stream") for m in ("performance", "accuracy")] + [
    ("offline", "submission", False), ("server", "performance", True), ("single_stream", "accuracy", True)]


@pytest.mark.parametrize(("scenario", "mode", "failed"), SHAPES)
def test_every_result_shape_round_trips_write_load_equal(scenario, mode, failed, tmp_path):
    result = _shape(scenario, mode, failed)
    path = result.write(tmp_path)
    written = json.loads(path.read_text())
    assert next(iter(written)) == "schema_version" and written["schema_version"] == SCHEMA_VERSION
    loaded = RunResult.load(path)
    assert loaded == result and loaded.to_json() == written
    if failed:
        assert loaded.verdict == "FAILED" and loaded.samples_per_second is None and loaded.ttft_ms is None
    if failed and mode == "performance":  # LoadGen's figures of a failed performance test, for the record
        assert loaded.extra.failed_run_figures.samples_per_second == FIGURES["samples_per_second"]
        assert loaded.extra.failed_run_figures.latency_ms == FIGURES["latency"]
    if mode != "performance":
        assert loaded.accuracy.checks[0] == Check("rouge1", 38.9, 38.391408, reference=38.7792)
        assert written["accuracy"]["checks"][0]["pass"] is True  # derived keys still written
    if scenario == "server" and mode == "performance" and not failed:
        assert loaded.pace.completed_qps == FIGURES["samples_per_second"] and loaded.pace.scheduled_qps == 240.9
    assert loaded.extra.sut_stats["performance"] == SutStats.from_dict(
        {"requests": 32, "token_count_source": "server ids", "token_counts_approximate": False, "http_errors": {}})
    assert loaded.extra.sut_stats["performance"].rest == {"requests": 32, "http_errors": {}}


def test_the_json_keeps_every_key_readers_know():
    """The keys the README documents, as the harness wrote them before schema_version (plus it)."""
    for scenario, mode, failed in SHAPES:
        written = _shape(scenario, mode, failed).to_json()
        assert set(written) == {"schema_version", *_raw(OLD / "server_performance_echo.json")}


def test_a_newer_schema_version_is_refused_in_one_line_naming_the_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**_raw(OLD / "server_performance_echo.json"), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ResultsError) as exc:
        RunResult.load(tmp_path)
    message = str(exc.value)
    assert message.startswith(f"{path}: written with results schema_version {SCHEMA_VERSION + 1}, newer than")
    assert "upgrade the harness" in message and "\n" not in message


@pytest.mark.parametrize(("change", "key", "problem"), [
    ({"accuracy": {"scores": {"rouge1": "high"}}}, "accuracy.scores.rouge1", "expected a number, got a string"),
    ({"errors": "3"}, "errors", "expected a number, got a string"),
    ({"dataset": [1]}, "dataset", "expected an object, got a list"),
    ({"ttft_ms": {"p50": 1.0}}, "ttft_ms", "no key 'p90'"),
    ({"extra": {"compliance": {"TEST06": {"passed": "yes"}}}}, "extra.compliance.TEST06.passed",
     "expected a boolean, got a string"),
    ({"schema_version": "1"}, "schema_version", "expected a whole number"),
])
def test_a_malformed_file_names_the_file_and_the_key(tmp_path, change, key, problem):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**_raw(OLD / "server_performance_echo.json"), **change}))
    with pytest.raises(ResultsError) as exc:
        RunResult.load(path)
    assert str(exc.value).startswith(f"{path}: {key}") and problem in str(exc.value)


def test_a_missing_or_unreadable_file_is_named(tmp_path):
    with pytest.raises(ResultsMissing, match=f"{tmp_path / 'results.json'} not found"):
        RunResult.load(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ResultsError, match="results.json: not valid JSON"):
        RunResult.load(tmp_path)
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(ResultsError, match="results.json: expected a JSON object, got a list"):
        RunResult.load(tmp_path)


def test_keys_a_file_lacks_read_as_empty_and_keys_it_adds_are_kept_in_sections():
    result = RunResult.from_dict({"scenario": "offline", "verdict": "VALID",
                                  "extra": {"new_counter": {"a": 1}}, "dataset": {"samples": 3, "new": "x"}})
    assert result.errors == 0 and result.accuracy is None and result.ttft_ms is None and result.invalid_reasons == ()
    assert result.extra.rest == {"new_counter": {"a": 1}} and result.extra.to_json() == {"new_counter": {"a": 1}}
    assert result.dataset.samples == 3 and result.dataset.to_json() == {"samples": 3, "new": "x"}


def test_a_sut_adapters_own_figures_of_another_type_are_kept_not_refused():
    """sut_stats and model come from SUT adapters, third parties' included: an unexpected type never fails a run."""
    extra = {"sut_stats": {"performance": {"output_token_ids": True, "token_counts_approximate": False, "n": 7}},
             "model": {"parameters": "8B", "fingerprint": "ab"}}
    odd = RunResult(**{**{f: getattr(_shape("offline", "performance"), f) for f in RunResult.__dataclass_fields__},
                       "extra": extra})
    loaded = RunResult.from_dict(odd.to_json())
    assert loaded == odd and loaded.to_json()["extra"] == extra
    perf = loaded.extra.sut_stats["performance"]
    assert perf.output_token_ids is None and perf.rest["output_token_ids"] is True
    assert perf.token_counts_approximate is False and perf.rest["n"] == 7
    assert loaded.extra.model.parameters is None and loaded.extra.model.fingerprint == "ab"


def test_a_section_changed_after_loading_writes_the_change():
    loaded = Accuracy.from_dict({"scores": {"rouge1": 1.5}})
    assert loaded.to_json() == {"scores": {"rouge1": 1.5}}
    changed = dataclasses.replace(loaded, verdict="PASS")
    assert changed.to_json() == {"scores": {"rouge1": 1.5}, "verdict": "PASS"}
    assert Accuracy(verdict="FAIL").to_json()["checks"] == []  # built in code: every key written
