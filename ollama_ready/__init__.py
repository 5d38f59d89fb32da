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
    from ollama_ready.clock import Clock, Deadline
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

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AggregateError": "errors",
    "Clock": "clock",
    "ConfigError": "errors",
    "Deadline": "clock",
    "DeadlineExceeded": "errors",
    "DigestMismatch": "errors",
    "DiskFull": "errors",
    "HostNotAllowed": "errors",
    "InsecureRegistry": "errors",
    "InvalidHost": "errors",
    "InvalidModelName": "errors",
    "InvalidStrategySpec": "errors",
    "ModelNotFound": "errors",
    "ModelNotPresent": "errors",
    "ModelfileError": "errors",
    "NotReadyError": "errors",
    "OllamaConnectionError": "errors",
    "OllamaReadyError": "errors",
    "PayloadError": "errors",
    "PlacementError": "errors",
    "ProtocolError": "errors",
    "PullError": "errors",
    "PullRetriesExhausted": "errors",
    "PullStalled": "errors",
    "RegistryUnreachable": "errors",
    "ResponseError": "errors",
    "ServerBusy": "errors",
    "ServerTooOld": "errors",
    "Unauthorized": "errors",
}

__all__ = [
    "AggregateError",
    "Clock",
    "ConfigError",
    "Deadline",
    "DeadlineExceeded",
    "DigestMismatch",
    "DiskFull",
    "HostNotAllowed",
    "InsecureRegistry",
    "InvalidHost",
    "InvalidModelName",
    "InvalidStrategySpec",
    "ModelNotFound",
    "ModelNotPresent",
    "ModelfileError",
    "NotReadyError",
    "OllamaConnectionError",
    "OllamaReadyError",
    "PayloadError",
    "PlacementError",
    "ProtocolError",
    "PullError",
    "PullRetriesExhausted",
    "PullStalled",
    "RegistryUnreachable",
    "ResponseError",
    "ServerBusy",
    "ServerTooOld",
    "Unauthorized",
    "__version__",
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
