"""FakeNvml: an NVML stand-in that replays realistic NVIDIA GPUs and NVML's own errors.

It has ``pynvml``'s function names and raises ``pynvml``'s real exception classes
(``NVMLError_DriverNotLoaded``, ``NVMLError_GpuIsLost``, ...), so code under test handles exactly
what it would meet on a real host. Pass it wherever an NVML binding is accepted::

    from ollama_ready.gpu import detect_gpus
    from ollama_ready.testing import FakeGpu, FakeNvml

    report = detect_gpus(FakeNvml.h100())
    assert report.devices[0].name == "NVIDIA H100 80GB HBM3"

    broken = FakeNvml.driver_not_loaded()
    assert detect_gpus(broken).reason is not None
    assert broken.init_calls == 1

Like NVML, every query needs a prior ``nvmlInit`` (``NVMLError_Uninitialized`` otherwise), and
init/shutdown are reference counted. The fake counts calls so tests can assert one init and one
shutdown per detection, and records the most sessions ever open at once (``max_active``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pynvml

__all__ = ["FakeGpu", "FakeNvml"]

_MiB = 1024**2


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeGpu:
    """Describe one fake NVIDIA GPU; the class methods build real models.

    Attributes:
        name: What ``nvmlDeviceGetName`` returns.
        uuid: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``.
        memory_total, memory_used: Bytes; free is total - used.
        compute_capability: ``(major, minor)``.
        pci_bus_id: NVML's ``busId`` (``00000000:19:00.0``).
        lost: Every query on this GPU raises ``NVMLError_GpuIsLost``.
        no_permission: Getting its handle raises ``NVMLError_NoPermission``.
    """

    name: str
    uuid: str
    memory_total: int
    memory_used: int = 0
    compute_capability: tuple[int, int]
    pci_bus_id: str
    lost: bool = False
    no_permission: bool = False

    @classmethod
    def h100(cls, **changes: Any) -> FakeGpu:
        """Return an NVIDIA H100 80GB HBM3: 81559 MiB, compute capability 9.0."""
        gpu = cls(
            name="NVIDIA H100 80GB HBM3",
            uuid="GPU-5f4c4e2a-9b1d-4c8e-a3f7-1e2d3c4b5a69",
            memory_total=81559 * _MiB,
            memory_used=531 * _MiB,
            compute_capability=(9, 0),
            pci_bus_id="00000000:19:00.0",
        )
        return dataclasses.replace(gpu, **changes)

    @classmethod
    def gtx_1080(cls, **changes: Any) -> FakeGpu:
        """Return an NVIDIA GeForce GTX 1080: 8192 MiB, compute capability 6.1."""
        gpu = cls(
            name="NVIDIA GeForce GTX 1080",
            uuid="GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",
            memory_total=8192 * _MiB,
            memory_used=356 * _MiB,
            compute_capability=(6, 1),
            pci_bus_id="00000000:01:00.0",
        )
        return dataclasses.replace(gpu, **changes)

    @classmethod
    def tesla_k80(cls, **changes: Any) -> FakeGpu:
        """Return a Tesla K80: 11441 MiB, compute capability 3.7 (too old for Ollama)."""
        gpu = cls(
            name="Tesla K80",
            uuid="GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901",
            memory_total=11441 * _MiB,
            memory_used=4 * _MiB,
            compute_capability=(3, 7),
            pci_bus_id="00000000:04:00.0",
        )
        return dataclasses.replace(gpu, **changes)

    @classmethod
    def rtx_3090(cls, **changes: Any) -> FakeGpu:
        """Return an NVIDIA GeForce RTX 3090: 24576 MiB, compute capability 8.6."""
        gpu = cls(
            name="NVIDIA GeForce RTX 3090",
            uuid="GPU-c3a0e1f2-7d4b-4e59-8a61-0b9c2d3e4f50",
            memory_total=24576 * _MiB,
            memory_used=412 * _MiB,
            compute_capability=(8, 6),
            pci_bus_id="00000000:21:00.0",
        )
        return dataclasses.replace(gpu, **changes)


class _Handle:
    """An opaque device handle, like pynvml's ``c_nvmlDevice_t``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<fake nvmlDevice {self.index}>"


def _error(code: int) -> Exception:
    error: Exception = pynvml.NVMLError(code)  # NVMLError.__new__ picks the specific subclass
    return error


class FakeNvml:
    """Replay NVIDIA GPUs through NVML's API, with NVML's errors and call counting.

    Args:
        gpus: The GPUs, in NVML index order. UUIDs must be unique.
        driver_version: What ``nvmlSystemGetDriverVersion`` returns (``"550.54.14"``).
        cuda_driver_version: What ``nvmlSystemGetCudaDriverVersion`` returns (``12040`` = 12.4).
        init_error: An NVML return code (``pynvml.NVML_ERROR_*``) that ``nvmlInit`` fails with.
        call_delay: Seconds every call sleeps, to widen race windows in concurrency tests.
    """

    NVMLError = pynvml.NVMLError

    def __init__(
        self,
        gpus: Iterable[FakeGpu] = (),
        *,
        driver_version: str = "580.159.04",
        cuda_driver_version: int = 13000,
        init_error: int | None = None,
        call_delay: float = 0.0,
    ) -> None:
        self._gpus = list(gpus)
        uuids = [gpu.uuid for gpu in self._gpus]
        if len(set(uuids)) != len(uuids):
            raise ValueError(f"FakeNvml GPUs need unique UUIDs, got {uuids}")
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.call_delay = call_delay
        self.init_calls = 0
        self.shutdown_calls = 0
        self.active = 0
        self.max_active = 0
        self.calls: Counter[str] = Counter()
        self._faults: dict[tuple[str, int | None], int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        names = [gpu.name for gpu in self._gpus]
        return f"FakeNvml({names}, driver={self.driver_version!r})"

    # -- presets ---------------------------------------------------------------------------

    @classmethod
    def h100(cls) -> FakeNvml:
        """Return one H100 80GB HBM3 on driver 580.159.04 (CUDA 13.0)."""
        return cls([FakeGpu.h100()], driver_version="580.159.04", cuda_driver_version=13000)

    @classmethod
    def gtx_1080(cls) -> FakeNvml:
        """Return one GTX 1080 on driver 550.54.14 (CUDA 12.4)."""
        return cls([FakeGpu.gtx_1080()], driver_version="550.54.14", cuda_driver_version=12040)

    @classmethod
    def tesla_k80(cls) -> FakeNvml:
        """Return one Tesla K80 (compute capability 3.7) on driver 470.256.02 (CUDA 11.4)."""
        return cls([FakeGpu.tesla_k80()], driver_version="470.256.02", cuda_driver_version=11040)

    @classmethod
    def rtx_3090(cls) -> FakeNvml:
        """Return one RTX 3090 on driver 550.54.14 (CUDA 12.4)."""
        return cls([FakeGpu.rtx_3090()], driver_version="550.54.14", cuda_driver_version=12040)

    @classmethod
    def mixed(cls) -> FakeNvml:
        """Return a workstation with an RTX 3090, a GTX 1080 and a Tesla K80 on driver 470.

        R470 is the last branch that drives the K80, so the box reports CUDA 11.4.
        """
        gpus = [
            FakeGpu.rtx_3090(pci_bus_id="00000000:01:00.0"),
            FakeGpu.gtx_1080(pci_bus_id="00000000:02:00.0"),
            FakeGpu.tesla_k80(pci_bus_id="00000000:03:00.0"),
        ]
        return cls(gpus, driver_version="470.256.02", cuda_driver_version=11040)

    @classmethod
    def library_missing(cls) -> FakeNvml:
        """Return a host without ``libnvidia-ml.so.1``: ``NVMLError_LibraryNotFound``."""
        return cls(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    @classmethod
    def driver_not_loaded(cls) -> FakeNvml:
        """Return a host whose kernel driver is not loaded: ``NVMLError_DriverNotLoaded``."""
        return cls(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    @classmethod
    def no_permission(cls) -> FakeNvml:
        """Return a host whose device files are off limits: ``NVMLError_NoPermission``."""
        return cls(init_error=pynvml.NVML_ERROR_NO_PERMISSION)

    # -- fault injection -------------------------------------------------------------------

    @property
    def gpus(self) -> tuple[FakeGpu, ...]:
        """Return the GPUs in NVML index order."""
        with self._lock:
            return tuple(self._gpus)

    def lose_gpu(self, index: int) -> None:
        """Make GPU ``index`` fall off the bus: its queries raise ``NVMLError_GpuIsLost``."""
        with self._lock:
            self._gpus[index] = dataclasses.replace(self._gpus[index], lost=True)

    def fail(self, function: str, code: int, *, device: int | None = None) -> None:
        """Make every later call of ``function`` raise NVML error ``code``.

        ``device`` limits the fault to calls about that GPU index.
        """
        if not hasattr(self, function):
            raise ValueError(f"FakeNvml has no NVML function {function!r}")
        with self._lock:
            self._faults[(function, device)] = code

    def clear_faults(self) -> None:
        """Remove every fault added with :meth:`fail`."""
        with self._lock:
            self._faults.clear()

    # -- plumbing --------------------------------------------------------------------------

    def _enter(self, function: str, device: int | None = None) -> None:
        if self.call_delay:
            time.sleep(self.call_delay)
        with self._lock:
            self.calls[function] += 1
            code = self._faults.get((function, device), self._faults.get((function, None)))
            if function not in ("nvmlInit", "nvmlShutdown") and self.active == 0:
                code = pynvml.NVML_ERROR_UNINITIALIZED
        if code is not None:
            raise _error(code)

    def _device(self, function: str, handle: object) -> FakeGpu:
        if not isinstance(handle, _Handle):
            self._enter(function)
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._enter(function, handle.index)
        with self._lock:
            gpu = self._gpus[handle.index]
        if gpu.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    # -- NVML ------------------------------------------------------------------------------

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        """Start a session (reference counted), or fail with ``init_error``."""
        with self._lock:
            self.init_calls += 1
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise _error(self.init_error)
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def nvmlShutdown(self) -> None:  # noqa: N802
        """End a session; without one, raise ``NVMLError_Uninitialized``."""
        with self._lock:
            self.shutdown_calls += 1
        self._enter("nvmlShutdown")
        with self._lock:
            if self.active == 0:
                raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
            self.active -= 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        """Return the driver branch string, e.g. ``"580.159.04"``."""
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        """Return the CUDA driver version as 1000 x major + 10 x minor."""
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:  # noqa: N802
        """Return the same as :meth:`nvmlSystemGetCudaDriverVersion`."""
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        """Return how many GPUs there are, including lost or forbidden ones (as ``_v2``)."""
        self._enter("nvmlDeviceGetCount")
        with self._lock:
            return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:  # noqa: N802
        """Return the handle of GPU ``index``."""
        self._enter("nvmlDeviceGetHandleByIndex", index)
        with self._lock:
            if not 0 <= index < len(self._gpus):
                raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            gpu = self._gpus[index]
        if gpu.no_permission:
            raise _error(pynvml.NVML_ERROR_NO_PERMISSION)
        if gpu.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return _Handle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:  # noqa: N802
        """Return the handle of the GPU whose UUID is ``uuid`` exactly."""
        self._enter("nvmlDeviceGetHandleByUUID")
        with self._lock:
            for index, gpu in enumerate(self._gpus):
                if gpu.uuid == uuid:
                    return _Handle(index)
        raise _error(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:  # noqa: N802
        """Return the NVML index of ``handle``."""
        self._device("nvmlDeviceGetIndex", handle)
        return handle.index

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:  # noqa: N802
        """Return the GPU's ``GPU-…`` UUID."""
        return self._device("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:  # noqa: N802
        """Return the GPU's marketing name."""
        return self._device("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> Any:  # noqa: N802
        """Return pynvml's ``c_nvmlMemory_t`` with total, free and used bytes."""
        gpu = self._device("nvmlDeviceGetMemoryInfo", handle)
        free = max(0, gpu.memory_total - gpu.memory_used)
        return pynvml.c_nvmlMemory_t(gpu.memory_total, free, gpu.memory_used)

    def nvmlDeviceGetCudaComputeCapability(self, handle: _Handle) -> tuple[int, int]:  # noqa: N802
        """Return ``(major, minor)``."""
        return self._device("nvmlDeviceGetCudaComputeCapability", handle).compute_capability

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> Any:  # noqa: N802
        """Return pynvml's ``nvmlPciInfo_t`` with ``busId`` and its parsed fields."""
        gpu = self._device("nvmlDeviceGetPciInfo", handle)
        info = pynvml.nvmlPciInfo_t()
        domain, bus, rest = gpu.pci_bus_id.split(":")
        device = rest.split(".")[0]
        info.busId = gpu.pci_bus_id.encode()
        info.busIdLegacy = gpu.pci_bus_id.encode()
        info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(device, 16)
        return info
