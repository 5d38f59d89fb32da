"""A ``conftest.py`` for an application that talks to Ollama: copy it beside your tests.

ollama_ready's pytest plugin is active as soon as ollama-ready is installed. This file builds
the application's own fixtures on top of it, for two kinds of tests:

- **Integration tests** use ``llm``: the official ``ollama`` client for the real server. The
  plugin waits for the server once per session, pulls ``CHAT_MODEL`` if it is missing (once,
  even under ``pytest -n 4``), and skips these tests when no server runs. In CI, run
  ``pytest --ollama-required`` so that a missing server fails instead.
- **Unit tests** use ``offline_llm``: the same client for a fake server started per test
  (``fake_ollama``), which can refuse connections, answer 503 or stall a pull on demand.

Tests that need another model mark it: ``@pytest.mark.ollama_model("qwen2.5:0.5b")``.
"""

from __future__ import annotations

import ollama
import pytest

from ollama_ready.config import Settings
from ollama_ready.ensure import EnsureResult
from ollama_ready.testing import FakeOllama

CHAT_MODEL = "llama3.2:1b"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test that uses ``llm`` the default model, unless it names its own."""
    for item in items:
        if "llm" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            "ollama_model"
        ):
            item.add_marker(pytest.mark.ollama_model(CHAT_MODEL))


@pytest.fixture
def llm(ollama_model: EnsureResult, ollama_settings: Settings) -> ollama.Client:
    """Return the official client for the real server, once the test's model is there."""
    return ollama.Client(host=ollama_settings.host)


@pytest.fixture
def chat_model(ollama_model: EnsureResult) -> str:
    """Return the name of the model the test asked for, as Ollama shows it."""
    return ollama_model.display_name


@pytest.fixture
def offline_llm(fake_ollama: FakeOllama) -> ollama.Client:
    """Return the official client for a fake server that already has ``CHAT_MODEL``."""
    fake_ollama.add_model(CHAT_MODEL)
    return ollama.Client(host=fake_ollama.url)
