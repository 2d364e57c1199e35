"""Roofline utilization: bytes moved per decode step, achieved bandwidth and MFU, from LoadGen's numbers.

Decode is memory-bound: every step reads the weights once (whatever the batch) plus each
sequence's KV cache. Prefill is compute-bound: about 2 FLOPs per parameter per prompt token.
From what every run has (LoadGen's mean TPOT / TTFT / latency and throughput, the bridge's token
counts, the prompts' token counts) and the model's shape, this module estimates

- ``decode``: weight and KV bytes per step, achieved GB/s = bytes / step time, its fraction of the
  peak, the step time the peak allows, and FLOPs per byte against the ridge point;
- ``prefill``: FLOPs per prompt / mean TTFT, and that as a fraction of peak FLOP/s (MFU);
- ``overall``: model FLOPs of every token processed x samples/s, against peak (MFU of the run).

Formulas are pure functions of frozen dataclasses; ``for_run`` gathers the inputs of one run.
Anything that cannot be estimated is null with a reason, never guessed. docs/ROOFLINE.md has the
method, its assumptions and a worked example (tests/unit/test_roofline.py reproduces it).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import HarnessConfig, ModelConfig
from harness.hardware import Peaks, dtype_bytes, resolve_peaks
from harness.loadgen.logs import DetailLog
from harness.sut.base import SUTInfo

log = logging.getLogger(__name__)

METHOD = "docs/ROOFLINE.md"
PROMPTS_COUNTED = 1024  # at most this many prompts are tokenized for the mean input length


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need of a model. Parameter counts are totals over all layers."""

    source: str
    parameters: float
    weight_bytes: float
    dtype: str | None
    layers: int | None = None
    attention_heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    hidden_size: int | None = None
    vocab_size: int | None = None
    tied_embeddings: bool = True  # unknown counts as tied: nothing is taken off the bytes read
    kv_bytes_per_element: float | None = None
    experts: int | None = None
    experts_per_token: int | None = None
    expert_parameters: float | None = None  # one expert, all layers

    @property
    def bytes_per_parameter(self) -> float:
        return self.weight_bytes / self.parameters

    @property
    def input_embedding_parameters(self) -> float:
        """An untied input embedding is a lookup: a step reads B rows of it, not the matrix."""
        if self.tied_embeddings or not self.vocab_size or not self.hidden_size:
            return 0.0
        return float(self.vocab_size * self.hidden_size)

    @property
    def moe(self) -> bool:
        return bool(self.experts and self.experts_per_token and self.expert_parameters)

    @property
    def active_parameters(self) -> float:
        """Parameters one token runs through: all, or for MoE all but the experts it skips."""
        if not self.moe:
            return self.parameters
        return self.parameters - (self.experts - self.experts_per_token) * self.expert_parameters

    @property
    def matmul_parameters(self) -> float:
        """Parameters that cost 2 FLOPs per token (the input embedding is a lookup)."""
        return self.active_parameters - self.input_embedding_parameters

    @property
    def output_head_parameters(self) -> float:
        """The LM head (vocab x hidden; 0 when unknown): in prefill only the last prompt position's
        logits are computed (transformers' generate, vLLM, TGI), so it costs FLOPs once per prompt."""
        if not self.vocab_size or not self.hidden_size:
            return 0.0
        return float(self.vocab_size * self.hidden_size)

    @property
    def kv_bytes_per_token(self) -> float | None:
        """K and V of one token in every layer: 2 x layers x kv_heads x head_dim x bytes."""
        if None in (self.layers, self.kv_heads, self.head_dim, self.kv_bytes_per_element):
            return None
        return 2 * self.layers * self.kv_heads * self.head_dim * self.kv_bytes_per_element

    def experts_touched(self, batch: float) -> float:
        """Expected distinct experts per layer that ``batch`` tokens route to, routing uniform and
        independent: E x (1 - (1 - k/E)^B); k for one token, towards E for large batches."""
        return self.experts * (1 - (1 - self.experts_per_token / self.experts) ** batch)

    def decode_weight_bytes(self, batch: float) -> float:
        """Weight bytes one decode step of ``batch`` sequences reads: each weight once, except the
        input embedding's untouched rows and, for MoE, the experts no sequence routed to."""
        read = self.parameters - self.input_embedding_parameters
        if self.moe:
            read -= (self.experts - self.experts_touched(batch)) * self.expert_parameters
        return read * self.bytes_per_parameter

    def attention_flops_per_token(self, context: float) -> float | None:
        """Q.K and P.V of one token against ``context`` earlier tokens: 4 x layers x heads x head_dim x context."""
        if None in (self.layers, self.attention_heads, self.head_dim):
            return None
        return 4.0 * self.layers * self.attention_heads * self.head_dim * context

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "parameters": self.parameters, "active_parameters": self.active_parameters,
                "dtype": self.dtype, "weight_bytes": self.weight_bytes,
                "bytes_per_parameter": self.bytes_per_parameter, "layers": self.layers,
                "attention_heads": self.attention_heads, "kv_heads": self.kv_heads, "head_dim": self.head_dim,
                "kv_bytes_per_token": self.kv_bytes_per_token,
                "input_embedding_parameters": self.input_embedding_parameters,
                **({"experts": self.experts, "experts_per_token": self.experts_per_token,
                    "expert_parameters": self.expert_parameters} if self.moe else {})}


def shape_from_config(model: ModelConfig, source: str = "benchmark.model") -> ModelShape:
    """The benchmark config's model block (remote SUTs)."""
    per_param = model.bytes_per_param if model.bytes_per_param is not None else dtype_bytes(model.dtype)
    if per_param is None:
        raise ValueError(f"benchmark.model.dtype={model.dtype!r}: unknown size; set benchmark.model.bytes_per_param")
    kv = dtype_bytes(model.kv_dtype) if model.kv_dtype else dtype_bytes(model.dtype) or per_param
    return ModelShape(source=source, parameters=model.parameters, weight_bytes=model.parameters * per_param,
                      dtype=model.dtype, layers=model.layers, attention_heads=model.attention_heads or model.kv_heads,
                      kv_heads=model.kv_heads, head_dim=model.head_dim, hidden_size=model.hidden_size,
                      vocab_size=model.vocab_size, tied_embeddings=model.tie_word_embeddings,
                      kv_bytes_per_element=kv, experts=model.experts, experts_per_token=model.experts_per_token,
                      expert_parameters=model.expert_parameters)


def _first(cfg: Mapping[str, Any], *keys: str) -> Any:
    return next((cfg[k] for k in keys if isinstance(cfg.get(k), (int, float)) and not isinstance(cfg[k], bool)),
                None)


def shape_from_model_info(info: Mapping[str, Any]) -> ModelShape:
    """A loaded model: ``extra.model`` (parameters, dtype, weight bytes) plus its ``config.json``
    (Llama/Mistral/Qwen names, GPT-J/GPT-2 names; Mixtral-style SwiGLU experts)."""
    cfg: dict[str, Any] = {}
    path = Path(str(info.get("path", ""))) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("roofline: cannot read %s (%s); layer shapes unknown", path, exc)
    cfg = {**cfg, **(cfg.get("text_config") or {})}  # multimodal configs nest the language model
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    kv_heads = _first(cfg, "num_key_value_heads", "num_kv_heads") or (1 if cfg.get("multi_query") else heads)
    head_dim = _first(cfg, "head_dim") or (hidden // heads if hidden and heads else None)
    experts = _first(cfg, "num_local_experts", "num_experts")
    per_token = _first(cfg, "num_experts_per_tok")
    inter = _first(cfg, "moe_intermediate_size", "intermediate_size")
    expert_params = 3.0 * hidden * inter * layers if experts and per_token and hidden and inter and layers else None
    dtype = info.get("dtype")
    return ModelShape(
        source=f"loaded model (results extra.model) and {path}", parameters=float(info["parameters"]),
        weight_bytes=float(info["weight_bytes"]), dtype=dtype, layers=layers, attention_heads=heads,
        kv_heads=kv_heads, head_dim=head_dim, hidden_size=hidden, vocab_size=_first(cfg, "vocab_size"),
        # transformers ties by default when the config does not say
        tied_embeddings=bool(cfg.get("tie_word_embeddings", True)) if cfg else True,
        kv_bytes_per_element=dtype_bytes(dtype),  # the KV cache is kept in the model's dtype
        experts=experts if expert_params else None, experts_per_token=per_token if expert_params else None,
        expert_parameters=expert_params)


@dataclass(frozen=True)
class TokenCounts:
    """Prompt lengths in tokens, as the SUT's tokenizer counts them."""

    mean: float
    mean_square: float  # for the attention term, which grows with length squared
    counted: int
    total: int
    tokenizer: str


def count_prompt_tokens(tokenizer: Any, prompts: Sequence[str], limit: int = PROMPTS_COUNTED) -> TokenCounts | None:
    """Token counts of up to ``limit`` prompts, evenly spaced over the dataset (runs in the test
    process, where the SUT's tokenizer is at hand, after LoadGen has finished)."""
    if not prompts:
        return None
    step = max(1, math.ceil(len(prompts) / limit))
    lengths = [len(tokenizer.encode(p)) for p in prompts[::step]]
    name = getattr(tokenizer, "name", None) or type(tokenizer).__name__
    return TokenCounts(sum(lengths) / len(lengths), sum(n * n for n in lengths) / len(lengths), len(lengths),
                       len(prompts), str(name))


@dataclass(frozen=True)
class Workload:
    """What LoadGen and the run measured (times in ms, means over samples)."""

    scenario: str  # LoadGen's: Offline, Server, SingleStream
    samples_per_second: float | None
    tokens_per_second: float | None
    mean_latency_ms: float | None
    mean_ttft_ms: float | None
    mean_tpot_ms: float | None
    input_tokens: float | None
    input_tokens_mean_square: float | None
    output_tokens: float | None
    offline_batch: int | None = None  # Offline: sequences the SUT decodes together
    offline_batch_source: str | None = None
    sources: dict[str, str] = field(default_factory=dict)


def workload_from_detail(detail: DetailLog, *, input_tokens: TokenCounts | None, output_tokens: float | None,
                         offline_batch: int | None = None, offline_batch_source: str | None = None) -> Workload:
    """LoadGen's means from the detail log of the performance test."""
    scenario = detail.get("effective_scenario") or detail.get("requested_scenario") or "?"
    samples_key, tokens_key = {"Offline": ("result_samples_per_second", "result_tokens_per_second"),
                               "Server": ("result_completed_samples_per_sec", "result_completed_tokens_per_second"),
                               "SingleStream": ("result_qps_with_loadgen_overhead",
                                                "result_completed_tokens_per_second")}.get(scenario, ("", ""))

    def ms(key: str) -> float | None:
        value = detail.get(key)
        return None if value is None else value / 1e6

    sources = {"samples_per_second": f"LoadGen {samples_key}", "tokens_per_second": f"LoadGen {tokens_key}",
               "mean_latency_ms": "LoadGen result_mean_latency_ns",
               "mean_ttft_ms": "LoadGen result_first_token_mean_latency_ns",
               "mean_tpot_ms": "LoadGen result_time_to_output_token_mean",
               "output_tokens": "the bridge's output tokens / completed samples of the performance test"}
    if input_tokens is not None:
        sources["input_tokens"] = (f"mean of {input_tokens.counted} of {input_tokens.total} prompts, "
                                   f"tokenized by the SUT's tokenizer ({input_tokens.tokenizer})")
    return Workload(scenario=scenario, samples_per_second=detail.get(samples_key),
                    tokens_per_second=detail.get(tokens_key), mean_latency_ms=ms("result_mean_latency_ns"),
                    mean_ttft_ms=ms("result_first_token_mean_latency_ns"),
                    mean_tpot_ms=ms("result_time_to_output_token_mean"),
                    input_tokens=input_tokens.mean if input_tokens else None,
                    input_tokens_mean_square=input_tokens.mean_square if input_tokens else None,
                    output_tokens=output_tokens, offline_batch=offline_batch,
                    offline_batch_source=offline_batch_source, sources=sources)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


@dataclass(frozen=True)
class Roofline:
    """The ``roofline`` section of results.json."""

    model: ModelShape | None
    peaks: Peaks | None
    workload: Workload | None
    decode: dict[str, Any]
    prefill: dict[str, Any]
    overall: dict[str, Any]
    reason: str | None = None  # why nothing at all was estimated
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {"method": METHOD, "reason": self.reason,
                "model": self.model.to_json() if self.model else None,
                "peaks": self.peaks.to_json() if self.peaks else None,
                "workload": None if w is None else {
                    "scenario": w.scenario, "samples_per_second": w.samples_per_second,
                    "tokens_per_second": w.tokens_per_second, "mean_latency_ms": w.mean_latency_ms,
                    "mean_ttft_ms": w.mean_ttft_ms, "mean_tpot_ms": w.mean_tpot_ms,
                    "input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                    "offline_batch": w.offline_batch, "sources": dict(w.sources)},
                "decode": self.decode, "prefill": self.prefill, "overall": self.overall,
                "warnings": list(self.warnings)}


def not_estimated(reason: str, workload: Workload | None = None, peaks: Peaks | None = None) -> Roofline:
    return Roofline(None, peaks, workload, {}, {}, {}, reason)


def _with_reasons(values: dict[str, Any], base: Mapping[str, str], deps: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``values`` plus ``null_reasons``: for each None figure, its own reason from ``base``, else
    the reason of the first missing input it depends on (``deps``), so every null says why."""
    def why(key: str) -> str:
        if key in base:
            return base[key]
        for dep in deps.get(key, ()):
            if values.get(dep) is None:
                return why(dep)
        return "not estimated"

    figures = [k for k in values if not k.endswith(("_source", "note", "bound"))]
    return {**values, "null_reasons": {k: why(k) for k in figures if values[k] is None}}


def decode_estimate(model: ModelShape, w: Workload, peaks: Peaks) -> dict[str, Any]:
    """Bytes per decode step, achieved bandwidth and utilization (see the module docstring)."""
    base: dict[str, str] = {}
    # Step time: LoadGen's mean TPOT where tokens stream; in Offline the batch's share of tokens/s.
    step_ms = step_source = None
    if w.scenario != "Offline":
        step_ms, step_source = w.mean_tpot_ms, "LoadGen mean TPOT"
        if step_ms is None:
            base["step_time_ms"] = "LoadGen reported no TPOT (the benchmark has no token latencies)"
    elif w.offline_batch and w.tokens_per_second:
        step_ms = 1000.0 * w.offline_batch / w.tokens_per_second
        step_source = "Offline: decode batch / LoadGen tokens/s (prefill time included: an upper bound)"
    else:
        base["step_time_ms"] = ("LoadGen reported no tokens/s" if w.offline_batch
                                else "Offline has no TPOT and the SUT's decode batch is unknown")
    # Sequences per step: one query at a time; Little's law over the decode phase; the Offline batch.
    conc = conc_source = None
    if w.scenario == "SingleStream":
        conc, conc_source = 1.0, "SingleStream: one query at a time"
    elif w.scenario == "Server":
        if None not in (w.samples_per_second, w.mean_latency_ms, w.mean_ttft_ms):
            little = w.samples_per_second * (w.mean_latency_ms - w.mean_ttft_ms) / 1000.0
            conc = max(1.0, little)  # a step has at least one sequence; below 1 the decoder idles
            conc_source = (f"Little's law: completed samples/s x (mean latency - mean TTFT) = {little:.3f} "
                           "sequences decoding on average (at least 1 per step)")
        else:
            base["concurrency"] = "LoadGen reported no mean latency or mean TTFT"
    elif w.offline_batch:
        conc, conc_source = float(w.offline_batch), w.offline_batch_source
    else:
        base["concurrency"] = "Offline: the SUT's decode batch is unknown"
    # KV read per sequence: its prompt plus, on average over its decode, half its output.
    context = None
    if w.input_tokens is not None and w.output_tokens is not None:
        context = w.input_tokens + w.output_tokens / 2
    else:
        base["context_tokens"] = "prompt or output token counts unknown"
    kv_per_token = model.kv_bytes_per_token
    if kv_per_token is None:
        base["kv_bytes_per_step"] = "the model's layers, KV heads, head size or KV dtype are unknown"
    attn = model.attention_flops_per_token(context) if context is not None else None
    if context is not None and attn is None:
        base["flops_per_step"] = "the model's layers, heads or head size are unknown"
    for key, peak in (("memory_bandwidth_gbs", peaks.memory_bandwidth_gbs), ("tflops", peaks.tflops)):
        if peak is None:
            base[f"peak_{key}"] = peaks.null_reasons.get(key, f"no peak {key}")

    weight = model.decode_weight_bytes(conc) if conc is not None else None
    kv = conc * context * kv_per_token if None not in (conc, context, kv_per_token) else None
    total = weight + kv if None not in (weight, kv) else None
    achieved = total / (step_ms / 1000.0) / 1e9 if total is not None and step_ms else None
    bw_peak = peaks.memory_bandwidth_gbs
    flops = conc * (2 * model.matmul_parameters + attn) if None not in (conc, attn) else None
    intensity = _ratio(flops, total)
    ridge = peaks.tflops * 1e12 / (bw_peak * 1e9) if peaks.tflops and bw_peak else None
    values = {
        "step_time_ms": step_ms, "step_time_source": step_source,
        "concurrency": conc, "concurrency_source": conc_source, "context_tokens": context,
        "weight_bytes_per_step": weight, "kv_bytes_per_step": kv, "bytes_per_step": total,
        "achieved_bandwidth_gbs": achieved, "bandwidth_utilization": _ratio(achieved, bw_peak),
        "min_step_time_ms": total / (bw_peak * 1e9) * 1000.0 if total and bw_peak else None,
        "flops_per_step": flops, "arithmetic_intensity": intensity, "ridge_point": ridge,
        "bound": None if intensity is None or ridge is None else ("memory" if intensity < ridge else "compute"),
        "peak_memory_bandwidth_gbs": bw_peak, "peak_tflops": peaks.tflops,
    }
    deps = {"weight_bytes_per_step": ["concurrency"],
            "kv_bytes_per_step": ["concurrency", "context_tokens"],
            "bytes_per_step": ["weight_bytes_per_step", "kv_bytes_per_step"],
            "achieved_bandwidth_gbs": ["bytes_per_step", "step_time_ms"],
            "bandwidth_utilization": ["achieved_bandwidth_gbs", "peak_memory_bandwidth_gbs"],
            "min_step_time_ms": ["bytes_per_step", "peak_memory_bandwidth_gbs"],
            "flops_per_step": ["concurrency", "context_tokens"],
            "arithmetic_intensity": ["flops_per_step", "bytes_per_step"],
            "ridge_point": ["peak_memory_bandwidth_gbs", "peak_tflops"]}
    out = _with_reasons(values, base, deps)
    del out["peak_memory_bandwidth_gbs"], out["peak_tflops"]  # reported once, under peaks
    out["null_reasons"] = {k: v for k, v in out["null_reasons"].items() if not k.startswith("peak_")}
    return out


def prefill_flops(model: ModelShape, tokens: float, tokens_mean_square: float | None = None) -> float | None:
    """2 FLOPs per matmul parameter per prompt token, except the LM head, whose logits only the last
    prompt position needs (2 x vocab x hidden once), plus causal attention: token i attends to i
    earlier ones, so 4 x layers x heads x head_dim x n^2 / 2 in all (n^2 averaged over prompts).

    Counting the head for every prompt token would credit FLOPs no engine runs: 7% more for Llama
    3.1 8B, 2.75x more for the embedded tiny model (whose head is most of its weights)."""
    attn = model.attention_flops_per_token(1.0)
    if attn is None:
        return None
    square = tokens_mean_square if tokens_mean_square is not None else tokens * tokens
    head = model.output_head_parameters
    return 2 * (model.matmul_parameters - head) * tokens + 2 * head + attn * square / 2


def _flops_reasons(w: Workload, peaks: Peaks, output_needed: bool) -> dict[str, str]:
    base = {}
    if w.input_tokens is None or (output_needed and w.output_tokens is None):
        base["flops_per_sample"] = "prompt or output token counts unknown"
    else:
        base["flops_per_sample"] = "the model's layers, heads or head size are unknown"  # used only when null
    if peaks.tflops is None:
        base["peak_tflops"] = peaks.null_reasons.get("tflops", "no peak FLOP/s")
    return base


def prefill_estimate(model: ModelShape, w: Workload, peaks: Peaks) -> dict[str, Any]:
    """Achieved FLOP/s while prefilling one prompt, from the mean TTFT (streaming scenarios)."""
    base = _flops_reasons(w, peaks, output_needed=False)
    flops = prefill_flops(model, w.input_tokens, w.input_tokens_mean_square) if w.input_tokens is not None else None
    time_ms, note = w.mean_ttft_ms, None
    if w.scenario == "Offline":
        time_ms, base["time_ms"] = None, "Offline has no TTFT: prefill is not timed on its own (see overall)"
    elif time_ms is None:
        base["time_ms"] = "LoadGen reported no TTFT"
    elif w.scenario == "Server":
        note = "a lower bound: TTFT includes queueing and other requests' decode steps"
    else:
        note = "one query at a time: TTFT is this prompt's prefill plus the first-token path"
    achieved = flops / (time_ms / 1000.0) / 1e12 if flops is not None and time_ms else None
    values = {"flops_per_sample": flops, "time_ms": time_ms, "time_source": "LoadGen mean TTFT" if time_ms else None,
              "achieved_tflops": achieved, "mfu": _ratio(achieved, peaks.tflops), "note": note,
              "peak_tflops": peaks.tflops}
    out = _with_reasons(values, base, {"achieved_tflops": ["flops_per_sample", "time_ms"],
                                       "mfu": ["achieved_tflops", "peak_tflops"]})
    del out["peak_tflops"]
    out["null_reasons"].pop("peak_tflops", None)
    return out


def overall_estimate(model: ModelShape, w: Workload, peaks: Peaks) -> dict[str, Any]:
    """Model FLOPs of every token the model processed, x samples/s: the prompt's tokens once,
    then output - 1 decode tokens (the last output token is never fed back), each attending to
    its context (prompt + half the output, on average)."""
    base = _flops_reasons(w, peaks, output_needed=True)
    flops = None
    if w.input_tokens is not None and w.output_tokens is not None:
        pre = prefill_flops(model, w.input_tokens, w.input_tokens_mean_square)
        attn = model.attention_flops_per_token(w.input_tokens + w.output_tokens / 2)
        if pre is not None and attn is not None:
            flops = pre + max(0.0, w.output_tokens - 1) * (2 * model.matmul_parameters + attn)
    if w.samples_per_second is None:
        base["samples_per_second"] = "LoadGen reported no samples/s"
    achieved = flops * w.samples_per_second / 1e12 if flops is not None and w.samples_per_second else None
    values = {"flops_per_sample": flops, "samples_per_second": w.samples_per_second, "achieved_tflops": achieved,
              "mfu": _ratio(achieved, peaks.tflops), "peak_tflops": peaks.tflops}
    out = _with_reasons(values, base, {"achieved_tflops": ["flops_per_sample", "samples_per_second"],
                                       "mfu": ["achieved_tflops", "peak_tflops"]})
    del out["peak_tflops"], out["samples_per_second"]
    out["null_reasons"] = {k: v for k, v in out["null_reasons"].items() if k in out}
    return out


def estimate(model: ModelShape, workload: Workload, peaks: Peaks) -> Roofline:
    decode = decode_estimate(model, workload, peaks)
    prefill = prefill_estimate(model, workload, peaks)
    overall = overall_estimate(model, workload, peaks)
    # A fraction above 1 is impossible: the peak is under-measured or an assumption fails. Say so.
    warnings = tuple(
        f"{name} {value:.2f} > 1: the peak is too low ({source or 'unknown source'}; a measured probe on a busy "
        f"machine?) or an assumption of {METHOD} does not hold"
        for name, value, source in (("decode.bandwidth_utilization", decode["bandwidth_utilization"],
                                     peaks.bandwidth_source),
                                    ("prefill.mfu", prefill["mfu"], peaks.flops_source),
                                    ("overall.mfu", overall["mfu"], peaks.flops_source))
        if value is not None and value > 1)
    for text in warnings:
        log.warning("roofline: %s", text)
    return Roofline(model, peaks, workload, decode, prefill, overall, warnings=warnings)


# --- one run: where the model, its machine and the workload come from ----------------------------------

def _offline_batch(sut: SUTInfo, issued: int | None) -> tuple[int | None, str | None]:
    """Sequences the SUT decodes together in Offline, as it describes itself (sut=hf: its batch;
    sut=openai: requests in flight, which the server batches), at most the samples issued."""
    if sut.decode_batch is None:
        return None, None
    batch = min(sut.decode_batch, issued) if issued else sut.decode_batch
    return batch, (f"Offline: sut.{sut.decode_batch_key} = {sut.decode_batch} sequences decoded together, "
                   f"at most the {issued} issued")


def where_it_ran(sut: SUTInfo) -> tuple[str, list[str], int]:
    """(``gpu`` | ``cpu`` | ``remote``, device names, device count) for the machine that ran the model."""
    from harness import environment

    if sut.device is not None and sut.device.startswith("cpu"):  # an in-process model (sut=hf)
        return "cpu", [], 1
    if sut.device is None and sut.remote:
        return "remote", [], 1
    local_gpus = [d.get("name", "") for d in environment.gpus().get("devices", [])]
    if sut.device is not None:  # sut=hf on a GPU: that one device
        return "gpu", [sut.device_name] if sut.device_name else local_gpus[:1], 1
    # A server on this machine: all its GPUs (one replica, tensor parallel), else its CPU.
    return ("gpu", local_gpus, len(local_gpus)) if local_gpus else ("cpu", [], 1)


def for_run(config: HarnessConfig, detail: DetailLog | None, *, sut: SUTInfo | None,
            input_tokens: TokenCounts | None, output_tokens: float | None, issued: int | None) -> Roofline:
    """The roofline of one run, from its performance test's detail log and what the test process
    reported: the SUT's own description (:meth:`harness.sut.base.SUT.describe`) and token counts."""
    if detail is None:
        return not_estimated("no performance test ran (mode=accuracy), so there are no timings")
    if sut is None:
        return not_estimated(f"sut={config.sut.name} did not describe itself (the test process ended early)")
    if not sut.runs_model:
        return not_estimated(f"sut={config.sut.name} is a fake SUT: no model runs, so there is no roofline")
    batch, batch_source = _offline_batch(sut, issued)
    workload = workload_from_detail(detail, input_tokens=input_tokens, output_tokens=output_tokens,
                                    offline_batch=batch, offline_batch_source=batch_source)
    if sut.model is not None and sut.model.parameters and sut.model.weight_bytes:
        model = shape_from_model_info(sut.model.to_json())
    elif config.benchmark.model is not None:
        model = shape_from_config(config.benchmark.model)
    else:
        return not_estimated(f"sut={config.sut.name} reports no model and benchmark {config.benchmark.name} has no "
                             "benchmark.model block (parameters, layers, kv_heads, head_dim, dtype)", workload)
    where, names, count = where_it_ran(sut)
    peaks = resolve_peaks(config.system, where=where, device_names=names, dtype=model.dtype, default_count=count)
    return estimate(model, workload, peaks)
