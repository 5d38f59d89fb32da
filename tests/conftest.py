"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

import os

import pytest

_SCRUBBED_PREFIXES = (
    "OLLAMA_",
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
)
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove Ollama, GPU and proxy variables so no test depends on the machine it runs on."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(_SCRUBBED_PREFIXES) or upper in _PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
