"""``systems/<id>.json``: the system config (what cannot be detected) over the captured environment.

The official checker (v6.1, ``SYSTEM_DESC_*`` in its constants.py) requires all of ``FIELDS`` to be
present, and a "meaningful" value in ``MEANINGFUL``: Python-falsy counts as empty there, so the
number 0 does too and a count of zero is written as the string "0". The rest may be "".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# In the official checker's order.
FIELDS = ("division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
          "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
          "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
          "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
          "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
          "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
          "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_configuration",
          "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes", "host_network_card_count",
          "system_type_detail")
MEANINGFUL = frozenset((
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_memory_configuration",
    "host_storage_capacity", "host_storage_type", "host_networking", "host_network_card_count",
    "host_networking_topology", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "accelerator_host_interconnect", "accelerator_memory_configuration", "accelerator_interconnect", "cooling",
    "framework", "operating_system", "other_software_stack"))
STATUSES = ("available", "preview", "rdi")
SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")
# The JSON's one hyphenated field and its config key (a Python name).
CONFIG_KEYS = {"accelerator_on-chip_memories": "accelerator_on_chip_memories"}
# System config keys that are not fields of the JSON: the config's own name and the roofline's inputs.
_NOT_FIELDS = ("name", "description", "peak_memory_bandwidth_gbs", "peak_tflops")


def config_key(field: str) -> str:
    return CONFIG_KEYS.get(field, field)


def normalise_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A system config mapping with the JSON's spellings (``accelerator_on-chip_memories``) as config keys."""
    return {CONFIG_KEYS.get(k, k): v for k, v in raw.items()}


def _size(n_bytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} B"


def _caches(caches: list[dict[str, Any]]) -> str | None:
    kinds = {"Data": "d", "Instruction": "i", "Unified": ""}
    parts = [f"L{c['level']}{kinds.get(c['type'], c['type'])} {_size(c['size_kib'] * 1024 * c['instances'])} "
             f"({c['instances']} instance{'s' if c['instances'] != 1 else ''})" for c in caches]
    return ", ".join(parts) or None


def _memory_configuration(memory: Mapping[str, Any]) -> str | None:
    """``16x 64 GiB DDR5 4800 MT/s`` (groups of identical modules)."""
    groups: dict[tuple, int] = {}
    for m in memory.get("modules") or []:
        key = (m.get("size_mib"), m.get("type"), m.get("speed_mts"))
        groups[key] = groups.get(key, 0) + 1
    parts = []
    for (size_mib, kind, speed), count in groups.items():
        text = f"{count}x {_size(size_mib * 2**20)}" + (f" {kind}" if kind else "")
        parts.append(text + (f" {speed} MT/s" if speed else ""))
    return ", ".join(parts) or None


def _storage(disks: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    if not disks:
        return None, None
    kinds = sorted({d["kind"] for d in disks})
    return _size(sum(d["bytes"] for d in disks)), ", ".join(kinds)


def _networking(nics: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    if not nics:
        return None, None
    groups: dict[tuple, int] = {}
    for n in nics:
        key = (n["kind"], n.get("speed_mbps"))
        groups[key] = groups.get(key, 0) + 1
    parts = [f"{count}x {kind}" + (f" {speed / 1000:g} Gb/s" if speed else "")
             for (kind, speed), count in groups.items()]
    return ", ".join(parts), str(len({n["card"] for n in nics}))


def _accelerator_fields(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    from harness.hardware import match_accelerator

    if not gpus:  # CPU-only: MLPerf writes N/A for the accelerator fields
        return {"accelerators_per_node": "0", "accelerator_model_name": "N/A", "accelerator_memory_capacity": "N/A",
                "accelerator_host_interconnect": "N/A", "accelerator_interconnect": "N/A",
                "accelerator_memory_configuration": "N/A"}
    first = gpus[0]
    fields: dict[str, Any] = {"accelerators_per_node": len(gpus), "accelerator_model_name": first["name"],
                              "accelerator_memory_capacity": f"{first['memory_gib']} GiB"}
    if first.get("max_sm_clock_mhz"):
        fields["accelerator_frequency"] = f"{first['max_sm_clock_mhz']} MHz"
    if first.get("pcie_generation") and first.get("pcie_width"):
        fields["accelerator_host_interconnect"] = f"PCIe Gen{first['pcie_generation']} x{first['pcie_width']}"
    nvlink = first.get("nvlink")
    if nvlink is not None:  # known only from NVML
        if nvlink["active_links"]:
            fields["accelerator_interconnect"] = f"NVLink ({nvlink['active_links']} links per GPU)"
            if nvlink.get("to_switch"):
                fields["accelerator_interconnect_topology"] = "NVSwitch"
        else:
            fields["accelerator_interconnect"] = "N/A" if len(gpus) == 1 else "PCIe"
    row = match_accelerator(first["name"])
    if row is not None and row.memory_type:
        fields["accelerator_memory_configuration"] = row.memory_type
    return fields


def from_environment(env: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields environment.json answers (none when it is absent)."""
    if not env:
        return {}
    cpu, gpus = env.get("cpu") or {}, (env.get("gpus") or {}).get("devices") or []
    packages = env.get("packages") or {}
    sockets = cpu.get("sockets")
    cores = cpu.get("physical_cores")
    storage_capacity, storage_type = _storage(env.get("disks") or [])
    networking, cards = _networking(env.get("network") or [])
    fields: dict[str, Any] = {
        "host_processor_model_name": cpu.get("model"),
        "host_processors_per_node": sockets,
        # MLPerf counts cores per processor
        "host_processor_core_count": cores // sockets if cores and sockets else cores,
        "host_processor_frequency": f"{cpu['max_frequency_mhz']} MHz" if cpu.get("max_frequency_mhz") else None,
        "host_processor_caches": _caches(cpu.get("caches") or []),
        "host_memory_capacity": f"{cpu['memory_gib']} GiB" if cpu.get("memory_gib") else None,
        "host_memory_configuration": _memory_configuration(env.get("memory") or {}),
        "host_storage_capacity": storage_capacity, "host_storage_type": storage_type,
        "host_networking": networking, "host_network_card_count": cards,
        "operating_system": (env.get("os") or {}).get("platform"),
        **_accelerator_fields(gpus),
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
    """Every field, in the checker's order: the system config where it sets one, else what the
    environment told, else "" for the fields that may be empty (the meaningful ones stay absent,
    for ``problems`` to name). A count of zero becomes "0"."""
    json_keys = {k: f for f, k in CONFIG_KEYS.items()}
    known = {"division": division, "submitter": submitter, **from_environment(env)}
    for key, value in normalise_config(system).items():
        if key not in _NOT_FIELDS and value is not None:
            known[json_keys.get(key, key)] = value
    desc: dict[str, Any] = {}
    for field in FIELDS:
        value = known.get(field)
        if value is None and field not in MEANINGFUL:
            value = ""
        if value == 0 and not isinstance(value, bool):
            value = "0"
        if value is not None:
            desc[field] = value
    if system.get("description"):
        desc["system_description"] = system["description"]
    return desc


def problems(desc: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The official checker's verdict on one description: (fields absent, meaningful fields empty,
    other problems: status and system_type values)."""
    missing = [f for f in FIELDS if f not in desc]
    empty = [f for f in FIELDS if f in desc and f in MEANINGFUL and not desc[f]]
    other = []
    status = desc.get("status")
    if "status" in desc and desc["status"] and str(status).lower() not in STATUSES:
        other.append(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if desc.get("system_type") and desc["system_type"] not in SYSTEM_TYPES:
        other.append(f"system_type {desc['system_type']!r} is not one of {', '.join(SYSTEM_TYPES[:3])}")
    return missing, empty, other


def unset_fields(desc: Mapping[str, Any]) -> list[str]:
    """Fields the checker would reject (absent or empty where a value is required), config spelling."""
    missing, empty, _ = problems(desc)
    return [config_key(f) for f in FIELDS if f in missing or f in empty]
