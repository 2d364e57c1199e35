"""Peaks: the accelerator table matched by device names, system-config overrides, and the CPU probe."""

from __future__ import annotations

import dataclasses
import time

import pytest

from harness import hardware
from harness.config import SystemConfig


@pytest.mark.parametrize(("device", "row"), [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM 80GB"),  # nvidia-smi's name for the SXM5 part
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe 80GB"),
    ("NVIDIA H100 NVL", "NVIDIA H100 NVL 94GB"),
    ("NVIDIA H200", "NVIDIA H200 SXM 141GB"),
    ("NVIDIA H200 NVL", "NVIDIA H200 NVL 141GB"),
    ("NVIDIA GH200 480GB", "NVIDIA GH200 96GB"),  # not an H200
    ("NVIDIA B200", "NVIDIA B200 180GB"),
    ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 SXM 40GB"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM 80GB"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80GB"),
    ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 PCIe 40GB"),
    ("NVIDIA L40S", "NVIDIA L40S"),
    ("NVIDIA L4", "NVIDIA L4"),
    ("AMD Instinct MI300X", "AMD Instinct MI300X"),
    ("h100-sxm5-80gb", "NVIDIA H100 SXM 80GB"),  # a system config's spelling
])
def test_device_names_match_their_datasheet_row(device, row):
    assert hardware.match_accelerator(device).name == row


@pytest.mark.parametrize("device", ["Tesla T4", "NVIDIA L40", "", None, "NVIDIA GeForce RTX 4090"])
def test_unknown_devices_match_nothing(device):
    assert hardware.match_accelerator(device) is None


def test_table_figures_are_dense_and_plausible():
    for row in hardware.ACCELERATORS:
        assert 200 <= row.memory_bandwidth_gbs <= 10_000, row.name
        assert row.tflops["bf16"] >= row.tflops["fp32"], row.name
        if "fp8" in row.tflops:
            assert row.tflops["fp8"] == pytest.approx(2 * row.tflops["bf16"], rel=0.02), row.name
    h100 = hardware.match_accelerator("NVIDIA H100 80GB HBM3")
    assert (h100.memory_bandwidth_gbs, h100.tflops["bf16"]) == (3350, 989.4)  # not the 1,979 "with sparsity"


def test_gpu_peaks_come_from_the_table_at_the_models_precision():
    peaks = hardware.resolve_peaks(SystemConfig(), where="gpu", device_names=["NVIDIA H200"], dtype="bfloat16")
    assert (peaks.memory_bandwidth_gbs, peaks.tflops, peaks.precision) == (4800, 989.4, "bf16")
    assert peaks.bandwidth_source.startswith("datasheet: NVIDIA H200") and peaks.null_reasons == {}
    fp32 = hardware.resolve_peaks(SystemConfig(), where="gpu", device_names=["NVIDIA H200"], dtype="float32")
    assert fp32.tflops == 67  # PyTorch float32 matmuls run without TF32 by default
    fp8_on_a100 = hardware.resolve_peaks(SystemConfig(), where="gpu", device_names=["NVIDIA A100-SXM4-80GB"],
                                         dtype="fp8")
    assert fp8_on_a100.memory_bandwidth_gbs == 2039 and fp8_on_a100.tflops is None
    assert "system.peak_tflops" in fp8_on_a100.null_reasons["tflops"]


def test_system_config_overrides_win_and_devices_add_up():
    system = SystemConfig(accelerator_model_name="NVIDIA H100-SXM-80GB", accelerators_per_node=8,
                          peak_memory_bandwidth_gbs=3000.0)
    peaks = hardware.resolve_peaks(system, where="remote", device_names=[], dtype="bfloat16")
    assert peaks.accelerators == 8 and peaks.memory_bandwidth_gbs == 8 * 3000.0
    assert peaks.bandwidth_source == "system.peak_memory_bandwidth_gbs"
    assert peaks.tflops == pytest.approx(8 * 989.4) and peaks.flops_source.startswith("datasheet")
    two_nodes = dataclasses.replace(system, number_of_nodes=2, peak_tflops=500.0)
    peaks = hardware.resolve_peaks(two_nodes, where="remote", device_names=[], dtype="bfloat16")
    assert peaks.accelerators == 16 and peaks.tflops == 16 * 500.0 and peaks.flops_source == "system.peak_tflops"
    # The system config names the GPU when environment.json cannot (a remote server).
    named = hardware.resolve_peaks(SystemConfig(accelerator_model_name="AMD Instinct MI300X"), where="remote",
                                   device_names=[], dtype="bfloat16", default_count=1)
    assert named.memory_bandwidth_gbs == 5300


def test_unknown_machines_are_null_with_the_fix_in_the_reason():
    remote = hardware.resolve_peaks(SystemConfig(), where="remote", device_names=[], dtype="bfloat16")
    assert remote.memory_bandwidth_gbs is None and remote.tflops is None
    assert "another machine" in remote.null_reasons["memory_bandwidth_gbs"]
    t4 = hardware.resolve_peaks(SystemConfig(), where="gpu", device_names=["Tesla T4"], dtype="float16")
    assert "'Tesla T4' is not in the table" in t4.null_reasons["tflops"]
    assert "system.peak_memory_bandwidth_gbs" in t4.null_reasons["memory_bandwidth_gbs"]


def test_the_cpu_probe_measures_plausible_peaks_quickly_and_once_per_process():
    start = time.perf_counter()
    probe = hardware.probe_cpu()
    assert probe.seconds < 10 and time.perf_counter() - start < 15  # ~1 s on an idle 2-core VM
    assert 0.5 < probe.memory_bandwidth_gbs < 5000  # DRAM copy: from a laptop to a many-channel server
    assert 1e-3 < probe.tflops < 100  # float32 matmul on CPU cores
    assert probe.bandwidth_method.startswith("measured probe") and "MiB" in probe.bandwidth_method
    assert hardware.probe_cpu() is probe  # cached: a round of runs probes once
    assert 64 <= hardware.probe_buffer_mib() <= 256

    peaks = hardware.resolve_peaks(SystemConfig(accelerator_model_name="NVIDIA H100 80GB HBM3"), where="cpu",
                                   device_names=[], dtype="float32")
    # A model run on the CPU is judged against this CPU, whatever accelerator the system config names.
    assert peaks.accelerator == "cpu" and peaks.memory_bandwidth_gbs == probe.memory_bandwidth_gbs
    assert peaks.tflops == probe.tflops and peaks.flops_source.startswith("measured probe")
    overridden = hardware.resolve_peaks(SystemConfig(peak_memory_bandwidth_gbs=100.0), where="cpu",
                                        device_names=[], dtype="float32")
    assert overridden.memory_bandwidth_gbs == 100.0 and overridden.tflops == probe.tflops


def test_one_dtype_table_gives_the_roofline_its_bytes_and_the_peaks_their_precision():
    from harness import roofline
    from harness.hardware import DTYPES, dtype_bytes, precision_of

    assert roofline.dtype_bytes is dtype_bytes  # no second table
    for alias in ("torch.bfloat16", "BF16", "bfloat16"):
        assert (dtype_bytes(alias), precision_of(alias)) == (2.0, "bf16")
    assert (dtype_bytes("half"), precision_of("half")) == (2.0, "fp16")
    assert (dtype_bytes("float8_e4m3fn"), precision_of("fp8")) == (1.0, "fp8")
    assert (dtype_bytes("int8"), precision_of("int8")) == (1.0, "fp8")  # int8 TOPS = the FP8 column
    assert (dtype_bytes("int4"), precision_of("int4")) == (0.5, None)  # a size, but no peak column
    assert (dtype_bytes("nf3"), precision_of(None)) == (None, None)
    assert all(precision_of(name) == d.precision and dtype_bytes(name) == d.bytes for name, d in DTYPES.items())
