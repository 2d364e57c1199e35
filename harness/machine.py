"""What a Linux host can tell about its hardware without privileges: sysfs and procfs, read-only.

For MLPerf's system description (harness/submission/system.py) and ``environment.json``:
processors (sockets), their maximum frequency and caches; memory modules (EDAC's sysfs view, or
``dmidecode`` when running as root); local disks; network interfaces backed by a device. Each
probe takes the sysfs root so it can be pointed at a copy, and answers None (or an empty list)
for whatever the machine does not expose: in a VM or container much of it is absent, and the
system config must then say it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

SYSFS = Path("/sys")
CPUINFO = Path("/proc/cpuinfo")
PROBE_TIMEOUT_S = 10
# Block devices that are not disks: loop files, RAM disks, compressed swap, optical drives, NBD.
_NOT_DISKS = re.compile(r"^(loop|ram|zram|sr|fd|nbd)\d")
_PCI = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
# /sys/class/net/<if>/type: ARPHRD_ETHER and ARPHRD_INFINIBAND.
_LINK_TYPES = {"1": "Ethernet", "32": "InfiniBand"}
T = TypeVar("T")


def _probe(default: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A probe never fails a run: anything unexpected (permissions, odd sysfs) answers ``default``."""
    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def probe(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # the probe's answer is "unknown", never an error
                log.debug("%s failed: %s", fn.__name__, exc)
                return default() if callable(default) else default
        return probe
    return wrap


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _size_kib(text: str | None) -> int | None:
    """sysfs cache sizes: ``48K``, ``2048K``, ``32M``."""
    m = re.fullmatch(r"(\d+)([KMG]?)", text or "")
    return int(m.group(1)) * {"": 1, "K": 1, "M": 2**10, "G": 2**20}[m.group(2)] if m else None


def _cpu_dirs(sysfs: Path) -> list[Path]:
    return sorted(p for p in (sysfs / "devices/system/cpu").glob("cpu[0-9]*") if p.is_dir())


@_probe(None)
def sockets(sysfs: Path = SYSFS) -> int | None:
    """Processors (packages) on this host: distinct ``physical_package_id`` of the online CPUs."""
    ids = {_read(c / "topology/physical_package_id") for c in _cpu_dirs(sysfs)} - {None}
    return len(ids) or None


@_probe(None)
def max_frequency_mhz(sysfs: Path = SYSFS, cpuinfo: Path = CPUINFO) -> int | None:
    """cpufreq's maximum (kHz in sysfs); without cpufreq (VMs), /proc/cpuinfo's clock of CPU 0."""
    khz = _int(_read(sysfs / "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
    if khz:
        return round(khz / 1000)
    for line in (_read(cpuinfo) or "").splitlines():
        if line.startswith("cpu MHz"):
            try:
                return round(float(line.split(":", 1)[1]))
            except ValueError:
                return None
    return None


@_probe(list)
def caches(sysfs: Path = SYSFS) -> list[dict[str, Any]]:
    """Each cache level and type: size of one instance (KiB) and how many instances the host has.

    Instances are the distinct ``shared_cpu_list`` sets over all CPUs, as ``lscpu`` counts them.
    """
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for cpu in _cpu_dirs(sysfs):
        for index in sorted((cpu / "cache").glob("index[0-9]*")):
            level, kind = _int(_read(index / "level")), _read(index / "type")
            size = _size_kib(_read(index / "size"))
            if level is None or kind is None or size is None:
                continue
            entry = found.setdefault((level, kind), {"level": level, "type": kind, "size_kib": size, "shared": set()})
            entry["shared"].add(_read(index / "shared_cpu_list") or cpu.name)
    return [{"level": e["level"], "type": e["type"], "size_kib": e["size_kib"], "instances": len(e["shared"])}
            for _, e in sorted(found.items())]


@_probe(lambda: {"source": None, "modules": []})
def memory_modules(sysfs: Path = SYSFS) -> dict[str, Any]:
    """Installed memory modules: EDAC's sysfs (no privileges needed), else ``dmidecode`` as root."""
    modules = []
    for dimm in sorted((sysfs / "devices/system/edac/mc").glob("mc[0-9]*/dimm[0-9]*")):
        size_mib = _int(_read(dimm / "size"))
        if size_mib:
            modules.append({"size_mib": size_mib, "type": _read(dimm / "dimm_mem_type"), "speed_mts": None})
    if modules:
        return {"source": "edac", "modules": modules}
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("dmidecode"):
        try:
            out = subprocess.run(["dmidecode", "-t", "17"], capture_output=True, text=True,
                                 timeout=PROBE_TIMEOUT_S, check=True).stdout
            modules = parse_dmidecode_memory(out)
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("dmidecode failed: %s", exc)
        if modules:
            return {"source": "dmidecode", "modules": modules}
    return {"source": None, "modules": []}


def parse_dmidecode_memory(text: str) -> list[dict[str, Any]]:
    """Populated "Memory Device" sections of ``dmidecode -t 17``."""
    modules = []
    for block in text.split("\n\n"):
        if "Memory Device" not in block:
            continue
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines() if ": " in line)
        m = re.fullmatch(r"(\d+) (MB|GB|TB)", fields.get("Size", ""))
        if not m:
            continue  # "No Module Installed"
        size_mib = int(m.group(1)) * {"MB": 1, "GB": 2**10, "TB": 2**20}[m.group(2)]
        speed = re.match(r"(\d+) (MT/s|MHz)", fields.get("Speed", ""))
        modules.append({"size_mib": size_mib, "type": fields.get("Type"),
                        "speed_mts": int(speed.group(1)) if speed else None})
    return modules


@_probe(list)
def disks(sysfs: Path = SYSFS) -> list[dict[str, Any]]:
    """Whole disks backed by a device (not loop, RAM, device-mapper or md devices): name, bytes, kind."""
    out = []
    for dev in sorted((sysfs / "block").iterdir()) if (sysfs / "block").is_dir() else ():
        if _NOT_DISKS.match(dev.name) or "/virtual/" in str(dev.resolve()):
            continue
        sectors = _int(_read(dev / "size"))
        if not sectors:
            continue
        if dev.name.startswith("nvme"):
            kind = "NVMe SSD"
        elif dev.name.startswith(("vd", "xvd")):
            kind = "virtual disk"
        else:
            kind = "HDD" if _read(dev / "queue/rotational") == "1" else "SSD"
        out.append({"name": dev.name, "bytes": sectors * 512, "kind": kind})  # sysfs counts 512-byte sectors
    return out


@_probe(list)
def network_interfaces(sysfs: Path = SYSFS) -> list[dict[str, Any]]:
    """Interfaces backed by a device (not loopback, bridges, veth, tunnels): kind, speed, driver, card."""
    out = []
    net = sysfs / "class/net"
    for iface in sorted(net.iterdir()) if net.is_dir() else ():
        real = iface.resolve()
        if "/virtual/" in str(real) or not (iface / "device").exists():
            continue
        speed = _int(_read(iface / "speed"))
        driver = (iface / "device/driver").resolve().name if (iface / "device/driver").exists() else None
        pci = next((p for p in reversed(real.parts) if _PCI.match(p)), None)
        out.append({"name": iface.name, "kind": _LINK_TYPES.get(_read(iface / "type") or "", "other"),
                    "speed_mbps": speed if speed and speed > 0 else None, "driver": driver,
                    # ports of one card share its PCI bus and device, differing in the function
                    "card": pci.rsplit(".", 1)[0] if pci else iface.name})
    return out
