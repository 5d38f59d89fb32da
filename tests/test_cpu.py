"""CPU capability and flags from /proc/cpuinfo text, and Go platform names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_ready.cpu import (
    NOTABLE_CPU_FLAGS,
    cpu_capability,
    cpu_flags,
    host_platform,
    notable_cpu_flags,
)

SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 ssse3 fma \
cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand avx2 bmi2 avx512f avx512dq \
avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi avx512_vbmi2 avx512_vnni amx_bf16 \
amx_tile amx_int8
bugs\t\t: spectre_v1 spectre_v2

processor\t: 1
flags\t\t: fpu sse sse2
"""

SANDY_BRIDGE = """\
processor\t: 0
model name\t: Intel(R) Core(TM) i7-2600K CPU @ 3.40GHz
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 popcnt aes xsave avx
"""

CORE2 = """\
processor\t: 0
model name\t: Intel(R) Core(TM)2 Duo CPU E8400 @ 3.00GHz
flags\t\t: fpu vme sse sse2 ssse3 sse4_1
"""

GRAVITON = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid sve
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize(
    ("cpuinfo", "capability"),
    [
        (SAPPHIRE_RAPIDS, "avx2"),
        (SANDY_BRIDGE, "avx"),
        (CORE2, "none"),
        (GRAVITON, "none"),
        ("avx avx2 fma", "avx2"),
        ("AVX", "avx"),
        ("avx512f avx", "avx"),
        ("", "none"),
        ("model name\t: mystery CPU\n", "none"),
    ],
    ids=[
        "sapphire-rapids",
        "sandy-bridge",
        "core2",
        "graviton-arm",
        "bare",
        "upper",
        "avx512",
        "empty",
        "no-flags",
    ],
)
def test_cpu_capability(cpuinfo: str, capability: str) -> None:
    assert cpu_capability(cpuinfo) == capability


def test_only_the_first_flags_line_counts() -> None:
    flags = cpu_flags(SAPPHIRE_RAPIDS)
    assert {"avx512f", "amx_tile", "f16c", "fma"} <= flags
    assert "spectre_v1" not in flags  # the "bugs" line is not flags


def test_arm_features_line() -> None:
    flags = cpu_flags(GRAVITON)
    assert {"asimd", "sve", "fp"} <= flags
    assert notable_cpu_flags(GRAVITON) == ("asimd", "sve")


def test_notable_flags_keep_their_order() -> None:
    assert notable_cpu_flags(SAPPHIRE_RAPIDS) == (
        "avx",
        "avx2",
        "f16c",
        "fma",
        "avx_vnni",
        "avx512f",
        "avx512bw",
        "avx512cd",
        "avx512dq",
        "avx512vl",
        "avx512vbmi",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    )
    assert set(notable_cpu_flags(SANDY_BRIDGE)) == {"avx"}
    assert len(set(NOTABLE_CPU_FLAGS)) == len(NOTABLE_CPU_FLAGS)


def test_none_reads_proc_cpuinfo() -> None:
    path = Path("/proc/cpuinfo")
    if not path.exists():
        assert cpu_flags() == frozenset()
        assert cpu_capability() == "none"
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    assert cpu_flags() == cpu_flags(text)
    assert cpu_capability() == cpu_capability(text)


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("linux", "x86_64", ("linux", "amd64")),
        ("linux", "aarch64", ("linux", "arm64")),
        ("darwin", "arm64", ("darwin", "arm64")),
        ("darwin", "x86_64", ("darwin", "amd64")),
        ("win32", "AMD64", ("windows", "amd64")),
        ("windows", "ARM64", ("windows", "arm64")),
        ("linux2", "ppc64le", ("linux", "ppc64le")),
        ("freebsd14", "riscv64", ("freebsd14", "riscv64")),
    ],
)
def test_host_platform(system: str, machine: str, expected: tuple[str, str]) -> None:
    assert host_platform(system, machine) == expected


def test_host_platform_of_this_host() -> None:
    goos, goarch = host_platform()
    assert goos in {"linux", "darwin", "windows"}
    assert goarch
