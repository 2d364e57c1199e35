"""Environment capture for reproducibility: what ran where, and the command to run it again.

``capture()`` records the OS, Python, installed packages, torch and its CUDA build, CPU and
memory, GPUs (NVML, else ``nvidia-smi``; none is fine), the LoadGen version, the project's git
commit and the command line; ``write()`` stores it as ``environment.json`` in the run directory.
The hardware facts MLPerf's system description asks for (sockets, clocks, caches, memory modules,
disks, NICs, GPU clocks, PCIe and NVLink) are recorded where the machine tells them
(harness/machine.py for the host).
Nothing here imports torch or LoadGen (versions come from package metadata), and every probe is
allowed to fail: a missing tool yields ``null``, never an error. Secrets go through the Redactor.
"""

from __future__ import annotations

import ast
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import __version__, disk, machine
from harness.errors import OutputError
from harness.redact import Redactor
from harness.resources import source_checkout

log = logging.getLogger(__name__)

ENV_FILE = "environment.json"
PROBE_TIMEOUT_S = 10  # nvidia-smi and git; a wedged driver must not hang a run
# Environment variables that change how a run behaves (threads, devices, offline modes).
ENV_PREFIXES = ("CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "TOKENIZERS_", "HF_", "TRANSFORMERS_", "TORCH",
                "PYTORCH_", "NCCL_", "MLFLOW_", "HARNESS_")


def capture(rerun_args: Sequence[str] = (), redactor: Redactor | None = None) -> dict[str, Any]:
    """Everything needed to understand and repeat a run, secrets masked.

    ``rerun_args`` are the harness arguments that repeat this run alone (for a job of a round,
    that job's overrides); the process's own command line is recorded as well.
    """
    redactor = redactor or Redactor.collect()
    env = {
        "captured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": {
            "argv": list(getattr(sys, "orig_argv", sys.argv)),
            "cwd": os.getcwd(),
            "rerun": f"cd {shlex.quote(os.getcwd())} && {shlex.join(['harness', *rerun_args])}",
        },
        "harness": {"version": __version__, **git_state()},
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform(),
               "machine": platform.machine(), "hostname": platform.node()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "loadgen": {"version": package_version("mlcommons-loadgen")},
        "torch": torch_build(),
        "cpu": cpu(),
        "memory": machine.memory_modules(),
        "disks": machine.disks(),
        "network": machine.network_interfaces(),
        "gpus": gpus(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        "packages": packages(),
    }
    return redactor.data(env)


def write(output_dir: Path, env: dict[str, Any]) -> Path:
    """``environment.json`` in ``output_dir``; OutputError when it cannot be written."""
    path = Path(output_dir) / ENV_FILE
    try:
        path.write_text(json.dumps(env, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        if disk.is_full(exc):
            raise disk.no_space(Path(output_dir), f"writing {ENV_FILE} failed ({exc.strerror})") from exc
        raise OutputError(f"output directory {output_dir} is not writable: {exc.strerror or exc}") from exc
    return path


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def packages() -> dict[str, str]:
    """Installed distributions, normalised name (PEP 503: ``mlcommons-loadgen``) -> version."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[re.sub(r"[-_.]+", "-", name).lower()] = dist.version
    return dict(sorted(found.items()))


@functools.cache
def torch_build() -> dict[str, Any]:
    """torch's version and the CUDA/ROCm it was built for, read from ``torch/version.py``.

    Parsed, not imported: importing torch costs seconds and may initialise CUDA.
    """
    info: dict[str, Any] = {"version": package_version("torch"), "cuda": None, "hip": None, "git_version": None}
    try:
        spec = importlib.util.find_spec("torch")
        locations = list(spec.submodule_search_locations or []) if spec else []
        tree = ast.parse((Path(locations[0]) / "version.py").read_text())
    except (ImportError, IndexError, OSError, SyntaxError, ValueError):
        return info
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id in ("cuda", "hip", "git_version") and node.value is not None:
            try:
                info[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return info


@functools.cache
def cpu() -> dict[str, Any]:
    import psutil

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": model or platform.processor() or None, "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(logical=True), "sockets": machine.sockets(),
            "max_frequency_mhz": machine.max_frequency_mhz(), "caches": machine.caches(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 2)}


# nvidia-smi's names for the fields NVML gives: max SM clock (MHz), PCIe generation and width.
SMI_QUERY = "name,memory.total,driver_version,clocks.max.sm,pcie.link.gen.max,pcie.link.width.max"


@functools.cache
def gpus() -> dict[str, Any]:
    """GPU name, memory, driver, max SM clock, PCIe link and NVLink: NVML when installed, else
    nvidia-smi (no NVLink), else none. A figure a driver does not report is null."""
    try:
        return {"source": "nvml", "devices": _nvml_gpus()}
    except Exception as exc:  # no pynvml, no driver, no device: all just mean "ask nvidia-smi"
        log.debug("NVML unavailable: %s", exc)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=True).stdout
            return {"source": "nvidia-smi", "devices": [_smi_device(line) for line in out.strip().splitlines()]}
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            log.debug("nvidia-smi failed: %s", exc)
    return {"source": None, "devices": []}


def _smi_device(line: str) -> dict[str, Any]:
    parts = [p.strip() for p in line.split(",")]
    name, memory_mib, driver = parts[:3]
    clock, gen, width = ([_smi_int(p) for p in parts[3:6]] + [None] * 3)[:3]
    return {"name": name, "memory_gib": round(float(memory_mib) / 1024, 2), "driver": driver,
            "max_sm_clock_mhz": clock, "pcie_generation": gen, "pcie_width": width, "nvlink": None}


def _smi_int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def _nvml_gpus() -> list[dict[str, Any]]:
    import pynvml  # nvidia-ml-py; optional

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            devices.append({"name": name.decode() if isinstance(name, bytes) else name,
                            "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 2),
                            "driver": driver.decode() if isinstance(driver, bytes) else driver,
                            "max_sm_clock_mhz": _nvml(pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_SM),
                            "pcie_generation": _nvml(pynvml.nvmlDeviceGetMaxPcieLinkGeneration, handle),
                            "pcie_width": _nvml(pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle),
                            "nvlink": _nvml_nvlink(pynvml, handle)})
        return devices
    finally:
        pynvml.nvmlShutdown()


def _nvml(fn: Any, *args: Any) -> Any:
    """One NVML query; None where the device or driver does not support it."""
    try:
        return fn(*args)
    except Exception as exc:  # pynvml.NVMLError_NotSupported and friends
        log.debug("NVML %s: %s", getattr(fn, "__name__", fn), exc)
        return None


def _nvml_nvlink(pynvml: Any, handle: Any) -> dict[str, Any] | None:
    """Active NVLink links of one GPU, whether they go to an NVSwitch, and NVML's version code of
    the link (raw: its numbering differs between NVML releases)."""
    active, versions, switch = 0, set(), False
    for link in range(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18)):
        if _nvml(pynvml.nvmlDeviceGetNvLinkState, handle, link) != pynvml.NVML_FEATURE_ENABLED:
            continue
        active += 1
        versions.add(_nvml(pynvml.nvmlDeviceGetNvLinkVersion, handle, link))
        remote = _nvml(pynvml.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link)
        switch |= remote == getattr(pynvml, "NVML_NVLINK_DEVICE_TYPE_SWITCH", 2)
    if not active:
        return {"active_links": 0, "nvml_version": None, "to_switch": False}
    known = sorted(v for v in versions if v is not None)
    return {"active_links": active, "nvml_version": known[-1] if known else None, "to_switch": switch}


def git_state(root: Path | None = None) -> dict[str, Any]:
    """The project's commit and whether tracked files differ from it (null outside a checkout,
    e.g. an installed wheel). ``root``: the checkout; default: the one the package runs from."""
    root = root if root is not None else source_checkout()
    git = shutil.which("git")
    if not git or root is None or not (root / ".git").exists():
        return {"git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run([git, "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT_S, check=True).stdout.strip()
        status = subprocess.run([git, "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("git state unavailable: %s", exc)
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": bool(status.strip())}

