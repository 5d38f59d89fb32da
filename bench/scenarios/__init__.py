"""The benchmark scenarios, in the order the report presents them."""

from __future__ import annotations

import importlib

from bench.scenarios._base import Scenario

__all__ = ["NAMES", "load"]

#: Scenario module names, in report order.
NAMES: tuple[str, ...] = (
    "readiness",
    "cached_ensure",
    "pull_cpu",
    "pull_memory",
    "multi_pull",
    "payloads",
    "imports",
    "gpu",
)


def load(name: str) -> Scenario:
    """Return the scenario of module ``bench.scenarios.<name>``."""
    scenario: Scenario = importlib.import_module(f"bench.scenarios.{name}").SCENARIO
    return scenario
