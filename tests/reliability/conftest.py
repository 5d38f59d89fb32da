"""Fixtures of the reliability suite, and the plugin that writes ``docs/reliability.md``."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ._report import PLUGIN_NAME, RECORD_PROPERTY, REPORT_VARIABLE, ReliabilityReport


def pytest_configure(config: pytest.Config) -> None:
    """Register the report plugin once per process (it collects on workers and controller)."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        target = os.environ.get(REPORT_VARIABLE) or None
        config.pluginmanager.register(ReliabilityReport(target), PLUGIN_NAME)


class Recorder:
    """Record facts of one test for the report (kept on the test item, so xdist carries them)."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def add(self, kind: str, **facts: Any) -> None:
        """Record one fact of ``kind`` (``cell``, ``hostile``, ``secret``, ``load``, ``leak``)."""
        self._item.user_properties.append((RECORD_PROPERTY, {"kind": kind, **facts}))


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Recorder:
    """Return the recorder of the running test."""
    return Recorder(request.node)
