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
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559, 550.54.15'\n"
                   "echo 'NVIDIA H100 80GB HBM3, 81559, 550.54.15'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(environment, "_nvml_gpus", _no_nvml)
    environment.gpus.cache_clear()
    try:
        found = environment.gpus()
    finally:
        environment.gpus.cache_clear()
    assert found["source"] == "nvidia-smi" and len(found["devices"]) == 2
    assert found["devices"][0] == {"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.65, "driver": "550.54.15"}


def _no_nvml():
    raise ImportError("no pynvml")
