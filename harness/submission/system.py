"""``systems/<id>.json``: the system config (what cannot be detected) plus the captured environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Fields the MLPerf submission checker requires in a system description (MLPERF_FACTS.md).
REQUIRED_FIELDS = ("division", "submitter", "status", "system_name", "number_of_nodes", "system_type",
                   "host_processor_model_name", "host_processor_core_count", "host_memory_capacity",
                   "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
                   "framework", "operating_system", "other_software_stack")


def from_environment(env: Mapping[str, Any] | None) -> dict[str, Any]:
    """The hardware and software fields environment.json answers (none when it is absent)."""
    if not env:
        return {}
    cpu, gpus = env.get("cpu") or {}, (env.get("gpus") or {}).get("devices") or []
    packages = env.get("packages") or {}
    fields: dict[str, Any] = {
        "host_processor_model_name": cpu.get("model"),
        "host_processor_core_count": cpu.get("physical_cores"),
        "host_memory_capacity": f"{cpu['memory_gib']} GiB" if cpu.get("memory_gib") else None,
        "operating_system": (env.get("os") or {}).get("platform"),
        # CPU-only systems: MLPerf writes N/A for the accelerator fields.
        "accelerators_per_node": len(gpus),
        "accelerator_model_name": gpus[0]["name"] if gpus else "N/A",
        "accelerator_memory_capacity": f"{gpus[0]['memory_gib']} GiB" if gpus else "N/A",
    }
    torch, harness = env.get("torch") or {}, env.get("harness") or {}
    stack = [f"python {(env.get('python') or {}).get('version')}",
             f"mlcommons-loadgen {(env.get('loadgen') or {}).get('version')}",
             f"harness {harness.get('version')} ({(harness.get('git_commit') or 'no git')[:12]})"]
    if torch.get("version"):
        stack.append(f"torch {torch['version']}" + (f" (CUDA {torch['cuda']})" if torch.get("cuda") else ""))
    stack += [f"{name} {packages[name]}" for name in ("transformers", "vllm") if name in packages]
    if gpus and gpus[0].get("driver"):
        stack.append(f"driver {gpus[0]['driver']}")
    fields["other_software_stack"] = ", ".join(stack)
    return {k: v for k, v in fields.items() if v is not None}


def describe(system: Mapping[str, Any], env: Mapping[str, Any] | None, division: str,
             submitter: str) -> dict[str, Any]:
    """The system description: captured fields, overridden by the system config where it sets them."""
    desc: dict[str, Any] = {"division": division, "submitter": submitter, **from_environment(env)}
    for key, value in system.items():
        # peak_*: the harness's own roofline inputs, not fields of MLPerf's systems JSON.
        if key in ("name", "description") or key.startswith("peak_") or value is None:
            continue
        desc[key] = value
    if system.get("description"):
        desc["system_description"] = system["description"]
    return desc


def missing_fields(desc: Mapping[str, Any]) -> list[str]:
    return [f for f in REQUIRED_FIELDS if desc.get(f) in (None, "")]
