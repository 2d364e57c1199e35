"""systems/<id>.json: every official field, from the system config over what the machine told."""

import dataclasses

import pytest

from harness.config import SystemConfig
from harness.submission import system

ENV = {
    "cpu": {"model": "AMD EPYC 9575F", "physical_cores": 128, "sockets": 2, "max_frequency_mhz": 5008,
            "caches": [{"level": 1, "type": "Data", "size_kib": 48, "instances": 128},
                       {"level": 3, "type": "Unified", "size_kib": 32768, "instances": 16}],
            "memory_gib": 1511.8},
    "memory": {"source": "edac", "modules": [{"size_mib": 65536, "type": "DDR5", "speed_mts": 6000}] * 24},
    "disks": [{"name": "nvme0n1", "bytes": 3840 * 10**9, "kind": "NVMe SSD"},
              {"name": "nvme1n1", "bytes": 3840 * 10**9, "kind": "NVMe SSD"}],
    "network": [{"name": "eth0", "kind": "Ethernet", "speed_mbps": 100000, "driver": "mlx5_core", "card": "0:1"},
                {"name": "eth1", "kind": "Ethernet", "speed_mbps": 100000, "driver": "mlx5_core", "card": "0:1"}],
    "gpus": {"devices": [{"name": "NVIDIA H200", "memory_gib": 139.8, "driver": "560", "max_sm_clock_mhz": 1980,
                          "pcie_generation": 5, "pcie_width": 16,
                          "nvlink": {"active_links": 18, "nvml_version": 4, "to_switch": True}}] * 8},
    "os": {"platform": "Linux-6.8"}, "python": {"version": "3.11"}, "loadgen": {"version": "6.0.17"},
    "harness": {"version": "0.1.0"},
}
UNDETECTABLE = {"system_name": "Box", "status": "available", "system_type": "datacenter", "framework": "vLLM",
                "cooling": "air", "host_networking_topology": "N/A"}


def _config(**fields):
    """A system config as harness-submit has it: every key, null where unset."""
    return dataclasses.asdict(SystemConfig(**fields))


def test_every_field_in_the_checkers_order_with_the_machines_answers():
    desc = system.describe(_config(**UNDETECTABLE, peak_tflops=989.0), ENV, "closed", "ACME")
    assert list(desc) == list(system.FIELDS) and "peak_tflops" not in desc  # the roofline's input only
    assert system.problems(desc) == ([], [], [])
    assert desc["host_processors_per_node"] == 2 and desc["host_processor_core_count"] == 64  # per processor
    assert desc["host_processor_frequency"] == "5008 MHz"
    assert desc["host_processor_caches"] == "L1d 6 MiB (128 instances), L3 512 MiB (16 instances)"
    assert desc["host_memory_configuration"] == "24x 64 GiB DDR5 6000 MT/s"
    assert (desc["host_storage_capacity"], desc["host_storage_type"]) == ("6.98 TiB", "NVMe SSD")
    assert (desc["host_networking"], desc["host_network_card_count"]) == ("2x Ethernet 100 Gb/s", "1")
    assert desc["accelerators_per_node"] == 8 and desc["accelerator_frequency"] == "1980 MHz"
    assert desc["accelerator_host_interconnect"] == "PCIe Gen5 x16"
    assert desc["accelerator_interconnect"] == "NVLink (18 links per GPU)"
    assert desc["accelerator_interconnect_topology"] == "NVSwitch"
    assert desc["accelerator_memory_configuration"] == "HBM3e"  # from the accelerator table
    assert desc["hw_notes"] == desc["accelerator_on-chip_memories"] == ""  # may be empty: written empty
    assert "mlcommons-loadgen 6.0.17" in desc["other_software_stack"]


def test_the_config_wins_and_a_zero_count_is_written_as_a_string():
    config = _config(**UNDETECTABLE, accelerator_model_name="NVIDIA H200 SXM 141GB", accelerators_per_node=0,
                     accelerator_on_chip_memories="50 MB L2", host_network_card_count=0)
    desc = system.describe(config, ENV, "open", "ACME")
    assert desc["accelerator_model_name"] == "NVIDIA H200 SXM 141GB"
    assert desc["accelerator_on-chip_memories"] == "50 MB L2"  # the JSON spells it with a hyphen
    # The official checker reads the number 0 as empty; the string "0" is a value.
    assert desc["accelerators_per_node"] == "0" and desc["host_network_card_count"] == "0"


def test_a_cpu_only_machine_says_so():
    env = {**ENV, "gpus": {"devices": []}}
    desc = system.describe(_config(**UNDETECTABLE), env, "open", "ACME")
    assert desc["accelerators_per_node"] == "0" and desc["accelerator_model_name"] == "N/A"
    assert desc["accelerator_interconnect"] == desc["accelerator_host_interconnect"] == "N/A"
    assert system.problems(desc) == ([], [], [])


def test_what_nothing_tells_is_named_in_the_config_spelling():
    env = {k: v for k, v in ENV.items() if k not in ("memory", "network")}
    desc = system.describe(_config(system_name="Box"), env, "open", "ACME")
    assert system.unset_fields(desc) == ["status", "framework", "system_type", "host_memory_configuration",
                                         "host_networking", "host_networking_topology", "cooling",
                                         "host_network_card_count"]


@pytest.mark.parametrize("edit, problems", [
    ({"accelerators_per_node": 0}, ([], ["accelerators_per_node"], [])),
    ({"accelerators_per_node": "0"}, ([], [], [])),
    ({"host_networking": ""}, ([], ["host_networking"], [])),
    ({"hw_notes": ""}, ([], [], [])),
    ({"status": "soon"}, ([], [], ["status 'soon' is not one of available, preview, rdi"])),
])
def test_the_official_meaningful_value_rules(edit, problems):
    desc = {**system.describe(_config(**UNDETECTABLE), ENV, "open", "ACME"), **edit}
    assert system.problems(desc) == problems
    del desc["sw_notes"]
    assert system.problems(desc)[0] == ["sw_notes"]


def test_every_field_can_be_set_in_the_system_config():
    keys = {f.name for f in dataclasses.fields(SystemConfig)}
    assert {system.config_key(f) for f in system.FIELDS} - {"division", "submitter"} <= keys
    assert system.normalise_config({"accelerator_on-chip_memories": "x"}) == {"accelerator_on_chip_memories": "x"}
