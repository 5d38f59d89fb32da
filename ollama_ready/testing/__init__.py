"""Test doubles that ship with ollama_ready, for its own tests and for yours.

- :class:`FakeOllama`: a real HTTP server on loopback that speaks Ollama's protocol, with a model
  catalogue and run-time fault injection.
- :class:`FakeClock`: a clock whose ``sleep`` returns at once, so long waits take no real time.
- :class:`FakeNvml`: an NVML stand-in that replays realistic GPUs and NVML's errors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ollama_ready.testing._clock import FakeClock
    from ollama_ready.testing._nvml import FakeGpu, FakeNvml
    from ollama_ready.testing._ollama import FakeBlob, FakeModel, FakeOllama, RecordedRequest

_EXPORTS: dict[str, str] = {
    "FakeBlob": "_ollama",
    "FakeClock": "_clock",
    "FakeGpu": "_nvml",
    "FakeModel": "_ollama",
    "FakeNvml": "_nvml",
    "FakeOllama": "_ollama",
    "RecordedRequest": "_ollama",
}

__all__ = [
    "FakeBlob",
    "FakeClock",
    "FakeGpu",
    "FakeModel",
    "FakeNvml",
    "FakeOllama",
    "RecordedRequest",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ollama_ready.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ollama_ready.testing.{module_name}"), name)
    globals()[name] = value
    return value
