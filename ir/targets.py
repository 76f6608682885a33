"""Built-in targets: `ascend910` from public spec sheets and `cpu` detected from this machine.

Neither is calibrated: latencies and bandwidths are spec-sheet or typical values, recorded with their source,
and the cost model derives an uncalibrated preset profile from them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from embmap.ir.errors import SpecError
from embmap.ir.spec import MemorySpec, TargetSpec, TLBSpec

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def ascend910() -> TargetSpec:
    return TargetSpec(
        name="ascend910",
        description="Huawei Ascend 910: 32 Da Vinci AI cores, per-core L1 buffer and Unified Buffer, shared L2, HBM2",
        cores=32,
        local=MemorySpec(name="L1", capacity_bytes=1 * MiB, bandwidth_bytes_per_s=128e9, latency_s=60e-9),
        scratch=MemorySpec(name="UB", capacity_bytes=256 * KiB, bandwidth_bytes_per_s=256e9, latency_s=5e-9),
        shared_cache=MemorySpec(name="L2", capacity_bytes=32 * MiB, bandwidth_bytes_per_s=2.4e12, latency_s=250e-9),
        main=MemorySpec(name="HBM", capacity_bytes=32 * GiB, bandwidth_bytes_per_s=1.2e12, latency_s=600e-9),
        calibrated=False,
        source=(
            "core count, L1 1 MiB, UB 256 KiB, 32 MiB L2, 32 GiB HBM2 at 1.2 TB/s: Huawei Ascend 910 public "
            "material (Hot Chips 31, 2019; Atlas 300T datasheet); per-core L1/UB bandwidths (128/256 B per "
            "cycle at 1 GHz), L2 bandwidth and all latencies are assumptions, to be calibrated"
        ),
    )


THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGE_BYTES = 2 * MiB


def cpu(
    sysfs: Path = Path("/sys/devices/system/cpu"),
    meminfo: Path = Path("/proc/meminfo"),
    cpuinfo: Path = Path("/proc/cpuinfo"),
    thp: Path = THP_SETTING,
) -> TargetSpec:
    """This machine: usable cores, L2 as the local buffer, L1d as the scratchpad, L3 and DRAM shared."""
    caches = _read_caches(sysfs / "cpu0" / "cache")
    cores = len(usable_cpus())
    l1d = caches.get((1, "Data"), 32 * KiB)
    l2 = caches.get((2, "Unified"), 512 * KiB)
    l3 = caches.get((3, "Unified"))
    return TargetSpec(
        name="cpu",
        description=f"this machine: {cores} cores, L1d {l1d // KiB} KiB and L2 {l2 // KiB} KiB per core"
        + (f", {l3 // MiB} MiB shared L3" if l3 else ""),
        cores=cores,
        local=MemorySpec(name="L2", capacity_bytes=l2, bandwidth_bytes_per_s=64e9, latency_s=4e-9),
        scratch=MemorySpec(name="L1d", capacity_bytes=l1d, bandwidth_bytes_per_s=128e9, latency_s=1.2e-9),
        shared_cache=(
            MemorySpec(name="L3", capacity_bytes=l3, bandwidth_bytes_per_s=32e9 * cores, latency_s=15e-9)
            if l3
            else None
        ),
        main=MemorySpec(
            name="DRAM",
            capacity_bytes=meminfo_bytes("MemTotal", meminfo) or 8 * GiB,
            bandwidth_bytes_per_s=20e9,
            latency_s=90e-9,
        ),
        tlb=_read_tlb(cpuinfo, thp),
        local_is_cache=True,
        calibrated=False,
        source=(
            "cores from sched_getaffinity, cache sizes from sysfs, memory and TLB size from /proc; bandwidths and "
            "latencies are typical for a current x86 server core and are assumptions until calibrated"
        ),
    )


def _read_tlb(cpuinfo: Path, thp: Path = THP_SETTING) -> TLBSpec:
    """The per-core TLB as /proc/cpuinfo states it (e.g. `TLB size : 2560 4K pages`); 1,536 4K pages (a
    common second-level TLB) where it does not. Where the kernel grants transparent huge pages on request
    (`always` or `madvise`), the runtime holds its tables on 2 MiB pages (`runtime.data.huge_page_array`),
    and the TLB's entries translate those instead."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    match = re.search(r"^TLB size\s*:\s*(\d+)\s+(\d+)K pages", text, re.MULTILINE)
    entries, page = (
        (int(match.group(1)), int(match.group(2)) * KiB) if match and int(match.group(1)) > 0 else (1536, 4 * KiB)
    )
    return TLBSpec(entries=entries, page_bytes=HUGE_PAGE_BYTES if huge_pages_granted(thp) else page)


def huge_pages_granted(thp: Path = THP_SETTING) -> bool:
    """Whether transparent huge pages are granted to memory that asks for them (`[always]` or `[madvise]`)."""
    try:
        setting = thp.read_text()
    except OSError:
        return False
    return "[always]" in setting or "[madvise]" in setting


def _read_caches(cache_dir: Path) -> dict[tuple[int, str], int]:
    found: dict[tuple[int, str], int] = {}
    for index in sorted(cache_dir.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            found[(level, kind)] = _parse_size((index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
    return found


def _parse_size(text: str) -> int:
    units = {"K": KiB, "M": MiB, "G": GiB}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def meminfo_bytes(field: str, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """A /proc/meminfo field (e.g. MemTotal, MemAvailable) in bytes, or None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


BUILTIN_TARGETS: dict[str, Callable[[], TargetSpec]] = {"ascend910": ascend910, "cpu": cpu}


def builtin_target(name: str) -> TargetSpec:
    if name not in BUILTIN_TARGETS:
        raise SpecError(
            "target", f"unknown target {name!r}", f"use one of {', '.join(BUILTIN_TARGETS)} or a target file path"
        )
    return BUILTIN_TARGETS[name]()
