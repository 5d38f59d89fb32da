"""pytest plugin for ollama_ready (registered under the ``pytest11`` entry point)."""

from __future__ import annotations
