"""The shape of a scenario and the helpers that turn series into targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bench._context import Context
from bench._model import Series, Target, ratio

__all__ = ["Measured", "Scenario", "absolute_target", "ratio_target"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """What a scenario's ``run`` returns: its series, targets, notes and parameters."""

    series: tuple[Series, ...]
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A benchmark scenario: a name (its JSON file), a title, what it shows, and how to run it."""

    name: str
    title: str
    description: str
    run: Callable[[Context], Measured]


def absolute_target(
    description: str,
    ours: Series,
    *,
    limit: float,
    baseline: Series | None = None,
    statistic: Literal["median", "p95", "max"] = "median",
) -> Target:
    """Return the target ``statistic(ours) <= limit``, with ``baseline``'s same statistic beside."""
    value = _statistic(ours, statistic)
    other = math.nan if baseline is None else _statistic(baseline, statistic)
    return Target(
        description=description,
        value=value,
        limit=limit,
        unit=ours.unit,
        measure=f"{statistic} of {ours.label}",
        ours=ours.label,
        ours_value=value,
        compared_unit=ours.unit,
        baseline=None if baseline is None else baseline.label,
        baseline_value=other,
    )


def _statistic(series: Series, statistic: str) -> float:
    if statistic == "median":
        return series.median
    if statistic == "p95":
        return series.p95
    return max(series.samples, default=math.nan)


def ratio_target(description: str, ours: Series, baseline: Series, *, limit: float) -> Target:
    """Return the target ``median(ours) / median(baseline) <= limit``."""
    return Target(
        description=description,
        value=ratio(ours.median, baseline.median),
        limit=limit,
        unit="x",
        measure=f"median of {ours.label} / median of {baseline.label}",
        ours=ours.label,
        ours_value=ours.median,
        compared_unit=ours.unit,
        baseline=baseline.label,
        baseline_value=baseline.median,
    )
