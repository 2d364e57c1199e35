"""Host hardware probes on a copy of sysfs: a 2-socket server with a NIC of two ports, NVMe and a HDD."""

import os

import pytest

from harness import machine


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _link(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(target, path.parent))


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "sys"
    cpus = root / "devices/system/cpu"
    for n in range(4):  # CPUs 0-1 on package 0, 2-3 on package 1; private L1/L2, L3 per package
        cpu = cpus / f"cpu{n}"
        _write(cpu / "topology/physical_package_id", str(n // 2))
        for i, (level, kind, size, shared) in enumerate([(1, "Data", "48K", str(n)), (1, "Instruction", "32K", str(n)),
                                                         (2, "Unified", "2048K", str(n)),
                                                         (3, "Unified", "105M", "0-1" if n < 2 else "2-3")]):
            for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
                _write(cpu / f"cache/index{i}/{name}", str(value))
    _write(cpus / "cpu0/cpufreq/cpuinfo_max_freq", "3800000")
    for i in range(2):
        _write(root / f"devices/system/edac/mc/mc0/dimm{i}/size", "65536")
        _write(root / f"devices/system/edac/mc/mc0/dimm{i}/dimm_mem_type", "Registered-DDR5")
    pci = root / "devices/pci0000:00"
    for name, dev, rotational in (("nvme0n1", "0000:00:01.0/nvme/nvme0/nvme0n1", "0"),
                                  ("sda", "0000:00:02.0/ata1/host0/target0/0:0:0:0/block/sda", "1")):
        _link(root / "block" / name, pci / dev)
        _write(pci / dev / "size", str(2 * 10**12 // 512))
        _write(pci / dev / "queue/rotational", rotational)
    _link(root / "block/loop0", root / "devices/virtual/block/loop0")
    _write(root / "devices/virtual/block/loop0/size", "2048")
    for port, function in (("eth0", 0), ("eth1", 1)):  # one card, two ports
        card = pci / f"0000:00:03.{function}"
        _link(root / "class/net" / port, card / "net" / port)
        _link(card / "net" / port / "device", card)
        _link(card / "driver", root / "bus/pci/drivers/mlx5_core")
        _write(card / "net" / port / "type", "1")
        _write(card / "net" / port / "speed", "100000")
    _link(root / "class/net/lo", root / "devices/virtual/net/lo")
    return root


def test_processors_frequency_and_caches(sysfs, tmp_path):
    assert machine.sockets(sysfs) == 2
    assert machine.max_frequency_mhz(sysfs) == 3800
    assert machine.caches(sysfs) == [
        {"level": 1, "type": "Data", "size_kib": 48, "instances": 4},
        {"level": 1, "type": "Instruction", "size_kib": 32, "instances": 4},
        {"level": 2, "type": "Unified", "size_kib": 2048, "instances": 4},
        {"level": 3, "type": "Unified", "size_kib": 105 * 1024, "instances": 2}]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2596.122\n")
    assert machine.max_frequency_mhz(tmp_path / "no-cpufreq", cpuinfo) == 2596  # a VM: no cpufreq


def test_memory_modules_disks_and_nics(sysfs):
    assert machine.memory_modules(sysfs) == {"source": "edac", "modules": [
        {"size_mib": 65536, "type": "Registered-DDR5", "speed_mts": None}] * 2}
    assert machine.disks(sysfs) == [{"name": "nvme0n1", "bytes": 2 * 10**12, "kind": "NVMe SSD"},
                                    {"name": "sda", "bytes": 2 * 10**12, "kind": "HDD"}]
    nics = machine.network_interfaces(sysfs)
    assert [(n["name"], n["kind"], n["speed_mbps"], n["driver"], n["card"]) for n in nics] == [
        ("eth0", "Ethernet", 100000, "mlx5_core", "0000:00:03"),
        ("eth1", "Ethernet", 100000, "mlx5_core", "0000:00:03")]


def test_a_machine_that_tells_nothing_answers_unknown(tmp_path):
    empty = tmp_path / "sys"
    assert machine.sockets(empty) is None and machine.caches(empty) == [] and machine.disks(empty) == []
    assert machine.network_interfaces(empty) == []
    assert machine.max_frequency_mhz(empty, tmp_path / "no-cpuinfo") is None
    if os.geteuid() != 0:
        assert machine.memory_modules(empty) == {"source": None, "modules": []}


def test_dmidecode_memory_devices():
    text = """Handle 0x0011, DMI type 17, 92 bytes
Memory Device
\tSize: 64 GB
\tType: DDR5
\tSpeed: 4800 MT/s

Handle 0x0012, DMI type 17, 92 bytes
Memory Device
\tSize: No Module Installed
\tType: Unknown
"""
    assert machine.parse_dmidecode_memory(text) == [{"size_mib": 65536, "type": "DDR5", "speed_mts": 4800}]
