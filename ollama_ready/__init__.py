"""ollama_ready: make "the model is there and the server answers" one reliable call.

Typical use, before an application's first inference::

    import ollama_ready

    result = ollama_ready.ensure_model("llama3.2:1b")
    print(result.model, result.pulled)

Importing the package is cheap: public names are loaded on first use, so ``import ollama_ready``
pulls in neither ``requests`` internals it does not need nor ``pynvml``, ``tqdm`` or ``pytest``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ollama_ready._version import __version__

if TYPE_CHECKING:
    from ollama_ready.client import (
        ModelDetails,
        ModelInfo,
        OllamaClient,
        RunningModel,
    )
    from ollama_ready.clock import (
        Clock,
        Deadline,
    )
    from ollama_ready.config import (
        Settings,
        parse_host,
    )
    from ollama_ready.cpu import (
        cpu_capability,
    )
    from ollama_ready.create import (
        CreateResult,
        create_model,
    )
    from ollama_ready.doctor import (
        DoctorReport,
        doctor,
    )
    from ollama_ready.ensure import (
        EnsureResult,
        FleetResult,
        ensure_fleet,
        ensure_model,
        ensure_model_async,
        ensure_models,
        ensure_models_async,
    )
    from ollama_ready.errors import (
        AggregateError,
        ConfigError,
        DeadlineExceeded,
        DigestMismatch,
        DiskFull,
        HostNotAllowed,
        InsecureRegistry,
        InvalidHost,
        InvalidModelName,
        InvalidStrategySpec,
        ModelfileError,
        ModelNotFound,
        ModelNotPresent,
        NotReadyError,
        OllamaConnectionError,
        OllamaReadyError,
        PayloadError,
        PlacementError,
        ProtocolError,
        PullError,
        PullRetriesExhausted,
        PullStalled,
        RegistryUnreachable,
        ResponseError,
        ServerBusy,
        ServerTooOld,
        Unauthorized,
    )
    from ollama_ready.fit import (
        FitEstimate,
        Placement,
        estimate_fit,
        placement_label,
    )
    from ollama_ready.gpu import (
        GpuInfo,
        GpuReport,
        detect_all,
        detect_gpus,
    )
    from ollama_ready.modelfile import (
        Modelfile,
    )
    from ollama_ready.names import (
        ModelName,
    )
    from ollama_ready.payloads import (
        RunnerPayloads,
        cleanup_stale_dirs,
    )
    from ollama_ready.progress import (
        ProgressSnapshot,
        PullEvent,
        Reporter,
        make_reporter,
    )
    from ollama_ready.pull import (
        PullResult,
        RetryPolicy,
        classify_error,
        pull_model,
        pull_models,
    )
    from ollama_ready.readiness import (
        Healthcheck,
        Poll,
        ReadyLevel,
        ReadyReport,
        Sequence,
        Serve,
        ServerHandle,
        Sleep,
        Strategy,
        strategy_from_spec,
        wait_until_ready,
    )
    from ollama_ready.runners import (
        RunnerChoice,
        available_runners,
        locate_runners,
        runner_for_cpu,
        runners_for_gpu,
    )

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AggregateError": "errors",
    "Clock": "clock",
    "ConfigError": "errors",
    "CreateResult": "create",
    "Deadline": "clock",
    "DeadlineExceeded": "errors",
    "DigestMismatch": "errors",
    "DiskFull": "errors",
    "DoctorReport": "doctor",
    "EnsureResult": "ensure",
    "FitEstimate": "fit",
    "FleetResult": "ensure",
    "GpuInfo": "gpu",
    "GpuReport": "gpu",
    "Healthcheck": "readiness",
    "HostNotAllowed": "errors",
    "InsecureRegistry": "errors",
    "InvalidHost": "errors",
    "InvalidModelName": "errors",
    "InvalidStrategySpec": "errors",
    "ModelDetails": "client",
    "ModelInfo": "client",
    "ModelName": "names",
    "ModelNotFound": "errors",
    "ModelNotPresent": "errors",
    "Modelfile": "modelfile",
    "ModelfileError": "errors",
    "NotReadyError": "errors",
    "OllamaClient": "client",
    "OllamaConnectionError": "errors",
    "OllamaReadyError": "errors",
    "PayloadError": "errors",
    "Placement": "fit",
    "PlacementError": "errors",
    "Poll": "readiness",
    "ProgressSnapshot": "progress",
    "ProtocolError": "errors",
    "PullError": "errors",
    "PullEvent": "progress",
    "PullResult": "pull",
    "PullRetriesExhausted": "errors",
    "PullStalled": "errors",
    "ReadyLevel": "readiness",
    "ReadyReport": "readiness",
    "RegistryUnreachable": "errors",
    "Reporter": "progress",
    "ResponseError": "errors",
    "RetryPolicy": "pull",
    "RunnerChoice": "runners",
    "RunnerPayloads": "payloads",
    "RunningModel": "client",
    "Sequence": "readiness",
    "Serve": "readiness",
    "ServerBusy": "errors",
    "ServerHandle": "readiness",
    "ServerTooOld": "errors",
    "Settings": "config",
    "Sleep": "readiness",
    "Strategy": "readiness",
    "Unauthorized": "errors",
    "available_runners": "runners",
    "classify_error": "pull",
    "cleanup_stale_dirs": "payloads",
    "cpu_capability": "cpu",
    "create_model": "create",
    "detect_all": "gpu",
    "detect_gpus": "gpu",
    "doctor": "doctor",
    "ensure_fleet": "ensure",
    "ensure_model": "ensure",
    "ensure_model_async": "ensure",
    "ensure_models": "ensure",
    "ensure_models_async": "ensure",
    "estimate_fit": "fit",
    "locate_runners": "runners",
    "make_reporter": "progress",
    "parse_host": "config",
    "placement_label": "fit",
    "pull_model": "pull",
    "pull_models": "pull",
    "runner_for_cpu": "runners",
    "runners_for_gpu": "runners",
    "strategy_from_spec": "readiness",
    "wait_until_ready": "readiness",
}

__all__ = [
    "AggregateError",
    "Clock",
    "ConfigError",
    "CreateResult",
    "Deadline",
    "DeadlineExceeded",
    "DigestMismatch",
    "DiskFull",
    "DoctorReport",
    "EnsureResult",
    "FitEstimate",
    "FleetResult",
    "GpuInfo",
    "GpuReport",
    "Healthcheck",
    "HostNotAllowed",
    "InsecureRegistry",
    "InvalidHost",
    "InvalidModelName",
    "InvalidStrategySpec",
    "ModelDetails",
    "ModelInfo",
    "ModelName",
    "ModelNotFound",
    "ModelNotPresent",
    "Modelfile",
    "ModelfileError",
    "NotReadyError",
    "OllamaClient",
    "OllamaConnectionError",
    "OllamaReadyError",
    "PayloadError",
    "Placement",
    "PlacementError",
    "Poll",
    "ProgressSnapshot",
    "ProtocolError",
    "PullError",
    "PullEvent",
    "PullResult",
    "PullRetriesExhausted",
    "PullStalled",
    "ReadyLevel",
    "ReadyReport",
    "RegistryUnreachable",
    "Reporter",
    "ResponseError",
    "RetryPolicy",
    "RunnerChoice",
    "RunnerPayloads",
    "RunningModel",
    "Sequence",
    "Serve",
    "ServerBusy",
    "ServerHandle",
    "ServerTooOld",
    "Settings",
    "Sleep",
    "Strategy",
    "Unauthorized",
    "__version__",
    "available_runners",
    "classify_error",
    "cleanup_stale_dirs",
    "cpu_capability",
    "create_model",
    "detect_all",
    "detect_gpus",
    "doctor",
    "ensure_fleet",
    "ensure_model",
    "ensure_model_async",
    "ensure_models",
    "ensure_models_async",
    "estimate_fit",
    "locate_runners",
    "make_reporter",
    "parse_host",
    "placement_label",
    "pull_model",
    "pull_models",
    "runner_for_cpu",
    "runners_for_gpu",
    "strategy_from_spec",
    "wait_until_ready",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ollama_ready' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ollama_ready.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
