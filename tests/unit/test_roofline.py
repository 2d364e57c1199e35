"""Roofline formulas: the worked example of docs/ROOFLINE.md, each scenario's method, MoE, and nulls with reasons."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness import roofline
from harness.config import SystemConfig, compose
from harness.hardware import resolve_peaks
from harness.loadgen.logs import DetailLog
from harness.results import roofline_line
from harness.sut import SUTContext, SUTInfo, build_sut
from harness.sut.tokenizer import WordTokenizer

H100 = "NVIDIA H100 80GB HBM3"  # how nvidia-smi names the SXM part


def llama8b() -> roofline.ModelShape:
    return roofline.shape_from_config(compose(["benchmark=llama3_1-8b"]).benchmark.model)


def h100(dtype: str = "bfloat16") -> roofline.Peaks:
    return resolve_peaks(SystemConfig(), where="gpu", device_names=[H100], dtype=dtype)


def server_workload(**changes) -> roofline.Workload:
    """docs/ROOFLINE.md: 10 completed samples/s, 800-token prompts, 128 output tokens, mean TTFT
    150 ms, mean TPOT 15 ms, so mean latency 150 + 127 x 15 = 2055 ms."""
    fields = dict(scenario="Server", samples_per_second=10.0, tokens_per_second=1280.0, mean_latency_ms=2055.0,
                  mean_ttft_ms=150.0, mean_tpot_ms=15.0, input_tokens=800.0, input_tokens_mean_square=None,
                  output_tokens=128.0)
    return roofline.Workload(**{**fields, **changes})


def worked_example() -> roofline.Roofline:
    """Llama 3.1 8B in bfloat16 on one H100 SXM, Server (docs/ROOFLINE.md, "Worked example")."""
    return roofline.estimate(llama8b(), server_workload(), h100())


def test_the_worked_example_of_the_docs():
    model = llama8b()
    assert model.weight_bytes == 16_060_522_496  # 8,030,261,248 parameters x 2 bytes
    assert model.kv_bytes_per_token == 131_072  # 2 x 32 layers x 8 KV heads x 128 x 2 bytes
    assert model.input_embedding_parameters == 525_336_576  # 128,256 x 4,096, untied: a lookup

    r = worked_example().to_json()
    d = r["decode"]
    assert d["concurrency"] == pytest.approx(19.05)  # 10/s x (2.055 - 0.150) s
    assert d["context_tokens"] == 864  # 800 + 128 / 2
    assert d["weight_bytes_per_step"] == 15_009_849_344  # (8,030,261,248 - 525,336,576) x 2
    assert d["kv_bytes_per_step"] == pytest.approx(2_157_340_262.4)  # 19.05 x 864 x 131,072
    assert d["bytes_per_step"] == pytest.approx(17_167_189_606.4)
    assert d["achieved_bandwidth_gbs"] == pytest.approx(1144.479, abs=1e-3)  # / 15 ms
    assert d["bandwidth_utilization"] == pytest.approx(0.3416, abs=1e-4)  # / 3,350 GB/s
    assert d["min_step_time_ms"] == pytest.approx(5.1245, abs=1e-4)
    assert d["arithmetic_intensity"] == pytest.approx(17.16, abs=0.01) and d["ridge_point"] == pytest.approx(295.34,
                                                                                                             abs=0.01)
    assert d["bound"] == "memory" and d["null_reasons"] == {}

    p = r["prefill"]
    # 2 x (7.505e9 - 5.253e8 LM head) x 800 + 2 x 5.253e8 (last position's logits) + 4x32x32x128 x 800^2/2
    assert p["flops_per_sample"] == pytest.approx(11_336_163_786_752)
    assert p["achieved_tflops"] == pytest.approx(75.574, abs=1e-3)  # / 150 ms
    assert p["mfu"] == pytest.approx(0.0764, abs=1e-4) and "lower bound" in p["note"]  # / 989.4 TFLOP/s

    o = r["overall"]
    assert o["flops_per_sample"] == pytest.approx(13_299_943_727_104)  # + 127 decode tokens at context 864
    assert o["achieved_tflops"] == pytest.approx(132.999, abs=1e-3) and o["mfu"] == pytest.approx(0.1344, abs=1e-4)
    assert r["peaks"]["accelerator"] == "NVIDIA H100 SXM 80GB" and r["peaks"]["bandwidth_source"].startswith(
        "datasheet")
    json.dumps(r)  # results.json holds it as it is


def test_single_stream_decodes_one_sequence_and_times_prefill_by_ttft():
    r = roofline.estimate(llama8b(), server_workload(scenario="SingleStream", samples_per_second=0.5), h100())
    d = r.decode
    assert d["concurrency"] == 1 and d["concurrency_source"].startswith("SingleStream")
    assert d["bytes_per_step"] == pytest.approx(15_009_849_344 + 864 * 131_072)
    assert r.prefill["note"].startswith("one query at a time")


def test_server_below_one_sequence_in_flight_still_reads_the_weights_once_per_step():
    r = roofline.estimate(llama8b(), server_workload(samples_per_second=0.2), h100())
    assert r.decode["concurrency"] == 1.0  # Little's law gives 0.381: the decoder idles in between
    assert "0.381" in r.decode["concurrency_source"]


def test_offline_step_time_comes_from_the_batch_and_tokens_per_second():
    w = server_workload(scenario="Offline", mean_ttft_ms=None, mean_tpot_ms=None, tokens_per_second=3200.0,
                        offline_batch=32, offline_batch_source="Offline: sut.max_batch_size = 32")
    r = roofline.estimate(llama8b(), w, h100())
    assert r.decode["step_time_ms"] == pytest.approx(10.0)  # 32 sequences / 3,200 tokens/s
    assert r.decode["concurrency"] == 32 and "upper bound" in r.decode["step_time_source"]
    assert r.prefill["achieved_tflops"] is None and "Offline has no TTFT" in r.prefill["null_reasons"]["mfu"]
    assert r.overall["mfu"] > 0


def test_offline_without_a_known_batch_is_null_with_the_reason():
    w = server_workload(scenario="Offline", mean_ttft_ms=None, mean_tpot_ms=None)
    d = roofline.estimate(llama8b(), w, h100()).decode
    assert d["achieved_bandwidth_gbs"] is None and d["bandwidth_utilization"] is None
    assert "decode batch is unknown" in d["null_reasons"]["bandwidth_utilization"]
    assert "decode batch is unknown" in d["null_reasons"]["step_time_ms"]


def test_unknown_peaks_leave_achieved_figures_and_explain_the_missing_fractions():
    peaks = resolve_peaks(SystemConfig(), where="remote", device_names=[], dtype="bfloat16")
    r = roofline.estimate(llama8b(), server_workload(), peaks)
    assert r.decode["achieved_bandwidth_gbs"] == pytest.approx(1144.479, abs=1e-3)
    assert r.decode["bandwidth_utilization"] is None and r.prefill["mfu"] is None and r.overall["mfu"] is None
    assert "another machine" in r.decode["null_reasons"]["bandwidth_utilization"]
    assert "system.accelerator_model_name" in r.overall["null_reasons"]["mfu"]


def test_missing_token_latencies_and_prompt_counts_are_null_with_reasons():
    w = server_workload(mean_tpot_ms=None, input_tokens=None)
    r = roofline.estimate(llama8b(), w, h100())
    assert r.decode["bytes_per_step"] is None
    assert r.decode["null_reasons"]["step_time_ms"].startswith("LoadGen reported no TPOT")
    assert r.decode["null_reasons"]["kv_bytes_per_step"] == "prompt or output token counts unknown"
    assert r.decode["null_reasons"]["achieved_bandwidth_gbs"] == "prompt or output token counts unknown"
    assert r.prefill["null_reasons"]["flops_per_sample"] == "prompt or output token counts unknown"


def test_mixtral_reads_only_the_experts_its_batch_routes_to():
    model = roofline.shape_from_config(compose(["benchmark=mixtral-8x7b"]).benchmark.model)
    assert model.active_parameters == 12_879_925_248  # 46.7e9 - 6 unused experts x 5.637e9
    assert model.experts_touched(1) == pytest.approx(2)
    assert model.experts_touched(2) == pytest.approx(8 * (1 - 0.75**2))  # 3.5
    assert model.experts_touched(64) == pytest.approx(8, abs=1e-6)
    embed = 32_000 * 4096
    assert model.decode_weight_bytes(1) == pytest.approx((12_879_925_248 - embed) * 2)
    assert model.decode_weight_bytes(64) == pytest.approx((46_702_792_704 - embed) * 2, rel=1e-6)


def test_the_loaded_models_config_json_gives_its_shape(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 64,
        "vocab_size": 100, "tie_word_embeddings": False}))
    info = {"path": str(tmp_path), "parameters": 50_000, "dtype": "float32", "weight_bytes": 200_000}
    model = roofline.shape_from_model_info(info)
    assert (model.layers, model.attention_heads, model.kv_heads, model.head_dim) == (2, 4, 2, 16)
    assert model.kv_bytes_per_token == 2 * 2 * 2 * 16 * 4 and model.input_embedding_parameters == 6400

    # GPT-J's names: n_layer, n_head, n_embd; multi-head attention (KV heads = heads).
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": 28, "n_head": 16, "n_embd": 4096,
                                                      "vocab_size": 50400}))
    gptj = roofline.shape_from_model_info({**info, "dtype": "bfloat16"})
    assert (gptj.layers, gptj.kv_heads, gptj.head_dim) == (28, 16, 256) and gptj.tied_embeddings

    # Mixtral-style experts: 3 x hidden x intermediate per expert per layer.
    (tmp_path / "config.json").write_text(json.dumps({
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096,
        "intermediate_size": 14336, "num_local_experts": 8, "num_experts_per_tok": 2}))
    moe = roofline.shape_from_model_info({**info, "parameters": 46_702_792_704, "weight_bytes": 2 * 46_702_792_704})
    assert moe.expert_parameters == 5_637_144_576 and moe.active_parameters == 12_879_925_248


def test_a_missing_config_json_leaves_the_kv_cache_unknown(tmp_path):
    model = roofline.shape_from_model_info({"path": str(tmp_path), "parameters": 10, "dtype": "float32",
                                            "weight_bytes": 40})
    assert model.kv_bytes_per_token is None
    r = roofline.estimate(model, server_workload(), h100("float32"))
    assert r.decode["bytes_per_step"] is None and "KV heads" in r.decode["null_reasons"]["kv_bytes_per_step"]


def test_prompt_tokens_are_counted_by_the_suts_tokenizer_on_at_most_a_spread_subset():
    prompts = [" ".join(["word"] * n) for n in range(1, 101)]
    tok = WordTokenizer(prompts)
    every = roofline.count_prompt_tokens(tok, prompts)
    assert every.counted == every.total == 100
    assert every.mean == pytest.approx(sum(len(tok.encode(p)) for p in prompts) / 100)
    some = roofline.count_prompt_tokens(tok, prompts, limit=10)
    assert some.counted == 10 and some.total == 100
    assert roofline.count_prompt_tokens(tok, []) is None


def _detail(**values) -> DetailLog:
    base = {"effective_scenario": "Server", "result_completed_samples_per_sec": 10.0,
            "result_completed_tokens_per_second": 1280.0, "result_mean_latency_ns": 2_055_000_000,
            "result_first_token_mean_latency_ns": 150_000_000, "result_time_to_output_token_mean": 15_000_000}
    return DetailLog({**base, **values}, (), ())


def test_loadgen_means_become_the_workload():
    counts = roofline.TokenCounts(800.0, 640_000.0, 32, 32, "test")
    w = roofline.workload_from_detail(_detail(), input_tokens=counts, output_tokens=128.0)
    assert (w.samples_per_second, w.mean_latency_ms, w.mean_ttft_ms, w.mean_tpot_ms) == (10.0, 2055.0, 150.0, 15.0)
    assert roofline.estimate(llama8b(), w, h100()).to_json()["decode"] == worked_example().to_json()["decode"]


def described(config) -> SUTInfo:
    """What the configured SUT says of itself (SUT.describe); a server is not asked anything."""
    sut_config = config.sut
    if sut_config.name == "openai":
        sut_config = dataclasses.replace(sut_config, params={**sut_config.params, "preflight": False, "model": "m"})
    sut = build_sut(sut_config, SUTContext(corpus=["a b"], max_new_tokens=8))
    try:
        return sut.describe()
    finally:
        sut.close()


def test_for_run_says_why_fake_suts_and_accuracy_runs_have_no_roofline():
    counts = roofline.TokenCounts(800.0, 640_000.0, 32, 32, "test")
    echo_config = compose(["sut=echo"])
    echo = roofline.for_run(echo_config, _detail(), sut=described(echo_config), input_tokens=counts,
                            output_tokens=128.0, issued=32)
    assert echo.model is None and "fake SUT" in echo.reason
    assert roofline_line(echo.to_json()) is None  # nothing to say in the summary
    accuracy = roofline.for_run(compose(["sut=hf"]), None, sut=None, input_tokens=None, output_tokens=None,
                                issued=None)
    assert "no performance test" in accuracy.reason


def test_for_run_of_a_remote_server_uses_the_benchmark_shape_and_the_system_config():
    counts = roofline.TokenCounts(800.0, 640_000.0, 32, 32, "test")
    remote = ["sut=openai", "sut.base_url=http://gpu-box.internal:8000/v1", "benchmark=llama3_1-8b"]
    unknown = roofline.for_run(compose(remote), _detail(), sut=described(compose(remote)), input_tokens=counts,
                               output_tokens=128.0, issued=32)
    assert unknown.model.source == "benchmark.model" and unknown.decode["bandwidth_utilization"] is None
    h100_config = compose([*remote, "system.accelerator_model_name=NVIDIA H100-SXM-80GB",
                           "system.accelerators_per_node=1"])
    on_h100 = roofline.for_run(h100_config, _detail(), sut=described(h100_config), input_tokens=counts,
                               output_tokens=128.0, issued=32)
    assert on_h100.decode == worked_example().decode
    line = roofline_line(on_h100.to_json())
    assert "decode 1,144 GB/s" in line and "34.2% of 3,350 GB/s" in line and "datasheet" in line

    no_shape_config = compose(["sut=openai", "sut.base_url=http://gpu-box:8000/v1"])
    no_shape = roofline.for_run(no_shape_config, _detail(), sut=described(no_shape_config), input_tokens=counts,
                                output_tokens=128.0, issued=32)
    assert "benchmark.model" in no_shape.reason and no_shape.workload is not None


def test_benchmark_models_fp8_weights_halve_the_bytes():
    fp8 = roofline.shape_from_config(compose(["benchmark=llama3_1-8b", "benchmark.model.dtype=fp8"]).benchmark.model)
    assert fp8.weight_bytes == 8_030_261_248 and fp8.kv_bytes_per_element == 1
    kv16 = compose(["benchmark=llama3_1-8b", "benchmark.model.dtype=fp8", "benchmark.model.kv_dtype=bfloat16"])
    assert roofline.shape_from_config(kv16.benchmark.model).kv_bytes_per_token == 131_072
    with pytest.raises(ValueError, match="bytes_per_param"):
        roofline.shape_from_config(compose(["benchmark=gptj", "benchmark.model.dtype=nf3"]).benchmark.model)


def test_a_fraction_above_one_is_kept_but_flagged():
    slow_probe = resolve_peaks(SystemConfig(peak_memory_bandwidth_gbs=500.0, peak_tflops=50.0), where="gpu",
                               device_names=[H100], dtype="bfloat16")
    r = roofline.estimate(llama8b(), server_workload(), slow_probe)
    assert r.decode["bandwidth_utilization"] == pytest.approx(1144.479 / 500, abs=1e-5)  # never clipped
    assert [w.split()[0] for w in r.warnings] == ["decode.bandwidth_utilization", "prefill.mfu", "overall.mfu"]
    assert "system.peak_memory_bandwidth_gbs" in r.warnings[0] and r.to_json()["warnings"] == list(r.warnings)
    assert worked_example().warnings == ()


def test_the_runs_roofline_flags_speculative_decoding_and_never_fails_the_run():
    from harness.loadgen.bridge import BridgeStats
    from harness.run import TestOutcome, run_roofline

    config = compose(["sut=openai", "sut.base_url=http://gpu-box:8000/v1", "benchmark=llama3_1-8b",
                      "system.accelerator_model_name=NVIDIA H200"])
    stats = BridgeStats(issued=32, completed=32, output_tokens=32 * 128)
    counts = roofline.TokenCounts(800.0, 640_000.0, 32, 32, "test")
    remote = described(config)
    plain = run_roofline(config, _detail(), TestOutcome(stats, sut=remote, prompt_tokens=counts))
    assert plain.decode["bytes_per_step"] == worked_example().decode["bytes_per_step"] and plain.warnings == ()
    drafted = run_roofline(config, _detail(), TestOutcome(stats, sut_stats={"mean_accepted_tokens": 2.5}, sut=remote,
                                                          prompt_tokens=counts))
    assert drafted.warnings and drafted.warnings[0].startswith("speculative decoding: 2.50 tokens per target step")
    broken = run_roofline(compose(["sut=openai", "benchmark=gptj", "benchmark.model.dtype=nf3"]), _detail(),
                          TestOutcome(stats, sut=remote, prompt_tokens=counts))
    assert broken.model is None and broken.reason.startswith("estimate failed: ValueError")
    assert "mode=accuracy" in run_roofline(config, None, None).reason
