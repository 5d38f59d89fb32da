"""Which CUDA build (``cuda_v11``, ``cuda_v12``, ``cuda_v13``, ``cuda_jetpack6``) Ollama picks.

Ollama's ``cudaVariant`` rule changed with its releases, so the era is a parameter
(:class:`CudaEra`). DriverMajor/Minor below is the *CUDA driver API* version (``12.4``), not the
NVIDIA driver branch (``550``); CC is the compute capability.

=========  ======================  ==============================================================
era        Ollama versions          rule
=========  ======================  ==============================================================
0.3.7      v0.3.7 - v0.3.9         ``v11`` if CC major < 6 or DriverMajor < 12, else ``v12``
0.4        v0.3.10 - v0.5.12       ``v11`` if CC major < 6, DriverMajor < 12 or the driver is
                                   exactly 12.0, else ``v12`` (the default: seed 001's era)
0.5.13     v0.5.13 - v0.11.10      ``v11`` if DriverMajor < 12 or the driver is 12.0, else
                                   ``v12`` (CUDA 12 builds include sm_50); from v0.9.3 no
                                   ``cuda_v11`` ships and Ollama falls back to ``cuda_v12``
0.11.11    v0.11.11                ``v12`` if DriverMajor < 13 (a warning when CC >= 7.5), else
                                   ``v13``
0.12       v0.12.0 - v0.12.3       one variant for all GPUs: ``v12`` if any GPU has CC < 7.5;
                                   else ``v12`` with a warning if DriverMajor < 13; else ``v13``
=========  ======================  ==============================================================

Before any of these, on linux/arm64 (every era): ``JETSON_JETPACK=x.y.z`` selects ``jetpack<x>``;
otherwise ``/etc/nv_tegra_release`` naming L4T R35 selects ``jetpack5`` and R36 ``jetpack6``.
From v0.12.4 on Ollama probes every ``lib/ollama/cuda_*`` directory instead of applying a rule,
so there is no era for it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ollama_ready.errors import ConfigError

__all__ = [
    "DEFAULT_CUDA_ERA",
    "CudaEra",
    "CudaVariantChoice",
    "cuda_variants",
    "jetpack_variant",
]

logger = logging.getLogger(__name__)

_TEGRA_RELEASE_PATH = Path("/etc/nv_tegra_release")
_L4T_RELEASE = re.compile(r" R(\d+) ")
_L4T_TO_JETPACK = {35: "jetpack5", 36: "jetpack6"}
_TURING = (7, 5)


class CudaEra(str, Enum):
    """Name a range of Ollama versions that share one CUDA variant rule."""

    V0_3_7 = "0.3.7"
    V0_4 = "0.4"
    V0_5_13 = "0.5.13"
    V0_11_11 = "0.11.11"
    V0_12 = "0.12"

    def __str__(self) -> str:
        return self.value

    @property
    def versions(self) -> str:
        """Return the Ollama versions this era covers, e.g. ``"v0.3.10-v0.5.12"``."""
        return _ERA_VERSIONS[self]

    @classmethod
    def parse(cls, value: CudaEra | str) -> CudaEra:
        """Return the era named by ``value``; raise :class:`ConfigError` listing the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(f"{era.value!r} ({era.versions})" for era in cls)
            raise ConfigError(f"unknown CUDA era {value!r}; choose one of {choices}") from None

    @classmethod
    def for_version(cls, version: str) -> CudaEra:
        """Return the era whose rule an Ollama ``version`` (``"0.5.7"``, ``"v0.12.1"``) applies.

        Raises:
            ConfigError: The version is not a version, or predates v0.3.7 (no CUDA variant),
                or is v0.12.4 or later (no rule: Ollama probes its CUDA libraries instead).
        """
        try:
            parsed = Version(version.removeprefix("v"))
        except InvalidVersion:
            raise ConfigError(f"{version!r} is not an Ollama version") from None
        release = Version(parsed.base_version)
        if release < Version("0.3.7") or release >= Version("0.12.4"):
            raise ConfigError(
                f"Ollama {version} has no CUDA variant rule: before v0.3.7 there is a single "
                "CUDA build, and from v0.12.4 Ollama probes every lib/ollama/cuda_* directory"
            )
        era = cls.V0_3_7
        for floor, candidate in _ERA_FLOORS:
            if release >= Version(floor):
                era = candidate
        return era


_ERA_VERSIONS = {
    CudaEra.V0_3_7: "v0.3.7-v0.3.9",
    CudaEra.V0_4: "v0.3.10-v0.5.12",
    CudaEra.V0_5_13: "v0.5.13-v0.11.10",
    CudaEra.V0_11_11: "v0.11.11",
    CudaEra.V0_12: "v0.12.0-v0.12.3",
}
_ERA_FLOORS = (
    ("0.3.10", CudaEra.V0_4),
    ("0.5.13", CudaEra.V0_5_13),
    ("0.11.11", CudaEra.V0_11_11),
    ("0.12.0", CudaEra.V0_12),
)

DEFAULT_CUDA_ERA = CudaEra.V0_4
"""Seed 001's era (Ollama v0.4), the default everywhere an era is accepted."""


@dataclass(frozen=True, slots=True)
class CudaVariantChoice:
    """Hold the variant chosen for each GPU, with the reasons and any warnings.

    Attributes:
        variants: One variant per GPU, in the order the GPUs were given.
        reasons: Human sentences explaining the choice (one per GPU, or one for all).
        warnings: Things Ollama itself would warn about (an old driver, a missing build).
    """

    variants: tuple[str, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def _fmt(pair: tuple[int, int]) -> str:
    return f"{pair[0]}.{pair[1]}"


def cuda_variants(
    compute_capabilities: Sequence[tuple[int, int]],
    driver: tuple[int, int],
    *,
    era: CudaEra | str = DEFAULT_CUDA_ERA,
    jetpack: str | None = None,
) -> CudaVariantChoice:
    """Return the CUDA variant Ollama of ``era`` picks for each GPU.

    Args:
        compute_capabilities: ``(major, minor)`` of each supported GPU, in Ollama's order
            (the first one matters for the v0.12 rule).
        driver: The CUDA driver API version ``(major, minor)``; ``(0, 0)`` when unknown.
        era: A :class:`CudaEra` or its value; unknown values raise :class:`ConfigError`.
        jetpack: A Jetson variant (see :func:`jetpack_variant`), which wins over every rule.
    """
    era = CudaEra.parse(era)
    count = len(compute_capabilities)
    if jetpack is not None:
        reason = f"Jetson: the {jetpack} build is used on every Ollama version since v0.3.7"
        return CudaVariantChoice((jetpack,) * count, (reason,) if count else ())
    if era is CudaEra.V0_12:
        return _lowest_common_variant(compute_capabilities, driver)
    picks = [_per_gpu_variant(era, cc, driver) for cc in compute_capabilities]
    warnings = tuple(dict.fromkeys(warning for _, _, warning in picks if warning))
    return CudaVariantChoice(
        tuple(variant for variant, _, _ in picks),
        tuple(reason for _, reason, _ in picks),
        warnings,
    )


def _per_gpu_variant(
    era: CudaEra, cc: tuple[int, int], driver: tuple[int, int]
) -> tuple[str, str, str | None]:
    prefix = f"Ollama {era.versions} rule, CC {_fmt(cc)}, CUDA driver {_fmt(driver)}"
    old_driver = driver[0] < 12 or driver == (12, 0)
    if era is CudaEra.V0_3_7:
        if cc[0] < 6 or driver[0] < 12:
            return "v11", f"{prefix}: v11 (CC major below 6 or driver below 12)", None
        return "v12", f"{prefix}: v12", None
    if era is CudaEra.V0_4:
        if cc[0] < 6 or old_driver:
            why = "CC major below 6, driver below 12, or driver exactly 12.0"
            return "v11", f"{prefix}: v11 ({why})", None
        return "v12", f"{prefix}: v12", None
    if era is CudaEra.V0_5_13:
        if old_driver:
            warning = (
                f"old CUDA driver {_fmt(driver)}: Ollama v0.9.3 and later ship no cuda_v11 "
                "build and fall back to cuda_v12; upgrade the NVIDIA driver"
            )
            return "v11", f"{prefix}: v11 (driver below 12, or exactly 12.0)", warning
        return "v12", f"{prefix}: v12", None
    if driver[0] < 13:
        upgrade = (
            f"old CUDA driver {_fmt(driver)}: a CUDA 13 driver would let Ollama use the "
            "cuda_v13 build on this GPU"
        )
        return "v12", f"{prefix}: v12 (driver below 13)", upgrade if cc >= _TURING else None
    return "v13", f"{prefix}: v13", None


def _lowest_common_variant(
    compute_capabilities: Sequence[tuple[int, int]], driver: tuple[int, int]
) -> CudaVariantChoice:
    count = len(compute_capabilities)
    if not count:
        return CudaVariantChoice((), ())
    prefix = f"Ollama {CudaEra.V0_12.versions} rule (one variant for all GPUs)"
    old = [index for index, cc in enumerate(compute_capabilities) if cc < _TURING]
    if old:
        ccs = ", ".join(f"GPU {i} CC {_fmt(compute_capabilities[i])}" for i in old)
        return CudaVariantChoice(("v12",) * count, (f"{prefix}: v12 ({ccs} below 7.5)",))
    if driver[0] < 13:
        warning = (
            f"old CUDA driver {_fmt(driver)}: a CUDA 13 driver would let Ollama use the "
            "cuda_v13 build"
        )
        reason = f"{prefix}: v12 (CUDA driver {_fmt(driver)} below 13)"
        return CudaVariantChoice(("v12",) * count, (reason,), (warning,))
    reason = f"{prefix}: v13 (every GPU CC 7.5+, CUDA driver {_fmt(driver)})"
    return CudaVariantChoice(("v13",) * count, (reason,))


def jetpack_variant(
    environ: Mapping[str, str],
    *,
    goos: str,
    goarch: str,
    tegra_release: str | None = None,
) -> tuple[str | None, tuple[str, ...]]:
    """Return the Jetson variant (``jetpack5``/``jetpack6``) or ``None``, and any warnings.

    Only linux/arm64 is considered. ``JETSON_JETPACK=x.y.z`` gives ``jetpack<x>``; otherwise the
    text of ``/etc/nv_tegra_release`` (``tegra_release``; ``None`` reads the file, ``""`` means
    there is none) names the L4T release: R35 is JetPack 5, R36 JetPack 6, others are reported
    as unsupported and the ordinary rule applies.
    """
    if (goos, goarch) != ("linux", "arm64"):
        return None, ()
    jetpack = environ.get("JETSON_JETPACK", "").strip()
    if jetpack:
        major = jetpack.split(".", 1)[0]
        if major.isdigit():
            return f"jetpack{int(major)}", ()
        return None, (f"JETSON_JETPACK={jetpack!r} is not a JetPack version; it is ignored",)
    text = _read_tegra_release() if tegra_release is None else tegra_release
    if not text:
        return None, ()
    match = _L4T_RELEASE.search(text)
    variant = _L4T_TO_JETPACK.get(int(match.group(1))) if match else None
    if variant is not None:
        return variant, ()
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return None, (f"unsupported L4T version in /etc/nv_tegra_release: {first_line!r}",)


def _read_tegra_release() -> str:
    try:
        return _TEGRA_RELEASE_PATH.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        logger.debug("no %s: %s", _TEGRA_RELEASE_PATH, exc)
        return ""
