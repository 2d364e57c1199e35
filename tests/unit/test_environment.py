"""Environment capture: complete without a GPU, and secrets masked."""

import json
import os
import platform
import sys

from harness import environment
from harness.redact import REDACTED, Redactor


def test_capture_records_the_machine_software_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_capture_secret_1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = environment.capture(["scenario=server", "sut.api_key=sk-abcdefgh"], Redactor.collect())
    assert env["python"]["version"] == platform.python_version()
    assert env["os"]["system"] == platform.system()
    assert env["packages"]["mlflow"] and env["packages"]["hydra-core"]
    assert env["loadgen"]["version"] == env["packages"]["mlcommons-loadgen"]
    assert env["torch"]["version"] == env["packages"]["torch"]
    assert "cuda" in env["torch"]
    assert env["cpu"]["logical_cores"] >= 1 and env["cpu"]["memory_gib"] > 0
    # No GPU here: an empty list, not an error; with one, each device has a name and memory.
    assert isinstance(env["gpus"]["devices"], list)
    assert all(d["name"] and d["memory_gib"] > 0 for d in env["gpus"]["devices"])
    assert len(env["harness"]["git_commit"] or "0" * 40) == 40
    assert env["command"]["rerun"].endswith("harness scenario=server sut.api_key=***")
    assert env["env"]["OMP_NUM_THREADS"] == "2" and env["env"]["HF_TOKEN"] == REDACTED
    text = json.dumps(env)
    assert "hf_capture_secret_1" not in text and "sk-abcdefgh" not in text


def test_write_puts_environment_json_in_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "harness", "sut.password=hunter22"])
    env = environment.capture([], Redactor.collect())
    path = environment.write(tmp_path, env)
    assert path == tmp_path / "environment.json"
    saved = json.loads(path.read_text())
    assert saved["command"]["argv"][-1] == "sut.password=***"
    assert saved["cpu"] == env["cpu"]


def test_gpu_probe_without_nvml_or_nvidia_smi(monkeypatch):
    monkeypatch.setattr(environment.shutil, "which", lambda name: None)
    monkeypatch.setattr(environment, "_nvml_gpus", _no_nvml)
    environment.gpus.cache_clear()
    try:
        assert environment.gpus() == {"source": None, "devices": []}
    finally:
        environment.gpus.cache_clear()


def test_gpu_probe_reads_nvidia_smi(tmp_path, monkeypatch):
    # A stand-in nvidia-smi printing what the real one prints for this query on a 2-GPU host.
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559, 550.54.15, 1980, 5, 16'\n"
                   "echo 'NVIDIA H100 80GB HBM3, 81559, 550.54.15, [N/A], [N/A], [N/A]'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(environment, "_nvml_gpus", _no_nvml)
    environment.gpus.cache_clear()
    try:
        found = environment.gpus()
    finally:
        environment.gpus.cache_clear()
    assert found["source"] == "nvidia-smi" and len(found["devices"]) == 2
    assert found["devices"][0] == {"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.65, "driver": "550.54.15",
                                   "max_sm_clock_mhz": 1980, "pcie_generation": 5, "pcie_width": 16, "nvlink": None}
    assert found["devices"][1]["max_sm_clock_mhz"] is None and found["devices"][1]["pcie_width"] is None


class _FakeNVML:
    """pynvml's surface as the driver of a 2-GPU NVLink box answers it (link 17 unsupported)."""

    NVML_CLOCK_SM, NVML_FEATURE_ENABLED, NVML_NVLINK_MAX_LINKS, NVML_NVLINK_DEVICE_TYPE_SWITCH = 1, 1, 18, 2

    class NVMLError(Exception):
        pass

    def nvmlInit(self): pass
    def nvmlShutdown(self): pass
    def nvmlSystemGetDriverVersion(self): return b"560.35.03"
    def nvmlDeviceGetCount(self): return 2
    def nvmlDeviceGetHandleByIndex(self, i): return i
    def nvmlDeviceGetName(self, h): return "NVIDIA H200"
    def nvmlDeviceGetMemoryInfo(self, h): return type("M", (), {"total": 150754820096})()
    def nvmlDeviceGetMaxClockInfo(self, h, clock): return 1980 if clock == self.NVML_CLOCK_SM else 2619
    def nvmlDeviceGetMaxPcieLinkGeneration(self, h): return 5
    def nvmlDeviceGetMaxPcieLinkWidth(self, h): raise self.NVMLError("Not Supported")
    def nvmlDeviceGetNvLinkVersion(self, h, link): return 4

    def nvmlDeviceGetNvLinkState(self, h, link):
        if link == 17:
            raise self.NVMLError("Not Supported")
        return 1

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, h, link): return 2


def test_gpu_probe_reads_clocks_pcie_and_nvlink_from_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNVML())
    environment.gpus.cache_clear()
    try:
        found = environment.gpus()
    finally:
        environment.gpus.cache_clear()
    assert found["source"] == "nvml" and len(found["devices"]) == 2
    assert found["devices"][0] == {"name": "NVIDIA H200", "memory_gib": 140.4, "driver": "560.35.03",
                                   "max_sm_clock_mhz": 1980, "pcie_generation": 5, "pcie_width": None,
                                   "nvlink": {"active_links": 17, "nvml_version": 4, "to_switch": True}}


def _no_nvml():
    raise ImportError("no pynvml")
