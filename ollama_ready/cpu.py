"""What the host CPU offers: its architecture and vector extensions, as Ollama judges them.

Ollama up to v0.5.7 picks a CPU runner by one capability (Go ``GetCPUCapability``): ``avx2`` if the
CPU has AVX2, else ``avx`` if it has AVX, else ``none``. AVX512 was never used for that choice,
and ARM CPUs always rate ``none``. :func:`cpu_capability` reproduces that rule from
``/proc/cpuinfo``; :func:`cpu_flags` exposes every flag (``avx512f``, ``f16c``, ``fma``, ...) for
information, for example to explain which GGML CPU backend newer Ollama versions would load.

Both functions take the cpuinfo text as an optional argument; ``None`` reads ``/proc/cpuinfo``.
A host without that file (macOS, Windows) has no flags, so pass the text where it matters.
"""

from __future__ import annotations

import logging
import platform
import sys
from pathlib import Path
from typing import Literal

__all__ = [
    "CpuCapability",
    "NOTABLE_CPU_FLAGS",
    "cpu_capability",
    "cpu_flags",
    "host_platform",
    "notable_cpu_flags",
]

logger = logging.getLogger(__name__)

CpuCapability = Literal["avx2", "avx", "none"]

_CPUINFO_PATH = Path("/proc/cpuinfo")
_FLAG_KEYS = ("flags", "features")  # x86 says "flags", ARM says "Features"

NOTABLE_CPU_FLAGS = (
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
    "asimd",
    "sve",
)
"""Flags that decide which GGML CPU backend Ollama (v0.5.8+) can load, in display order."""

_GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv8l": "arm64",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
_GO_OS = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows"}


def _read_cpuinfo() -> str:
    try:
        return _CPUINFO_PATH.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        logger.debug("cannot read %s: %s", _CPUINFO_PATH, exc)
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """Return the CPU's feature flags, lower-cased.

    Args:
        cpuinfo: The text of ``/proc/cpuinfo``; the first ``flags`` (x86) or ``Features`` (ARM)
            line is used. Text without any ``key : value`` line is read as a bare,
            whitespace-separated flag list (``"avx avx2 fma"``). ``None`` reads
            ``/proc/cpuinfo``; when it does not exist the result is empty.
    """
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    saw_key_value = False
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        saw_key_value = True
        if key.strip().lower() in _FLAG_KEYS:
            return frozenset(value.lower().split())
    if saw_key_value:
        return frozenset()
    return frozenset(text.lower().split())


def cpu_capability(cpuinfo: str | None = None) -> CpuCapability:
    """Return Ollama's CPU capability: ``"avx2"``, ``"avx"`` or ``"none"``.

    ``cpuinfo`` is read as by :func:`cpu_flags`. The rule is Go's ``GetCPUCapability``: AVX2
    wins over AVX, AVX512 does not count, and a CPU without either (any ARM CPU) is ``none``.
    """
    flags = cpu_flags(cpuinfo)
    if "avx2" in flags:
        return "avx2"
    if "avx" in flags:
        return "avx"
    return "none"


def notable_cpu_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """Return the flags from :data:`NOTABLE_CPU_FLAGS` the CPU has, in that order."""
    flags = cpu_flags(cpuinfo)
    return tuple(flag for flag in NOTABLE_CPU_FLAGS if flag in flags)


def host_platform(system: str | None = None, machine: str | None = None) -> tuple[str, str]:
    """Return the host as Go names it, ``(goos, goarch)``, e.g. ``("linux", "amd64")``.

    Ollama's payload layout and its platform rules use these names. ``system`` accepts
    ``sys.platform`` values (``linux``, ``darwin``, ``win32``) or Go names; ``machine`` accepts
    ``platform.machine()`` values (``x86_64``, ``aarch64``, ``AMD64``) or Go names. ``None`` means
    this host. Unknown values are passed through lower-cased.
    """
    raw_system = (sys.platform if system is None else system).lower()
    raw_machine = (platform.machine() if machine is None else machine).lower()
    goos = _GO_OS.get(raw_system, "linux" if raw_system.startswith("linux") else raw_system)
    return goos, _GO_ARCH.get(raw_machine, raw_machine)
