"""What a run looks like in MLflow: flattened params, the fixed metric schema, and tags.

Metric names are a contract (``harness-compare``, dashboards and CI gates read them), so they
are listed once here, with units and direction, and never renamed; a new metric is added, an old
one kept. ``METRIC_SCHEMA`` is logged as a tag so readers can tell versions apart. All values
come from the run's :class:`~harness.results.RunResult` (``results.json``: LoadGen's logs and the
accuracy scores), never from MLflow itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from harness.results import RunResult, Section

METRIC_SCHEMA = "1"
# MLflow's limits: param values of at most 6000 characters, keys of at most 250.
MAX_PARAM_VALUE = 6000


@dataclass(frozen=True)
class Metric:
    """One metric of the schema: where it comes from in results.json and which way is better."""

    name: str
    unit: str
    better: Literal["higher", "lower"] | None
    path: tuple[str, ...]  # keys into results.json: the RunResult's fields and its sections' keys
    description: str


def _pct(field: str, what: str) -> tuple[Metric, ...]:
    return tuple(Metric(f"{field}_{p}_ms", "ms", "lower", (f"{field}_ms", p), f"{what}, {p[1:]}th percentile")
                 for p in ("p50", "p90", "p99"))


METRICS: tuple[Metric, ...] = (
    Metric("samples_per_second", "samples/s", "higher", ("samples_per_second",),
           "LoadGen's samples/s (Server: completed samples/s; SingleStream: QPS)"),
    Metric("tokens_per_second", "tokens/s", "higher", ("tokens_per_second",),
           "LoadGen's tokens/s (Server and SingleStream: completed tokens/s)"),
    *_pct("ttft", "time to first token (not Offline)"),
    *_pct("tpot", "time per output token (not Offline)"),
    *_pct("latency", "end-to-end sample latency"),
    Metric("valid", "1/0", "higher", ("valid",),
           "the harness's verdict: 1 VALID, 0 INVALID, BEHIND or FAILED (absent: no performance test, nothing failed)"),
    Metric("loadgen_valid", "1/0", "higher", ("loadgen_valid",),
           "LoadGen's own result_validity: 1 VALID, 0 INVALID (a FAILED or BEHIND run may still read 1)"),
    Metric("errors", "samples", "lower", ("errors",), "samples the SUT failed or timed out"),
    Metric("loadgen_errors", "count", "lower", ("loadgen_errors",), "errors LoadGen itself logged"),
    Metric("rouge1", "score x100", "higher", ("accuracy", "scores", "rouge1"), "ROUGE-1 (MLPerf recipe)"),
    Metric("rouge2", "score x100", "higher", ("accuracy", "scores", "rouge2"), "ROUGE-2"),
    Metric("rougeL", "score x100", "higher", ("accuracy", "scores", "rougeL"), "ROUGE-L"),
    Metric("rougeLsum", "score x100", "higher", ("accuracy", "scores", "rougeLsum"), "ROUGE-Lsum"),
    Metric("gen_len", "characters", None, ("accuracy", "scores", "gen_len"), "total characters of predictions"),
    Metric("gen_num", "samples", None, ("accuracy", "scores", "gen_num"), "unique samples scored"),
    Metric("tokens_per_sample", "tokens", None, ("accuracy", "scores", "tokens_per_sample"),
           "mean output tokens per sample"),
    Metric("dataset_samples", "samples", None, ("dataset", "samples"), "records in the dataset"),
    # sut=hf with a draft model (speculative decoding), over the performance test's samples:
    Metric("spec_acceptance_rate", "fraction", "higher", ("extra", "sut_stats", "performance", "acceptance_rate"),
           "draft tokens the target accepted / draft tokens proposed"),
    Metric("spec_mean_accepted_tokens", "tokens/step", "higher",
           ("extra", "sut_stats", "performance", "mean_accepted_tokens"),
           "tokens emitted per verification step, the target's own (bonus or correction) token included"),
    # Roofline estimates (harness/roofline.py, docs/ROOFLINE.md); fractions are of the peaks in roofline.peaks.
    Metric("roofline_weight_bytes", "bytes", None, ("roofline", "model", "weight_bytes"), "model weight bytes"),
    Metric("roofline_bytes_per_step", "bytes", None, ("roofline", "decode", "bytes_per_step"),
           "bytes one decode step reads: weights + KV cache of the sequences in the step"),
    Metric("roofline_achieved_bw_gbs", "GB/s", "higher", ("roofline", "decode", "achieved_bandwidth_gbs"),
           "decode bytes per step / step time"),
    Metric("roofline_bw_util", "fraction", "higher", ("roofline", "decode", "bandwidth_utilization"),
           "achieved decode bandwidth / peak memory bandwidth"),
    Metric("roofline_peak_bw_gbs", "GB/s", None, ("roofline", "peaks", "memory_bandwidth_gbs"),
           "peak memory bandwidth of the devices that ran the model"),
    Metric("roofline_prefill_tflops", "TFLOP/s", "higher", ("roofline", "prefill", "achieved_tflops"),
           "prefill FLOPs per prompt / mean TTFT (not Offline)"),
    Metric("roofline_mfu", "fraction", "higher", ("roofline", "prefill", "mfu"),
           "prefill model FLOPs utilization: achieved / peak FLOP/s (not Offline)"),
    Metric("roofline_overall_tflops", "TFLOP/s", "higher", ("roofline", "overall", "achieved_tflops"),
           "model FLOPs of every processed token x samples/s"),
    Metric("roofline_overall_mfu", "fraction", "higher", ("roofline", "overall", "mfu"),
           "the run's model FLOPs utilization: overall achieved / peak FLOP/s"),
    Metric("roofline_peak_tflops", "TFLOP/s", None, ("roofline", "peaks", "tflops"),
           "peak dense FLOP/s at the model's precision"),
)
METRICS_BY_NAME = {m.name: m for m in METRICS}


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(data, Section):
            data = getattr(data, key) if key in data.__dataclass_fields__ else data.rest.get(key)
        elif isinstance(data, Mapping):
            data = data.get(key)
        elif data is not None and hasattr(data, "__dataclass_fields__"):  # RunResult, Percentiles
            data = getattr(data, key, None)
        else:
            return None
    return data


def typed(results: RunResult | Mapping[str, Any]) -> RunResult:
    """A RunResult, or a results.json mapping loaded as one."""
    return results if isinstance(results, RunResult) else RunResult.from_dict(results, "results")


def metrics(results: RunResult | Mapping[str, Any]) -> dict[str, float]:
    """The schema's metrics present in a run's result (absent or null ones are left out)."""
    result = typed(results)
    found = {}
    for metric in METRICS:
        value = _get(result, metric.path)
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)):
            found[metric.name] = float(value)
    return found


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"sut.max_batch_size": "32", ...}``; scalars as JSON (true, null, 0.5)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            flat[name] = text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."
    return flat


def model_fingerprint(results: RunResult | Mapping[str, Any]) -> str | None:
    """The model's fingerprint when the run recorded one (``extra.model.fingerprint`` in
    results.json: sut=hf reports one)."""
    model = typed(results).extra.model
    return model.fingerprint if model is not None and model.fingerprint else None


def validity(results: RunResult | Mapping[str, Any]) -> str:
    """The harness's verdict of a run: VALID, INVALID, BEHIND, FAILED or none. Results written
    before the verdict existed carry only ``valid`` (LoadGen's) and ``errors``."""
    result = typed(results)
    if result.verdict:
        return result.verdict
    if result.errors:
        return "FAILED"
    return "none" if result.valid is None else ("VALID" if result.valid else "INVALID")


def tags(config: Mapping[str, Any], results: RunResult | Mapping[str, Any] | None,
         env: Mapping[str, Any]) -> dict[str, str]:
    """What ran, on what, with which code: the run's tags (only known values are set).

    ``config`` is the plain config dict; ``results`` the run's result (a RunResult or its
    results.json mapping), or None when the run failed before writing one; ``env`` the environment
    capture.
    """
    harness = env.get("harness", {})
    found: dict[str, Any] = {
        "scenario": _get(config, ("scenario", "name")),
        "mode": config.get("mode"),
        "benchmark": _get(config, ("benchmark", "name")),
        "model_key": _get(config, ("benchmark", "model_key")),
        "official": _get(config, ("benchmark", "official")),
        "sut": _get(config, ("sut", "name")),
        "system": _get(config, ("system", "name")),
        "harness_version": harness.get("version"),
        "git_commit": harness.get("git_commit"),
        "git_dirty": harness.get("git_dirty"),
        "loadgen_version": _get(env, ("loadgen", "version")),
        "metric_schema": METRIC_SCHEMA,
    }
    if results is not None:
        result = typed(results)
        found |= {
            "validity": validity(result),
            "accuracy_verdict": (result.accuracy.verdict if result.accuracy is not None else None) or "none",
            "loadgen_version": result.loadgen_version or found["loadgen_version"],
            "dataset_fingerprint": result.dataset.fingerprint,
            "model_fingerprint": model_fingerprint(result),
        }
    return {k: (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in found.items() if v is not None}
