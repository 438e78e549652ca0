"""This CPU's fp32 peak, for reporting a benchmark's GFLOP/s as a fraction of what the cores can do.

peak = physical cores x GHz x FMA units per core x fp32 lanes per FMA x 2 FLOP per FMA, read from
``/proc/cpuinfo``: cores are the distinct (physical id, core id) pairs among the CPUs this process may run
on, GHz is the reported ``cpu MHz`` (under a hypervisor the nominal clock: boost is not visible, so the real
peak can be higher), lanes follow the widest vector flag (avx512f 16, avx/avx2 8, sse 4), and the FMA units
per core come from the vendor and family (a small table, stated in ``basis``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuPeak:
    """An fp32 peak and how it was derived."""

    gflop_per_s: float
    cores: int
    ghz: float
    fma_units: int
    lanes: int
    basis: str


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """One dict of ``key: value`` per ``processor`` block."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return [block for block in blocks if "processor" in block]


def fma_units_per_core(vendor: str, family: int, flags: set[str]) -> tuple[int, str]:
    """FMA instructions of the widest width issued per cycle per core, and why."""
    if "fma" not in flags:
        return 1, "no FMA flag: one multiply-add pair per cycle assumed"
    avx512 = "avx512f" in flags
    if vendor == "AuthenticAMD":
        if family >= 26:
            return 2, f"AMD family {family} (Zen 5): two FMA pipes of full width"
        if family == 25:
            if avx512:
                return 1, "AMD family 25 (Zen 4): 512-bit FMA double-pumped on two 256-bit pipes"
            return 2, "AMD family 25 (Zen 3): two 256-bit FMA pipes"
        if family == 23:
            return 2, "AMD family 23 (Zen/Zen 2): two FMA pipes (Zen 1 at 128 bits each: overstated)"
        return 1, f"AMD family {family}: one FMA pipe assumed"
    if vendor == "GenuineIntel":
        if avx512:
            return 2, "Intel with AVX-512: two 512-bit FMA ports (Xeon Gold/Platinum; some parts have one)"
        return 2, "Intel with AVX2: two 256-bit FMA ports"
    return 1, f"vendor {vendor or 'unknown'}: one FMA unit assumed"


def peak_from_cpuinfo(text: str, allowed_cpus: set[int] | None = None) -> CpuPeak:
    """The fp32 peak of the CPUs in ``allowed_cpus`` (all when None) described by a /proc/cpuinfo text."""
    processors = parse_cpuinfo(text)
    if allowed_cpus is not None:
        processors = [p for p in processors if int(p["processor"]) in allowed_cpus]
    if not processors:
        raise ValueError("no processor entries in cpuinfo")
    first = processors[0]
    cores = len({(p.get("physical id", "0"), p.get("core id", p["processor"])) for p in processors})
    try:
        ghz = float(first["cpu MHz"]) / 1000.0
    except (KeyError, ValueError) as error:
        raise ValueError("cpuinfo has no usable 'cpu MHz'") from error
    flags = set(first.get("flags", "").split())
    lanes = 16 if "avx512f" in flags else 8 if ("avx2" in flags or "avx" in flags) else 4
    vendor = first.get("vendor_id", "")
    family = int(first.get("cpu family", "0") or 0)
    fma_units, why = fma_units_per_core(vendor, family, flags)
    gflop = cores * ghz * fma_units * lanes * 2
    basis = (
        f"{cores} cores x {ghz:.3f} GHz (cpu MHz in /proc/cpuinfo; boost not visible) x {fma_units} FMA "
        f"units ({why}) x {lanes} fp32 lanes ({'avx512f' if lanes == 16 else 'avx' if lanes == 8 else 'sse'}) "
        f"x 2 FLOP per FMA"
    )
    return CpuPeak(round(gflop, 1), cores, round(ghz, 3), fma_units, lanes, basis)


def this_cpu_peak() -> CpuPeak | None:
    """The peak of the CPUs this process may use, or None where /proc/cpuinfo is missing or unreadable."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        return peak_from_cpuinfo(text, allowed)
    except (OSError, ValueError):
        return None
