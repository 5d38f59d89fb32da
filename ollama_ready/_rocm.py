"""AMD GPUs on Linux, read from sysfs the way Ollama v0.4 does (``discover/amd_linux.go``).

1. ``<sysfs>/module/amdgpu`` must exist; ``<sysfs>/module/amdgpu/version`` is the driver version.
2. Every ``<sysfs>/class/kfd/kfd/topology/nodes/<n>/properties`` is read in numeric node order.
   ``gfx_target_version`` 0 is a CPU node and is skipped; otherwise the decimal value decodes as
   major = all but the last four digits, then two digits each of minor and patch, printed in
   hex: 90008 is ``gfx908``, 90010 ``gfx90a``, 110000 ``gfx1100``. GPU nodes are numbered
   0, 1, ... in that order (the index ``ROCR_VISIBLE_DEVICES`` refers to).
3. The node is matched to ``<sysfs>/class/drm/card<k>/device`` by the hex files ``vendor``,
   ``device`` and ``unique_id`` (a zero ID in the node is not compared). VRAM total and used
   come from ``mem_info_vram_total`` and ``mem_info_vram_used``; free = total - used.
4. GPUs hidden by ``ROCR_VISIBLE_DEVICES``, else ``HIP_VISIBLE_DEVICES``, else
   ``GPU_DEVICE_ORDINAL`` (the first one set and non-empty; each entry an index or a ``GPU-…``
   ID; the order is not changed) are only mentioned in the warnings.
   A visible GPU is listed as unsupported, with the reason, when no DRM card matches it, its
   VRAM is below 1 GiB (an integrated GPU), its gfx major is below 9, or a supported-gfx list
   is given and does not name it (a check that ``HSA_OVERRIDE_GFX_VERSION`` turns off).
5. Found GPUs are unusable without read/write access to ``/dev/kfd``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ollama_ready._gpuinfo import ROCM_MINIMUM_MEMORY, GiB, GpuInfo, GpuReport, format_bytes

__all__ = ["ROCM_VISIBLE_DEVICE_VARIABLES", "detect_rocm", "rocm_supported_gfx"]

logger = logging.getLogger(__name__)

ROCM_VISIBLE_DEVICE_VARIABLES = (
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
)
"""The variables that restrict AMD GPUs, highest precedence first."""

_IGPU_MEMORY_LIMIT = 1 * GiB
_GFX_MAJOR_MINIMUM = 9
_CARD_NAME = re.compile(r"card[0-9]+")
_PCI_ADDRESS = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
_KFD_HINT = "If running in a container, remember to include '--device /dev/kfd --device /dev/dri'"


@dataclass(frozen=True, slots=True)
class _KfdNode:
    node: int
    gfx: tuple[int, int, int]
    vendor_id: int
    device_id: int
    unique_id: int

    @property
    def compute(self) -> str:
        major, minor, patch = self.gfx
        return f"gfx{major}{minor:x}{patch:x}"


@dataclass(frozen=True, slots=True)
class _DrmCard:
    path: Path
    total: int | None
    used: int | None


def rocm_supported_gfx(rocm_library_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    """Return the gfx targets a ROCm install supports, sorted (``("gfx1030", "gfx90a")``).

    Ollama reads them from ``<rocm lib>/rocblas/library/TensileLibrary_lazy_gfx*.dat``;
    pass the directory that holds ``rocblas``. A missing directory gives ``()``.
    """
    library = Path(rocm_library_dir) / "rocblas" / "library"
    names = {
        path.name.removeprefix("TensileLibrary_lazy_").removesuffix(".dat")
        for path in library.glob("TensileLibrary_lazy_gfx*.dat")
    }
    return tuple(sorted(names))


def detect_rocm(
    sysfs_root: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    supported_gfx: Iterable[str] | None = None,
    kfd_device: str | os.PathLike[str] | None = None,
) -> GpuReport:
    """Detect AMD GPUs from sysfs; never raise for a missing or odd tree.

    Args:
        sysfs_root: The sysfs mount (``/sys`` when ``None``); tests pass a fixture tree.
        environ: Where ``ROCR_VISIBLE_DEVICES`` and friends and ``HSA_OVERRIDE_GFX_VERSION``
            are read; ``None`` means ``os.environ``.
        supported_gfx: The gfx targets the ROCm library supports (see
            :func:`rocm_supported_gfx`); ``None`` skips that check.
        kfd_device: The KFD device node (``/dev/kfd`` when ``None``).
    """
    root = Path("/sys" if sysfs_root is None else sysfs_root)
    env = os.environ if environ is None else environ
    module = root / "module" / "amdgpu"
    if not module.is_dir():
        return GpuReport(library="rocm", reason="the amdgpu kernel module is not loaded")
    warnings: list[str] = []
    driver_version = _read_text(module / "version")
    driver = _parse_driver_version(driver_version)
    if driver_version is None:
        warnings.append(
            "amdgpu driver version unknown (no /sys/module/amdgpu/version); Ollama recommends "
            "the AMD driver from https://www.amd.com/en/support/linux-drivers"
        )
    nodes_dir = root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    if not nodes_dir.is_dir():
        return GpuReport(
            library="rocm",
            driver_version=driver_version,
            reason="amdgpu is loaded but has no KFD topology (/sys/class/kfd): no ROCm compute",
            warnings=tuple(warnings),
        )
    cards = _drm_card_dirs(root)
    visible = _visible_devices(env)
    override = env.get("HSA_OVERRIDE_GFX_VERSION", "").strip()
    supported = _normalise_gfx(supported_gfx)
    if override and supported is not None:
        warnings.append(f"HSA_OVERRIDE_GFX_VERSION={override}: the supported-gfx check is skipped")
        supported = None
    devices: list[GpuInfo] = []
    unsupported: list[GpuInfo] = []
    hidden: list[str] = []
    for index, node in enumerate(_gpu_nodes(nodes_dir)):
        gpu = _gpu_info(node, index, cards, driver, warnings)
        if visible is not None and not _is_visible(gpu, visible[1]):
            hidden.append(f"{gpu.index} ({gpu.name}, {gpu.uuid})")
            continue
        reason = _rejection(gpu, node, supported)
        if reason is not None:
            unsupported.append(dataclasses.replace(gpu, supported=False, unsupported_reason=reason))
        else:
            devices.append(gpu)
    if hidden and visible is not None:
        warnings.append(f"{visible[0]}={visible[2]!r} hides AMD GPU(s) {', '.join(hidden)}")
    if devices:
        kfd_problem = _kfd_problem(Path("/dev/kfd" if kfd_device is None else kfd_device))
        if kfd_problem is not None:
            unsupported = [
                dataclasses.replace(gpu, supported=False, unsupported_reason=kfd_problem)
                for gpu in devices
            ] + unsupported
            devices = []
    return GpuReport(
        library="rocm",
        devices=tuple(devices),
        unsupported=tuple(sorted(unsupported, key=lambda gpu: gpu.index)),
        driver_version=driver_version,
        reason=None if devices else _no_device_reason(unsupported, hidden, visible),
        warnings=tuple(warnings),
    )


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return None


def _read_int(path: Path, base: int) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.removeprefix("0x").removeprefix("0X"), base)
    except ValueError:
        logger.debug("%s holds %r, not a base-%d number", path, text, base)
        return None


def _parse_driver_version(text: str | None) -> tuple[int, int]:
    parts = (text or "").split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0, 0


def _gpu_nodes(nodes_dir: Path) -> list[_KfdNode]:
    numbered = sorted(
        (int(entry.name), entry) for entry in nodes_dir.iterdir() if entry.name.isdigit()
    )
    nodes = []
    for number, entry in numbered:
        node = _parse_node(number, _read_text(entry / "properties") or "")
        if node is not None:
            nodes.append(node)
    return nodes


def _parse_node(number: int, text: str) -> _KfdNode | None:
    properties: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        try:
            properties[key] = int(value.strip())
        except ValueError:
            continue
    target = properties.get("gfx_target_version", 0)
    if target <= 0:
        return None  # a CPU node, or a node without a GPU target
    gfx = (target // 10000, (target // 100) % 100, target % 100)
    return _KfdNode(
        node=number,
        gfx=gfx,
        vendor_id=properties.get("vendor_id", 0),
        device_id=properties.get("device_id", 0),
        unique_id=properties.get("unique_id", 0),
    )


def _drm_card_dirs(root: Path) -> list[Path]:
    drm = root / "class" / "drm"
    try:
        names = [entry.name for entry in drm.iterdir() if _CARD_NAME.fullmatch(entry.name)]
    except OSError:
        return []
    return [drm / name / "device" for name in sorted(names, key=lambda n: int(n[4:]))]


def _match_card(node: _KfdNode, cards: list[Path]) -> _DrmCard | None:
    wanted = (("vendor", node.vendor_id), ("device", node.device_id), ("unique_id", node.unique_id))
    for card in cards:
        if all(_read_int(card / name, 16) == value for name, value in wanted if value != 0):
            return _DrmCard(
                path=card,
                total=_read_int(card / "mem_info_vram_total", 10),
                used=_read_int(card / "mem_info_vram_used", 10),
            )
    return None


def _gpu_info(
    node: _KfdNode, index: int, cards: list[Path], driver: tuple[int, int], warnings: list[str]
) -> GpuInfo:
    card = _match_card(node, cards)
    total = card.total if card is not None and card.total is not None else 0
    used = card.used if card is not None and card.used is not None else 0
    if card is not None and card.total is not None and card.used is None:
        warnings.append(f"AMD GPU {index}: VRAM use unreadable; free memory assumes none is used")
    return GpuInfo(
        library="rocm",
        index=index,
        uuid=f"GPU-{node.unique_id:016x}" if node.unique_id else str(index),
        name=f"{node.vendor_id:04x}:{node.device_id:04x}",
        total_memory=total,
        free_memory=max(0, total - used),
        used_memory=used,
        compute=node.compute,
        pci_bus_id=_pci_address(card.path) if card is not None else None,
        driver_major=driver[0],
        driver_minor=driver[1],
        minimum_memory=ROCM_MINIMUM_MEMORY,
        physical_index=node.node,
    )


def _pci_address(device_dir: Path) -> str | None:
    name = device_dir.resolve().name.lower()
    return name if _PCI_ADDRESS.fullmatch(name) else None


def _rejection(gpu: GpuInfo, node: _KfdNode, supported: frozenset[str] | None) -> str | None:
    if gpu.total_memory == 0:
        return f"no DRM card matches KFD node {node.node}, so its VRAM is unknown"
    if gpu.total_memory < _IGPU_MEMORY_LIMIT:
        return (
            f"integrated GPU: {format_bytes(gpu.total_memory)} of VRAM is below 1 GiB, "
            "and Ollama skips Radeon iGPUs"
        )
    if node.gfx[0] < _GFX_MAJOR_MINIMUM:
        return f"{gpu.compute} is too old: Ollama needs gfx9 or newer"
    if supported is not None and gpu.compute not in supported:
        targets = ", ".join(sorted(supported)) or "none"
        return (
            f"{gpu.compute} is not supported by this ROCm library (supported: {targets}); "
            "HSA_OVERRIDE_GFX_VERSION can force a close target"
        )
    return None


def _normalise_gfx(targets: Iterable[str] | None) -> frozenset[str] | None:
    if targets is None:
        return None
    return frozenset(target.split(":", 1)[0].strip().lower() for target in targets)


def _visible_devices(env: Mapping[str, str]) -> tuple[str, frozenset[str], str] | None:
    for name in ROCM_VISIBLE_DEVICE_VARIABLES:
        value = env.get(name, "")
        if value.strip():
            entries = frozenset(entry.strip().lower() for entry in value.split(","))
            return name, entries, value
    return None


def _is_visible(gpu: GpuInfo, entries: frozenset[str]) -> bool:
    return gpu.uuid.lower() in entries or str(gpu.index) in entries


def _kfd_problem(kfd: Path) -> str | None:
    if not kfd.exists():
        return f"kfd driver not loaded ({kfd} is missing). {_KFD_HINT}"
    if not os.access(kfd, os.R_OK | os.W_OK):
        return (
            f"no read/write access to {kfd}: add the user to the 'render' and 'video' groups. "
            f"{_KFD_HINT}"
        )
    return None


def _no_device_reason(
    unsupported: list[GpuInfo],
    hidden: list[str],
    visible: tuple[str, frozenset[str], str] | None,
) -> str:
    if unsupported:
        details = "; ".join(
            f"GPU {gpu.index} {gpu.compute}: {gpu.unsupported_reason}" for gpu in unsupported
        )
        return f"no usable AMD GPU: {details}"
    if hidden and visible is not None:
        return f"{visible[0]}={visible[2]!r} hides every AMD GPU"
    return "amdgpu is loaded but KFD lists no GPU node"
