"""Peak memory bandwidth and FLOP/s of the machine a model ran on, for the roofline estimates.

Three sources, in this order (``resolve_peaks``), and the result always says which one it used:

1. ``system.peak_memory_bandwidth_gbs`` / ``system.peak_tflops``: explicit figures per accelerator;
2. a table of known accelerators (datasheet figures, dense, per precision), matched by
   ``system.accelerator_model_name`` or by the GPU name the run saw (NVML / nvidia-smi /
   ``torch.cuda.get_device_name``);
3. on CPU, a short measured probe: a multi-threaded copy of a buffer larger than the last-level
   cache, and a float32 matmul (numpy), best of a few repetitions (``probe_cpu``).

Units: GB/s and TFLOP/s are decimal (10^9 bytes/s, 10^12 FLOP/s), as the datasheets use them.
The method and its assumptions are in docs/ROOFLINE.md.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import SystemConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accelerator:
    """One row of the table: per-device datasheet peaks.

    ``tflops`` holds *dense* tensor-core figures (NVIDIA and AMD print sparse ones with an
    asterisk: those are 2x and never reached by LLM inference) per precision; ``fp32`` is the
    plain FP32 rate, which is what PyTorch's float32 matmuls get by default (TF32 is off for
    matmuls unless ``torch.backends.cuda.matmul.allow_tf32`` is set).
    """

    name: str
    memory_gb: float
    memory_bandwidth_gbs: float
    tflops: Mapping[str, float]
    tokens: tuple[str, ...]  # all must appear in the normalised device name (see ``match_accelerator``)
    source: str
    memory_type: str = ""  # the memory technology: MLPerf's accelerator_memory_configuration


# Order matters: the first row whose tokens all appear wins, so variants (NVL, PCIe, 80GB) come
# before the plain name they extend.
ACCELERATORS: tuple[Accelerator, ...] = (
    Accelerator("NVIDIA H100 NVL 94GB", 94, 3900, {"bf16": 835.5, "fp16": 835.5, "fp8": 1670.5, "fp32": 60},
                ("h100", "nvl"), "NVIDIA H100 datasheet (sparse figures / 2)", "HBM3"),
    Accelerator("NVIDIA H100 PCIe 80GB", 80, 2000, {"bf16": 756.5, "fp16": 756.5, "fp8": 1513, "fp32": 51},
                ("h100", "pcie"), "NVIDIA H100 datasheet (sparse figures / 2)", "HBM2e"),
    # nvidia-smi calls the SXM5 part "NVIDIA H100 80GB HBM3".
    Accelerator("NVIDIA H100 SXM 80GB", 80, 3350, {"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "fp32": 67},
                ("h100",), "NVIDIA H100 datasheet (sparse figures / 2)", "HBM3"),
    Accelerator("NVIDIA H200 NVL 141GB", 141, 4800, {"bf16": 835.5, "fp16": 835.5, "fp8": 1670.5, "fp32": 60},
                ("h200", "nvl"), "NVIDIA H200 datasheet (sparse figures / 2)", "HBM3e"),
    Accelerator("NVIDIA H200 SXM 141GB", 141, 4800, {"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "fp32": 67},
                ("h200",), "NVIDIA H200 datasheet (sparse figures / 2)", "HBM3e"),
    # GH200's Hopper GPU: 96 GB HBM3 at 4 TB/s (the 144 GB HBM3e version: 4.9 TB/s).
    Accelerator("NVIDIA GH200 144GB HBM3e", 144, 4900, {"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "fp32": 67},
                ("gh200", "144g"), "NVIDIA GH200 datasheet (sparse figures / 2)", "HBM3e"),
    Accelerator("NVIDIA GH200 96GB", 96, 4000, {"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "fp32": 67},
                ("gh200",), "NVIDIA GH200 datasheet (sparse figures / 2)", "HBM3"),
    Accelerator("NVIDIA B200 180GB", 180, 8000, {"bf16": 2250, "fp16": 2250, "fp8": 4500, "fp32": 75},
                ("b200",), "NVIDIA HGX B200 datasheet, per GPU (sparse figures / 2)", "HBM3e"),
    # A100 names: "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100 80GB PCIe",
    # "NVIDIA A100-PCIE-40GB". No FP8 on Ampere.
    Accelerator("NVIDIA A100 PCIe 80GB", 80, 1935, {"bf16": 312, "fp16": 312, "fp32": 19.5},
                ("a100", "pcie", "80gb"), "NVIDIA A100 datasheet (dense)", "HBM2e"),
    Accelerator("NVIDIA A100 PCIe 40GB", 40, 1555, {"bf16": 312, "fp16": 312, "fp32": 19.5},
                ("a100", "pcie"), "NVIDIA A100 datasheet (dense)", "HBM2"),
    Accelerator("NVIDIA A100 SXM 80GB", 80, 2039, {"bf16": 312, "fp16": 312, "fp32": 19.5},
                ("a100", "80gb"), "NVIDIA A100 datasheet (dense)", "HBM2e"),
    Accelerator("NVIDIA A100 SXM 40GB", 40, 1555, {"bf16": 312, "fp16": 312, "fp32": 19.5},
                ("a100",), "NVIDIA A100 datasheet (dense)", "HBM2"),
    Accelerator("NVIDIA L40S", 48, 864, {"bf16": 362.05, "fp16": 362.05, "fp8": 733, "fp32": 91.6},
                ("l40s",), "NVIDIA L40S datasheet (sparse figures / 2)", "GDDR6"),
    Accelerator("NVIDIA L4", 24, 300, {"bf16": 121, "fp16": 121, "fp8": 242.5, "fp32": 30.3},
                ("l4",), "NVIDIA L4 datasheet (sparse figures / 2)", "GDDR6"),
    Accelerator("AMD Instinct MI325X", 256, 6000, {"bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9, "fp32": 163.4},
                ("mi325x",), "AMD Instinct MI325X datasheet (dense)", "HBM3E"),
    Accelerator("AMD Instinct MI300X", 192, 5300, {"bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9, "fp32": 163.4},
                ("mi300x",), "AMD Instinct MI300X datasheet (dense)", "HBM3"),
)


def _tokens(name: str) -> set[str]:
    return set(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


def match_accelerator(name: str | None) -> Accelerator | None:
    """The table row for a device name as NVML, nvidia-smi or a system config spells it."""
    if not name:
        return None
    found = _tokens(name)
    return next((a for a in ACCELERATORS if set(a.tokens) <= found), None)


@dataclass(frozen=True)
class DType:
    """What the estimates need of a dtype: bytes per element (weights, KV cache) and the precision
    column of the accelerator table its matmuls run at (None: the table has no column for it)."""

    bytes: float
    precision: str | None


# The one dtype table: torch's names and the benchmark config's aliases, for roofline.dtype_bytes
# and precision_of. int8 tensor-core TOPS equal the FP8 figures on Hopper/Ada/CDNA3.
DTYPES: dict[str, DType] = {
    "float32": DType(4.0, "fp32"), "fp32": DType(4.0, "fp32"),
    "bfloat16": DType(2.0, "bf16"), "bf16": DType(2.0, "bf16"),
    "float16": DType(2.0, "fp16"), "fp16": DType(2.0, "fp16"), "half": DType(2.0, "fp16"),
    "float8_e4m3fn": DType(1.0, "fp8"), "float8_e5m2": DType(1.0, "fp8"), "fp8": DType(1.0, "fp8"),
    "int8": DType(1.0, "fp8"), "int4": DType(0.5, None), "fp4": DType(0.5, None),
}


def dtype_of(name: str | None) -> DType | None:
    """``name`` as torch (``torch.bfloat16``, ``bfloat16``) or a config (``bf16``, ``FP8``) writes it."""
    return DTYPES.get((name or "").lower().removeprefix("torch."))


def dtype_bytes(name: str | None) -> float | None:
    """Bytes per element; None for a dtype the table does not know."""
    found = dtype_of(name)
    return found.bytes if found else None


def precision_of(name: str | None) -> str | None:
    """The accelerator table's precision column (fp32, bf16, fp16, fp8) for a model dtype."""
    found = dtype_of(name)
    return found.precision if found else None


@dataclass(frozen=True)
class CPUProbe:
    """A measured CPU peak: what the probe did and what it got."""

    memory_bandwidth_gbs: float
    tflops: float
    bandwidth_method: str
    flops_method: str
    seconds: float  # wall time of the whole probe


def last_level_cache_bytes() -> int | None:
    """The L3 (else L2) cache size Linux reports for CPU 0, e.g. ``32768K``; None elsewhere."""
    for index in (3, 2):
        try:
            text = Path(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size").read_text().strip()
            units = {"K": 2**10, "M": 2**20, "G": 2**30}
            return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        except (OSError, ValueError, IndexError):
            continue
    return None


def probe_buffer_mib() -> int:
    """4x the last-level cache, so the copy streams from DRAM: at least 64 MiB, at most 256 MiB
    (page-faulting a larger buffer in costs more time than the probe is worth)."""
    llc = last_level_cache_bytes() or 64 * 2**20
    return int(min(256, max(64, 4 * llc // 2**20)))


def _best_time(work: Callable[[], object], budget_s: float, min_runs: int = 3, max_runs: int = 20) -> float:
    """The fastest of repeated runs of ``work``: at least ``min_runs``, more while ``budget_s``
    lasts. On a shared machine the best run is the one least disturbed by other processes."""
    best, spent, runs = float("inf"), 0.0, 0
    while runs < min_runs or (spent < budget_s and runs < max_runs):
        t0 = time.perf_counter()
        work()
        took = time.perf_counter() - t0
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


@functools.cache
def probe_cpu(budget_s: float = 0.25) -> CPUProbe:
    """Measure this machine's memory bandwidth and float32 matmul rate (~1 s; cached per process).

    Bandwidth: ``os.cpu_count()`` threads each copy a slice of a float64 buffer of
    ``probe_buffer_mib()`` MiB (numpy releases the GIL in ``copyto``); bytes moved count a read
    and a write per byte (the STREAM "copy" convention; write-allocate traffic is not counted).
    FLOP/s: float32 ``n x n`` matmuls (2n^3 FLOPs) on numpy's multi-threaded BLAS, n doubled from
    1024 (at most 4096) while one takes under 25 ms, so a large machine is not measured with a
    matrix too small to keep its cores busy. Each is the best of at least 3 runs, more within
    ``budget_s``, after one untimed run (page faults, BLAS thread start-up).
    """
    import numpy as np

    start = time.perf_counter()
    buffer_mib = probe_buffer_mib()
    threads = os.cpu_count() or 1
    n = buffer_mib * 2**20 // 8
    src = np.ones(n)
    dst = np.empty_like(src)
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def copy(part: tuple[int, int]) -> None:
        np.copyto(dst[part[0]:part[1]], src[part[0]:part[1]])

    with ThreadPoolExecutor(threads) as pool:
        def copy_all() -> None:
            list(pool.map(copy, bounds))

        copy_all()
        bandwidth = 2 * src.nbytes / _best_time(copy_all, budget_s) / 1e9

    def matmul(size: int) -> Callable[[], object]:
        a = np.random.default_rng(0).random((size, size), dtype=np.float32)
        return lambda: a @ a

    size = 1024
    work = matmul(size)
    work()
    while size < 4096 and _best_time(work, 0.0, min_runs=1) < 0.025:
        size *= 2
        work = matmul(size)
    tflops = 2 * size**3 / _best_time(work, budget_s) / 1e12
    seconds = time.perf_counter() - start
    log.info("CPU probe: %.1f GB/s copy, %.3f TFLOP/s float32 matmul (%.2f s)", bandwidth, tflops, seconds)
    return CPUProbe(bandwidth, tflops,
                    f"measured probe: {threads}-thread copy of {buffer_mib} MiB (read + write counted), best of "
                    f"runs within {budget_s:g} s",
                    f"measured probe: float32 {size}x{size} matmul (numpy BLAS, {threads} cores), best of runs "
                    f"within {budget_s:g} s",
                    seconds)


@dataclass(frozen=True)
class Peaks:
    """The peaks a run is judged against: totals over ``accelerators`` devices.

    A figure that cannot be known is None and ``null_reasons`` says why.
    """

    memory_bandwidth_gbs: float | None
    tflops: float | None  # dense, at ``precision``
    precision: str | None
    accelerator: str | None  # the device the figures are for ("cpu" for the probe)
    accelerators: int
    accelerators_source: str
    bandwidth_source: str | None
    flops_source: str | None
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator, "accelerators": self.accelerators,
                "accelerators_source": self.accelerators_source,
                "memory_bandwidth_gbs": self.memory_bandwidth_gbs, "bandwidth_source": self.bandwidth_source,
                "tflops": self.tflops, "precision": self.precision, "flops_source": self.flops_source,
                "null_reasons": dict(self.null_reasons)}


def resolve_peaks(system: SystemConfig, *, where: str, device_names: Sequence[str], dtype: str | None,
                  default_count: int = 1) -> Peaks:
    """The peaks of the machine that ran the model.

    ``where`` is ``gpu`` (local GPUs named ``device_names``), ``cpu`` (this machine's CPU: the
    probe) or ``remote`` (another machine: only the system config can say). Explicit
    ``system.peak_*`` figures win, then the table (by ``system.accelerator_model_name``, else the
    device name), then, on CPU only, the probe. Per-device figures are multiplied by the device
    count: ``system.accelerators_per_node x system.number_of_nodes`` when set, else
    ``default_count`` (one replica, tensor parallel over all devices, so bandwidth and FLOP/s add
    up). On CPU the figures are the whole machine's and the count is 1.
    """
    precision = precision_of(dtype)
    if where == "cpu":
        count, count_source = 1, "this machine's CPU (all cores)"
    elif system.accelerators_per_node:
        count = system.accelerators_per_node * system.number_of_nodes
        count_source = "system.accelerators_per_node x system.number_of_nodes"
    else:
        count, count_source = default_count, "devices the SUT used"
    bw: float | None = system.peak_memory_bandwidth_gbs
    tf: float | None = system.peak_tflops
    bw_source = "system.peak_memory_bandwidth_gbs" if bw is not None else None
    flops_source = "system.peak_tflops" if tf is not None else None
    # A CPU run is judged against this CPU even when the system config names an accelerator.
    name = "cpu" if where == "cpu" else system.accelerator_model_name or (device_names[0] if device_names else None)
    reasons: dict[str, str] = {}
    if bw is None or tf is None:
        row = match_accelerator(name) if where != "cpu" else None
        if row is not None:
            name = row.name
            if bw is None:
                bw, bw_source = row.memory_bandwidth_gbs, f"datasheet: {row.name} ({row.source})"
            if tf is None and precision in row.tflops:
                tf, flops_source = row.tflops[precision], f"datasheet: {row.name}, dense {precision} ({row.source})"
            elif tf is None:
                reasons["tflops"] = (f"no datasheet figure for dtype {dtype or 'unknown'} on {row.name}; "
                                     "set system.peak_tflops")
        elif where == "cpu":
            measured = probe_cpu()
            if bw is None:
                bw, bw_source = measured.memory_bandwidth_gbs, measured.bandwidth_method
            if tf is None:
                tf, flops_source, precision = measured.tflops, measured.flops_method, "fp32"
        else:
            why = (f"accelerator {name!r} is not in the table of harness/hardware.py" if name
                   else "the model ran on another machine and the system config names no accelerator"
                   if where == "remote" else "no accelerator name known")
            fix = "set system.accelerator_model_name, or system.peak_memory_bandwidth_gbs and system.peak_tflops"
            for key, value in (("memory_bandwidth_gbs", bw), ("tflops", tf)):
                if value is None:
                    reasons[key] = f"{why}; {fix}"
    return Peaks(memory_bandwidth_gbs=None if bw is None else bw * count, tflops=None if tf is None else tf * count,
                 precision=precision, accelerator=name, accelerators=count, accelerators_source=count_source,
                 bandwidth_source=bw_source, flops_source=flops_source, null_reasons=reasons)
