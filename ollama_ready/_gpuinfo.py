"""The values GPU detection returns: a :class:`GpuInfo` per device, a :class:`GpuReport` per call.

These mirror Ollama's ``GpuInfo`` (``discover/types.go``, v0.4.0 to v0.12.3);
:meth:`GpuInfo.to_dict` uses Ollama's JSON field names where Ollama has them. The public home
of both classes is :mod:`ollama_ready.gpu`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CUDA_MINIMUM_COMPUTE",
    "CUDA_MINIMUM_MEMORY",
    "GiB",
    "GpuInfo",
    "GpuReport",
    "METAL_MINIMUM_MEMORY",
    "MiB",
    "ROCM_MINIMUM_MEMORY",
    "format_bytes",
]

MiB = 1024**2
GiB = 1024**3

CUDA_MINIMUM_MEMORY = 457 * MiB
"""Memory Ollama reserves on every CUDA GPU (``cudaMinimumMemory``)."""
ROCM_MINIMUM_MEMORY = 457 * MiB
"""Memory Ollama reserves on every ROCm GPU (``rocmMinimumMemory``)."""
METAL_MINIMUM_MEMORY = 512 * MiB
"""Memory Ollama reserves on the Metal GPU (``metalMinimumMemory``)."""
CUDA_MINIMUM_COMPUTE = (5, 0)
"""The oldest CUDA compute capability Ollama supports (``CudaComputeMajorMin``/``MinorMin``)."""


def format_bytes(size: int) -> str:
    """Return ``size`` in binary units with one decimal (``"79.6 GiB"``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuInfo:
    """Describe one GPU as Ollama would see it.

    Attributes:
        library: ``"cuda"``, ``"rocm"`` or ``"metal"``.
        index: The device ordinal: for CUDA the position after ``CUDA_VISIBLE_DEVICES`` is
            applied (the index a CUDA program sees); for ROCm the GPU's ordinal among the kfd
            GPU nodes (what Ollama matches ``ROCR_VISIBLE_DEVICES`` against); ``0`` for Metal.
        uuid: The device ID Ollama uses (``gpu_id``): ``GPU-…`` for CUDA, ``GPU-%016x`` of the
            ``unique_id`` for ROCm, or the decimal index when the device has no UUID.
        name: The marketing name (``NVIDIA H100 80GB HBM3``); for ROCm ``vendor:device`` in hex.
        total_memory: Bytes in all (for CUDA from NVML, like the two below).
        free_memory: Bytes free; NVML's figure can differ slightly from ``cuMemGetInfo``.
        used_memory: Bytes in use.
        compute: ``"9.0"`` for CUDA, ``"gfx90a"`` for ROCm, ``""`` for Metal.
        compute_capability: ``(major, minor)`` for CUDA, ``None`` otherwise.
        pci_bus_id: ``00000000:19:00.0`` style, when known.
        variant: The build variant Ollama would pick (``v11``, ``v12``, ``v13``, ``jetpack6``);
            ``""`` for ROCm, Metal and unsupported devices.
        driver_major: The major part of the driver version: of the CUDA driver API version
            (12.4) for CUDA, of the amdgpu module version for ROCm; ``0`` when unknown.
        driver_minor: Its minor part; ``0`` when unknown.
        minimum_memory: Bytes Ollama keeps free on this GPU (457 MiB CUDA/ROCm, 512 MiB Metal).
        supported: ``False`` when Ollama would not use the device; then ``unsupported_reason``
            says why in one human sentence.
        physical_index: The index before any visibility variable was applied (NVML's index for
            CUDA), or ``None`` where it is the same as ``index``.
    """

    library: str
    index: int
    uuid: str
    name: str
    total_memory: int
    free_memory: int
    used_memory: int
    compute: str = ""
    compute_capability: tuple[int, int] | None = None
    pci_bus_id: str | None = None
    variant: str = ""
    driver_major: int = 0
    driver_minor: int = 0
    minimum_memory: int = 0
    supported: bool = True
    unsupported_reason: str | None = None
    physical_index: int | None = None

    @property
    def runner_name(self) -> str:
        """Return Ollama's runner name: the library, plus ``_<variant>`` when there is one."""
        return f"{self.library}_{self.variant}" if self.variant else self.library

    @property
    def usable_memory(self) -> int:
        """Return the free bytes left after Ollama's per-GPU minimum (never negative)."""
        return max(0, self.free_memory - self.minimum_memory)

    def describe(self) -> str:
        """Return one human line: index, name, compute, memory and, if unusable, why."""
        compute = f", compute {self.compute}" if self.compute else ""
        line = (
            f"{self.library} GPU {self.index}: {self.name} ({self.uuid}{compute}), "
            f"{format_bytes(self.free_memory)} free of {format_bytes(self.total_memory)}"
        )
        if self.variant:
            line += f", runner {self.runner_name}"
        if not self.supported:
            line += f": unsupported: {self.unsupported_reason}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping using Ollama's field names where it has them."""
        return {
            "library": self.library,
            "variant": self.variant,
            "index": self.index,
            "gpu_id": self.uuid,
            "name": self.name,
            "total_memory": self.total_memory,
            "free_memory": self.free_memory,
            "used_memory": self.used_memory,
            "minimum_memory": self.minimum_memory,
            "compute": self.compute,
            "compute_capability": (
                list(self.compute_capability) if self.compute_capability is not None else None
            ),
            "pci_bus_id": self.pci_bus_id,
            "driver_major": self.driver_major,
            "driver_minor": self.driver_minor,
            "supported": self.supported,
            "unsupported_reason": self.unsupported_reason,
            "physical_index": self.physical_index,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuReport:
    """Hold the result of one detection: usable devices, unusable ones, and why.

    Attributes:
        library: ``"cuda"``, ``"rocm"``, ``"metal"``, or ``"all"`` for :func:`detect_all`.
        devices: The GPUs Ollama would use, in the order it would see them.
        unsupported: GPUs that were found but that Ollama would not use (too old, lost, an
            integrated GPU, ...), each with ``supported=False`` and its reason. Never dropped.
        driver_version: The driver's own version string (NVIDIA ``580.159.04``, amdgpu
            ``6.7.0``), when known.
        cuda_driver_version: The CUDA driver API version as ``(major, minor)``, e.g. ``(12, 4)``.
        reason: Why ``devices`` is empty, in one human sentence; ``None`` when it is not.
        warnings: Things worth telling a human even though detection worked (hidden devices,
            an old driver, a skipped check).
        notes: How the conclusions were reached (which CUDA variant rule applied and why).
        backends: For a merged report, the per-library reports it was built from.
    """

    library: str
    devices: tuple[GpuInfo, ...] = ()
    unsupported: tuple[GpuInfo, ...] = ()
    driver_version: str | None = None
    cuda_driver_version: tuple[int, int] | None = None
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    backends: tuple[GpuReport, ...] = ()

    @property
    def all_devices(self) -> tuple[GpuInfo, ...]:
        """Return usable and unsupported devices together."""
        return self.devices + self.unsupported

    @property
    def total_free_memory(self) -> int:
        """Return the free bytes summed over the usable devices."""
        return sum(gpu.free_memory for gpu in self.devices)

    def summary(self) -> str:
        """Return one human line: the usable GPUs, or the reason there are none."""
        if not self.devices:
            return f"no usable GPU: {self.reason}"
        names = ", ".join(
            f"{gpu.name} ({format_bytes(gpu.free_memory)} free)" for gpu in self.devices
        )
        count = len(self.devices)
        return f"{count} GPU{'s' if count > 1 else ''}: {names}"

    def describe(self) -> str:
        """Return human lines: the summary, each device, the driver, then warnings and notes."""
        lines = [self.summary()]
        lines += [f"  {gpu.describe()}" for gpu in self.all_devices]
        driver = [self.driver_version] if self.driver_version else []
        if self.cuda_driver_version is not None:
            driver.append("CUDA {}.{}".format(*self.cuda_driver_version))
        if driver:
            lines.append(f"  driver {', '.join(driver)}")
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of the whole report."""
        return {
            "library": self.library,
            "devices": [gpu.to_dict() for gpu in self.devices],
            "unsupported": [gpu.to_dict() for gpu in self.unsupported],
            "driver_version": self.driver_version,
            "cuda_driver_version": (
                list(self.cuda_driver_version) if self.cuda_driver_version is not None else None
            ),
            "reason": self.reason,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "backends": [backend.to_dict() for backend in self.backends],
        }
