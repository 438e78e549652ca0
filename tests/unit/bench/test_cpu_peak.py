"""The CPU peak the inference bench reports against: derived from /proc/cpuinfo, table-driven."""

from __future__ import annotations

import pytest

from tests.bench.cpu_peak import CPUINFO, peak_from_cpuinfo, this_cpu_peak


def cpuinfo(
    n: int, *, vendor: str, family: int, mhz: float, flags: str, threads_per_core: int = 1
) -> str:
    blocks = []
    for cpu in range(n):
        blocks.append(
            "\n".join(
                [
                    f"processor\t: {cpu}",
                    f"vendor_id\t: {vendor}",
                    f"cpu family\t: {family}",
                    f"cpu MHz\t\t: {mhz}",
                    "physical id\t: 0",
                    f"core id\t\t: {cpu // threads_per_core}",
                    f"flags\t\t: fpu sse sse2 {flags}",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


@pytest.mark.parametrize(
    ("text", "gflop", "fma_units", "lanes", "cores"),
    [
        # this workplace's VM: AMD EPYC family 26 (Zen 5), 2 cores, AVX-512
        (cpuinfo(2, vendor="AuthenticAMD", family=26, mhz=2596.122, flags="fma avx avx2 avx512f avx512_bf16"),
         332.3, 2, 16, 2),
        # Zen 4: 512-bit ops on 256-bit pipes count as one 512-bit FMA per cycle
        (cpuinfo(4, vendor="AuthenticAMD", family=25, mhz=3000.0, flags="fma avx avx2 avx512f"), 384.0, 1, 16, 4),
        # Zen 3: AVX2 only, two 256-bit FMA pipes
        (cpuinfo(2, vendor="AuthenticAMD", family=25, mhz=2000.0, flags="fma avx avx2"), 128.0, 2, 8, 2),
        # Intel with SMT: 4 logical CPUs on 2 cores share the FMA units
        (cpuinfo(4, vendor="GenuineIntel", family=6, mhz=2500.0, flags="fma avx avx2 avx512f", threads_per_core=2),
         320.0, 2, 16, 2),
        # no FMA, SSE only
        (cpuinfo(1, vendor="GenuineIntel", family=6, mhz=1000.0, flags=""), 8.0, 1, 4, 1),
    ],
)
def test_peak_from_cpuinfo(text: str, gflop: float, fma_units: int, lanes: int, cores: int) -> None:
    peak = peak_from_cpuinfo(text)
    assert (peak.gflop_per_s, peak.fma_units, peak.lanes, peak.cores) == (gflop, fma_units, lanes, cores)
    assert f"{cores} cores" in peak.basis and "FMA" in peak.basis


def test_peak_counts_only_the_cpus_this_process_may_use() -> None:
    text = cpuinfo(8, vendor="AuthenticAMD", family=26, mhz=2000.0, flags="fma avx avx2 avx512f")
    assert peak_from_cpuinfo(text, {0, 1}).cores == 2
    assert peak_from_cpuinfo(text).cores == 8


@pytest.mark.parametrize("text", ["", "processor\t: 0\nvendor_id\t: AuthenticAMD\n"])
def test_unusable_cpuinfo_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="cpuinfo"):
        peak_from_cpuinfo(text)


@pytest.mark.skipif(not CPUINFO.is_file(), reason="no /proc/cpuinfo")
def test_this_machine_has_a_positive_peak() -> None:
    peak = this_cpu_peak()
    assert peak is not None and peak.gflop_per_s > 0 and peak.cores >= 1
