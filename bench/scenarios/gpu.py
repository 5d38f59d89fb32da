"""GPU detection overhead: ``detect_gpus`` on FakeNvml, against the bare NVML queries it needs.

Informational (no target): what one detection costs in Python on top of NVML itself. The
baseline makes the same NVML calls on the same fake directly (init, driver and CUDA versions,
then per device: handle, UUID, name, memory, compute capability, PCI info, and shutdown), so
the difference is detection's own work: ``CUDA_VISIBLE_DEVICES``, variants, reasons.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from bench._context import Context
from bench._model import Series
from bench.scenarios._base import Measured, Scenario

__all__ = ["SCENARIO"]

_BATCH = 20


def _bare_queries(nvml: Any) -> None:
    nvml.nvmlInit()
    try:
        nvml.nvmlSystemGetDriverVersion()
        nvml.nvmlSystemGetCudaDriverVersion()
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            nvml.nvmlDeviceGetUUID(handle)
            nvml.nvmlDeviceGetName(handle)
            nvml.nvmlDeviceGetMemoryInfo(handle)
            nvml.nvmlDeviceGetCudaComputeCapability(handle)
            nvml.nvmlDeviceGetPciInfo(handle)
    finally:
        nvml.nvmlShutdown()


def _per_call_us(call: Callable[[], object], batches: int) -> tuple[float, ...]:
    for _ in range(_BATCH):  # warm up
        call()
    samples = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(_BATCH):
            call()
        samples.append((time.perf_counter() - started) / _BATCH * 1e6)
    return tuple(samples)


def _run(ctx: Context) -> Measured:
    from ollama_ready.gpu import detect_gpus
    from ollama_ready.testing import FakeNvml

    batches = ctx.pick(full=200, quick=50, smoke=5)
    series = []
    for key, label, make in (
        ("h100", "1 x H100", FakeNvml.h100),
        ("mixed", "3 mixed GPUs", FakeNvml.mixed),
    ):
        nvml = make()
        env: dict[str, str] = {}
        series += [
            Series(
                key=f"detect.{key}",
                label=f"detect_gpus(), {label}",
                unit="us",
                role="ours",
                samples=_per_call_us(functools.partial(detect_gpus, nvml, env), batches),
                note=f"detect_gpus(FakeNvml.{make.__name__}(), environ={{}})",
            ),
            Series(
                key=f"bare.{key}",
                label=f"bare NVML queries, {label}",
                unit="us",
                role="baseline",
                samples=_per_call_us(functools.partial(_bare_queries, nvml), batches),
                note="the NVML calls detection makes, made directly on the same fake",
            ),
        ]
    return Measured(
        series=tuple(series),
        notes=(
            f"{batches} batches of {_BATCH} calls each; a sample is the mean call time of a batch",
            "informational: no target; FakeNvml answers from Python, a real NVML call goes "
            "through the driver and costs more",
        ),
        parameters={"batches": batches, "batch": _BATCH},
    )


SCENARIO = Scenario(
    name="gpu",
    title="GPU detection overhead",
    description=(
        "Per-call cost of `detect_gpus()` with FakeNvml, against making the same NVML queries "
        "directly (informational)."
    ),
    run=_run,
)
