"""GPU detection the way Ollama sees GPUs: NVIDIA through NVML, AMD through sysfs, Apple Metal.

:func:`detect_gpus` asks NVML (the ``nvidia-ml-py`` package, imported lazily: this is the only
module that imports ``pynvml``) for every NVIDIA GPU, applies ``CUDA_VISIBLE_DEVICES`` exactly as
CUDA does (see :func:`parse_cuda_visible_devices`), rejects GPUs below compute capability 5.0
with a reason, and gives each usable GPU the CUDA variant (``v11``/``v12``/``v13``/``jetpack*``)
that Ollama of the chosen :class:`CudaEra` would load (see :func:`cuda_variants`).

Absence is a value: a host without NVIDIA hardware, driver or library gets a :class:`GpuReport`
with no devices and a human ``reason``; NVML errors never raise. Each call initialises NVML once
and always shuts it down, under a module lock, so concurrent calls are safe.

:func:`detect_rocm` reads AMD GPUs from sysfs, :func:`detect_metal` describes the Apple Silicon
GPU, and :func:`detect_all` runs whichever apply to the host and merges them (for ``doctor``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ollama_ready._cuda_variant import (
    DEFAULT_CUDA_ERA,
    CudaEra,
    CudaVariantChoice,
    cuda_variants,
    jetpack_variant,
)
from ollama_ready._cuda_visible import CudaVisibleDevices, parse_cuda_visible_devices
from ollama_ready._gpuinfo import (
    CUDA_MINIMUM_COMPUTE,
    CUDA_MINIMUM_MEMORY,
    METAL_MINIMUM_MEMORY,
    ROCM_MINIMUM_MEMORY,
    GpuInfo,
    GpuReport,
)
from ollama_ready._rocm import ROCM_VISIBLE_DEVICE_VARIABLES, detect_rocm, rocm_supported_gfx
from ollama_ready.cpu import cpu_capability, cpu_flags, host_platform

__all__ = [
    "CUDA_MINIMUM_COMPUTE",
    "CUDA_MINIMUM_MEMORY",
    "DEFAULT_CUDA_ERA",
    "METAL_MINIMUM_MEMORY",
    "ROCM_MINIMUM_MEMORY",
    "ROCM_VISIBLE_DEVICE_VARIABLES",
    "CudaEra",
    "CudaVariantChoice",
    "CudaVisibleDevices",
    "GpuInfo",
    "GpuReport",
    "NvmlApi",
    "cpu_capability",
    "cpu_flags",
    "cuda_variants",
    "detect_all",
    "detect_gpus",
    "detect_metal",
    "detect_rocm",
    "parse_cuda_visible_devices",
    "rocm_supported_gfx",
]

logger = logging.getLogger(__name__)

_NVML_LOCK = threading.Lock()
_INDEX_ENTRY = re.compile(r"\s*\+?[0-9]")  # a CUDA_VISIBLE_DEVICES entry read as an index

# NVML return codes (nvml.h); compared by value so any faithful NVML binding works.
_NVML_ERROR_HINTS = {
    4: (
        "no permission to access the NVIDIA GPU device files (/dev/nvidia*): check the "
        "user's groups and the container's device access"
    ),
    8: "the GPU lacks external power: check its power cables",
    9: (
        "the NVIDIA kernel driver is not loaded: is there an NVIDIA GPU, and does `nvidia-smi` "
        "work? (try `sudo modprobe nvidia`)"
    ),
    10: "NVML timed out talking to the GPU",
    12: (
        "the NVML library (libnvidia-ml.so.1 / nvml.dll) was not found: no NVIDIA driver is "
        "installed, or this container was started without GPU access (docker run --gpus all, "
        "with the NVIDIA Container Toolkit)"
    ),
    14: "the GPU's infoROM is corrupted",
    15: "the GPU is lost (it fell off the bus or stopped responding): reboot to recover it",
    16: "the GPU requires a reset (`nvidia-smi -r`) or a reboot",
    17: "the operating system blocked access to the GPU",
    18: (
        "the NVIDIA kernel driver and its user-space library (NVML) have different versions, "
        "usually after a driver upgrade: reboot, or reload the nvidia kernel module"
    ),
}
_PYNVML_MISSING = (
    "the nvidia-ml-py package (module pynvml) is not installed: pip install nvidia-ml-py"
)


class NvmlApi(Protocol):
    """The part of ``pynvml`` that detection uses; :class:`~ollama_ready.testing.FakeNvml` too.

    A binding may also expose ``NVMLError`` (the base class of its errors, whose ``value`` is
    the NVML return code); without it every exception a call raises counts as an NVML error.
    """

    def nvmlInit(self) -> None: ...  # noqa: N802 - NVML's names
    def nvmlShutdown(self) -> None: ...  # noqa: N802
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...  # noqa: N802
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetHandleByIndex(self, index: int, /) -> Any: ...  # noqa: N802
    def nvmlDeviceGetUUID(self, handle: Any, /) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetName(self, handle: Any, /) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetMemoryInfo(self, handle: Any, /) -> Any: ...  # noqa: N802
    def nvmlDeviceGetCudaComputeCapability(self, handle: Any, /) -> tuple[int, int]: ...  # noqa: N802
    def nvmlDeviceGetPciInfo(self, handle: Any, /) -> Any: ...  # noqa: N802


@dataclass(frozen=True, slots=True)
class _NvmlDevice:
    index: int
    uuid: str | None = None
    name: str | None = None
    total: int = 0
    free: int = 0
    used: int = 0
    compute_capability: tuple[int, int] | None = None
    pci_bus_id: str | None = None
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class _NvmlSnapshot:
    devices: tuple[_NvmlDevice, ...] = ()
    driver_version: str | None = None
    cuda_version: int | None = None
    failure: str | None = None
    warnings: tuple[str, ...] = ()


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").rstrip("\0")
    return str(value)


def _explain(exc: BaseException) -> str:
    """Turn an NVML exception into one human sentence."""
    code = getattr(exc, "value", None)
    try:
        detail = str(exc) or type(exc).__name__
    except Exception:  # a binding's __str__ may itself call into a broken NVML
        detail = type(exc).__name__
    hint = _NVML_ERROR_HINTS.get(code) if isinstance(code, int) else None
    if hint is None:
        return f"NVML error: {detail}"
    return f"{hint} (NVML: {detail})"


def _error_types(nvml: object) -> tuple[type[BaseException], ...]:
    found = tuple(
        candidate
        for candidate in (
            getattr(nvml, "NVMLError", None),
            getattr(nvml, "NVMLLibraryMismatchError", None),
        )
        if isinstance(candidate, type) and issubclass(candidate, BaseException)
    )
    return found or (Exception,)


def _probe_nvml(nvml: NvmlApi) -> _NvmlSnapshot:
    """Read everything detection needs in one NVML session (init, queries, shutdown)."""
    errors = _error_types(nvml)
    with _NVML_LOCK:
        try:
            nvml.nvmlInit()
        except errors as exc:
            logger.debug("nvmlInit failed: %r", exc)
            return _NvmlSnapshot(failure=_explain(exc))
        try:
            return _query_session(nvml, errors)
        finally:
            try:
                nvml.nvmlShutdown()
            except errors as exc:
                logger.debug("nvmlShutdown failed: %r", exc)


def _query_session(nvml: NvmlApi, errors: tuple[type[BaseException], ...]) -> _NvmlSnapshot:
    warnings: list[str] = []
    driver_version: str | None = None
    cuda_version: int | None = None
    try:
        driver_version = _text(nvml.nvmlSystemGetDriverVersion())
    except errors as exc:
        warnings.append(f"NVIDIA driver version unknown: {_explain(exc)}")
    try:
        cuda_version = int(nvml.nvmlSystemGetCudaDriverVersion())
    except errors as exc:
        warnings.append(
            f"CUDA driver version unknown, so the CUDA variant assumes an old driver: "
            f"{_explain(exc)}"
        )
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except errors as exc:
        return _NvmlSnapshot(
            driver_version=driver_version,
            cuda_version=cuda_version,
            failure=f"cannot count NVIDIA GPUs: {_explain(exc)}",
            warnings=tuple(warnings),
        )
    return _NvmlSnapshot(
        devices=tuple(_query_device(nvml, index, errors) for index in range(count)),
        driver_version=driver_version,
        cuda_version=cuda_version,
        warnings=tuple(warnings),
    )


def _query_device(
    nvml: NvmlApi, index: int, errors: tuple[type[BaseException], ...]
) -> _NvmlDevice:
    uuid: str | None = None
    name: str | None = None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        name = _text(nvml.nvmlDeviceGetName(handle))
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    except errors as exc:
        logger.debug("NVML device %d: %r", index, exc)
        return _NvmlDevice(index=index, uuid=uuid, name=name, failure=_explain(exc))
    optional_errors: tuple[type[BaseException], ...] = (*errors, AttributeError)
    try:
        pci_bus_id: str | None = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
    except optional_errors as exc:
        logger.debug("NVML device %d has no PCI info: %r", index, exc)
        pci_bus_id = None
    return _NvmlDevice(
        index=index,
        uuid=uuid,
        name=name,
        total=int(memory.total),
        free=int(memory.free),
        used=int(memory.used),
        compute_capability=(int(major), int(minor)),
        pci_bus_id=pci_bus_id or None,
    )


def _cuda_driver_pair(version: int | None) -> tuple[int, int] | None:
    """Split NVML's CUDA driver version: 12040 is (12, 4), as ``cuDriverGetVersion``."""
    if version is None or version <= 0:
        return None
    return version // 1000, (version % 1000) // 10


def detect_gpus(
    nvml: NvmlApi | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    era: CudaEra | str = DEFAULT_CUDA_ERA,
    system: str | None = None,
    machine: str | None = None,
    tegra_release: str | None = None,
) -> GpuReport:
    """Detect NVIDIA GPUs through NVML as Ollama of ``era`` would use them.

    Args:
        nvml: An NVML binding with ``pynvml``'s function names; ``None`` imports ``pynvml``.
        environ: Where ``CUDA_VISIBLE_DEVICES``, ``CUDA_DEVICE_ORDER`` and ``JETSON_JETPACK``
            are read; ``None`` means ``os.environ``.
        era: The Ollama version range whose CUDA variant rule applies (:class:`CudaEra` or its
            value, default ``"0.4"``).
        system: The host's system for the Jetson rule (a ``sys.platform`` value or a Go
            name); ``None`` means this host.
        machine: The host's machine for the Jetson rule (a ``platform.machine()`` value or a
            Go name); ``None`` means this host.
        tegra_release: The text of ``/etc/nv_tegra_release``; ``None`` reads it on linux/arm64,
            ``""`` means there is none.

    Raises:
        ConfigError: ``era`` is not a known era. Nothing else raises: NVML problems become the
            report's ``reason`` (no devices) or ``unsupported`` entries (one bad GPU).
    """
    era = CudaEra.parse(era)
    env = os.environ if environ is None else environ
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return GpuReport(library="cuda", reason=_PYNVML_MISSING)
        nvml = pynvml
    snapshot = _probe_nvml(nvml)
    if snapshot.failure is not None:
        return GpuReport(
            library="cuda",
            driver_version=snapshot.driver_version,
            cuda_driver_version=_cuda_driver_pair(snapshot.cuda_version),
            reason=snapshot.failure,
            warnings=snapshot.warnings,
        )
    goos, goarch = host_platform(system, machine)
    jetpack, jetson_warnings = jetpack_variant(
        env, goos=goos, goarch=goarch, tegra_release=tegra_release
    )
    return _cuda_report(snapshot, env, era, jetpack, jetson_warnings)


def _cuda_report(
    snapshot: _NvmlSnapshot,
    env: Mapping[str, str],
    era: CudaEra,
    jetpack: str | None,
    jetson_warnings: tuple[str, ...],
) -> GpuReport:
    raw_devices = snapshot.devices
    visibility = parse_cuda_visible_devices(
        env.get("CUDA_VISIBLE_DEVICES"), [device.uuid for device in raw_devices]
    )
    warnings = [*snapshot.warnings, *visibility.notes, *jetson_warnings]
    warnings.extend(_visibility_warnings(visibility, raw_devices, env))
    driver = _cuda_driver_pair(snapshot.cuda_version)
    candidates = [
        _to_gpu_info(raw_devices[physical], logical, driver)
        for logical, physical in enumerate(visibility.indices)
    ]
    usable = [gpu for gpu in candidates if gpu.supported]
    unsupported = tuple(gpu for gpu in candidates if not gpu.supported)
    choice = cuda_variants(
        # a usable GPU always has its compute capability; the fallback only satisfies typing
        [gpu.compute_capability or CUDA_MINIMUM_COMPUTE for gpu in usable],
        driver or (0, 0),
        era=era,
        jetpack=jetpack,
    )
    devices = tuple(
        dataclasses.replace(gpu, variant=variant)
        for gpu, variant in zip(usable, choice.variants, strict=True)
    )
    warnings.extend(choice.warnings)
    return GpuReport(
        library="cuda",
        devices=devices,
        unsupported=unsupported,
        driver_version=snapshot.driver_version,
        cuda_driver_version=driver,
        reason=None if devices else _no_cuda_reason(raw_devices, visibility, unsupported),
        warnings=tuple(dict.fromkeys(warnings)),
        notes=choice.reasons,
    )


def _to_gpu_info(raw: _NvmlDevice, logical: int, driver: tuple[int, int] | None) -> GpuInfo:
    cc = raw.compute_capability
    reason = raw.failure
    if reason is None and cc is not None and cc < CUDA_MINIMUM_COMPUTE:
        minimum = ".".join(map(str, CUDA_MINIMUM_COMPUTE))
        reason = (
            f"CUDA GPU is too old: compute capability {cc[0]}.{cc[1]} is below the "
            f"minimum {minimum}"
        )
    return GpuInfo(
        library="cuda",
        index=logical,
        uuid=raw.uuid or str(raw.index),
        name=raw.name or "unknown NVIDIA GPU",
        total_memory=raw.total,
        free_memory=raw.free,
        used_memory=raw.used,
        compute=f"{cc[0]}.{cc[1]}" if cc is not None else "",
        compute_capability=cc,
        pci_bus_id=raw.pci_bus_id,
        driver_major=driver[0] if driver else 0,
        driver_minor=driver[1] if driver else 0,
        minimum_memory=CUDA_MINIMUM_MEMORY,
        supported=reason is None,
        unsupported_reason=reason,
        physical_index=raw.index,
    )


def _visibility_warnings(
    visibility: CudaVisibleDevices, raw_devices: Sequence[_NvmlDevice], env: Mapping[str, str]
) -> list[str]:
    if not visibility.restricted:
        return []
    warnings = []
    hidden = [raw for raw in raw_devices if raw.index not in visibility.indices]
    if hidden and visibility.indices:
        listed = ", ".join(
            f"{raw.index} ({raw.name or 'unknown'}, {raw.uuid or 'no UUID'})" for raw in hidden
        )
        warnings.append(f"CUDA_VISIBLE_DEVICES={visibility.value!r} hides NVIDIA GPU(s) {listed}")
    value = visibility.value or ""
    uses_indices = any(_INDEX_ENTRY.match(entry) for entry in value.split(","))
    models = {raw.name for raw in raw_devices}
    if uses_indices and len(models) > 1 and env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        warnings.append(
            "CUDA_VISIBLE_DEVICES uses indices on a box with different GPU models: indices here "
            "follow NVML (PCI bus) order, but CUDA numbers fastest-first unless "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID; use GPU UUIDs to be sure"
        )
    return warnings


def _no_cuda_reason(
    raw_devices: Sequence[_NvmlDevice],
    visibility: CudaVisibleDevices,
    unsupported: Sequence[GpuInfo],
) -> str:
    if not raw_devices:
        return "NVML is working but found no NVIDIA GPU"
    if not visibility.indices:
        count = len(raw_devices)
        why = f": {visibility.notes[0]}" if visibility.notes else ""
        return (
            f"CUDA_VISIBLE_DEVICES={visibility.value!r} hides all {count} NVIDIA "
            f"GPU{'s' if count > 1 else ''}{why}"
        )
    details = "; ".join(
        f"GPU {gpu.index} ({gpu.name}): {gpu.unsupported_reason}" for gpu in unsupported
    )
    return f"no usable NVIDIA GPU: {details}"


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def detect_metal(
    *,
    system: str | None = None,
    machine: str | None = None,
    recommended_max_working_set_size: int | None = None,
    system_memory: int | None = None,
) -> GpuReport:
    """Describe the Metal GPU of an Apple Silicon Mac, as Ollama v0.4 does.

    Ollama reports one device, ID ``"0"``, whose total memory is Metal's
    ``recommendedMaxWorkingSetSize`` and whose free memory equals its total (Ollama never
    measures it). Python cannot ask Metal without extra packages, so pass that figure as
    ``recommended_max_working_set_size``; otherwise the system memory is used (``system_memory``,
    or this host's), an upper bound that a note points out.

    Args:
        system: The host's system (a ``sys.platform`` value or a Go name); ``None`` means
            this host. Only darwin/arm64 has a Metal GPU for Ollama.
        machine: The host's machine (a ``platform.machine()`` value or a Go name); ``None``
            means this host.
        recommended_max_working_set_size: Bytes, from ``MTLDevice.recommendedMaxWorkingSetSize``.
        system_memory: Bytes of RAM; ``None`` asks the operating system.
    """
    goos, goarch = host_platform(system, machine)
    if goos != "darwin":
        return GpuReport(library="metal", reason="Metal is only available on macOS")
    if goarch != "arm64":
        return GpuReport(
            library="metal",
            reason=f"Ollama has no GPU support on Intel Macs (darwin/{goarch}): it uses the CPU",
        )
    notes: tuple[str, ...] = ()
    total = recommended_max_working_set_size
    if total is None:
        total = system_memory if system_memory is not None else _physical_memory()
        notes = (
            "Metal total memory is the system memory, an upper bound: Ollama uses "
            "recommendedMaxWorkingSetSize, which is lower",
        )
    if not total or total <= 0:
        return GpuReport(library="metal", reason="cannot tell how much memory Metal may use")
    device = GpuInfo(
        library="metal",
        index=0,
        uuid="0",
        name="Apple Silicon GPU (Metal)",
        total_memory=total,
        free_memory=total,
        used_memory=0,
        minimum_memory=METAL_MINIMUM_MEMORY,
    )
    return GpuReport(library="metal", devices=(device,), notes=notes)


def detect_all(
    nvml: NvmlApi | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    era: CudaEra | str = DEFAULT_CUDA_ERA,
    system: str | None = None,
    machine: str | None = None,
    tegra_release: str | None = None,
    sysfs_root: str | os.PathLike[str] | None = None,
    supported_gfx: Iterable[str] | None = None,
    kfd_device: str | os.PathLike[str] | None = None,
    recommended_max_working_set_size: int | None = None,
    system_memory: int | None = None,
    cpuinfo: str | None = None,
) -> GpuReport:
    """Run every detection that applies to the host and merge the results.

    macOS gets :func:`detect_metal`; Linux gets :func:`detect_gpus` then :func:`detect_rocm`;
    other systems get :func:`detect_gpus`. The merged report (``library="all"``) lists NVIDIA
    devices before AMD ones, as Ollama does, keeps each backend's report in ``backends``, and
    gives a ``reason`` naming each backend's own reason when nothing is usable. With an era up
    to v0.5, an x86-64 CPU without AVX adds a warning: those versions refuse GPUs on it.
    Arguments are passed to the detections they belong to; ``cpuinfo`` as in
    :func:`cpu_capability`.
    """
    era = CudaEra.parse(era)
    goos, goarch = host_platform(system, machine)
    if goos == "darwin":
        backends: tuple[GpuReport, ...] = (
            detect_metal(
                system=system,
                machine=machine,
                recommended_max_working_set_size=recommended_max_working_set_size,
                system_memory=system_memory,
            ),
        )
    else:
        cuda = detect_gpus(
            nvml, environ, era=era, system=system, machine=machine, tegra_release=tegra_release
        )
        backends = (cuda,)
        if goos == "linux":
            rocm = detect_rocm(
                sysfs_root, environ, supported_gfx=supported_gfx, kfd_device=kfd_device
            )
            backends = (cuda, rocm)
    devices = tuple(gpu for backend in backends for gpu in backend.devices)
    warnings = [warning for backend in backends for warning in backend.warnings]
    gated_era = era in (CudaEra.V0_3_7, CudaEra.V0_4)
    if devices and gated_era and goarch == "amd64" and cpu_capability(cpuinfo) == "none":
        warnings.append(
            "the CPU has no AVX: Ollama v0.4 skips GPU discovery entirely and v0.5.2-v0.5.7 "
            "refuse GPU runners on such CPUs, so these GPUs would not be used"
        )
    cuda_backend = next((b for b in backends if b.library == "cuda"), None)
    return GpuReport(
        library="all",
        devices=devices,
        unsupported=tuple(gpu for backend in backends for gpu in backend.unsupported),
        driver_version=next((b.driver_version for b in backends if b.driver_version), None),
        cuda_driver_version=cuda_backend.cuda_driver_version if cuda_backend else None,
        reason=None if devices else "; ".join(f"{b.library}: {b.reason}" for b in backends),
        warnings=tuple(warnings),
        notes=tuple(note for backend in backends for note in backend.notes),
        backends=backends,
    )
