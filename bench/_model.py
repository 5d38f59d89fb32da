"""The values a scenario produces: sample series, targets, and the JSON they are stored as."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "Extra",
    "Role",
    "ScenarioResult",
    "Series",
    "Target",
    "median",
    "p95",
    "ratio",
]

SCHEMA_VERSION = 1

Role = Literal["ours", "baseline", "info"]
"""``ours`` is measured against targets, ``baseline`` is what we compare with, ``info`` neither."""

Extra = str | float | int | None
"""An extra column value: a number (formatted by the report) or ready-made text."""


def median(samples: Sequence[float]) -> float:
    """Return the median, NaN for no samples."""
    return statistics.median(samples) if samples else math.nan


def p95(samples: Sequence[float]) -> float:
    """Return the 95th percentile (linear interpolation between closest ranks), NaN if empty."""
    if not samples:
        return math.nan
    if len(samples) == 1:
        return float(samples[0])
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def ratio(numerator: float, denominator: float) -> float:
    """Return ``numerator / denominator``; NaN when either is unknown or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """The samples of one variant of a scenario (ours or a baseline), in one unit.

    ``extra`` holds further columns for the measurement table (failure rate, request rate, ...);
    ``note`` says in a few words what exactly was run.
    """

    key: str
    label: str
    unit: str
    role: Role
    samples: tuple[float, ...]
    extra: Mapping[str, Extra] = field(default_factory=dict)
    note: str = ""

    @property
    def median(self) -> float:
        """The median of the samples."""
        return median(self.samples)

    @property
    def p95(self) -> float:
        """The 95th percentile of the samples."""
        return p95(self.samples)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "role": self.role,
            "samples": list(self.samples),
            "median": _finite(self.median),
            "p95": _finite(self.p95),
            "extra": dict(self.extra),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Series:
        """Rebuild a series written by :meth:`to_json`."""
        return cls(
            key=str(data["key"]),
            label=str(data["label"]),
            unit=str(data["unit"]),
            role=data["role"],
            samples=tuple(float(s) for s in data["samples"]),
            extra=dict(data.get("extra") or {}),
            note=str(data.get("note") or ""),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One target of the issues: the value it is about, its limit, and the baseline next to it.

    ``value`` is what the target constrains (a median, a p95, a ratio of medians, a difference),
    in ``unit``; it is met when ``value <= limit``. ``ours_value`` and ``baseline_value`` are the
    same measure taken on our variant and on its baseline, in ``compared_unit``, so the report can
    print both and their ratio whatever kind of target it is.
    """

    description: str
    value: float
    limit: float
    unit: str
    measure: str
    ours: str
    ours_value: float
    compared_unit: str
    baseline: str | None = None
    baseline_value: float = math.nan

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when the value could not be measured."""
        if math.isnan(self.value):
            return None
        return self.value <= self.limit

    @property
    def ratio(self) -> float:
        """``ours_value / baseline_value``; NaN without a baseline or when a value is <= 0."""
        if self.ours_value <= 0 or self.baseline_value <= 0:
            return math.nan
        return ratio(self.ours_value, self.baseline_value)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return {
            "description": self.description,
            "value": _finite(self.value),
            "limit": self.limit,
            "unit": self.unit,
            "measure": self.measure,
            "ours": self.ours,
            "ours_value": _finite(self.ours_value),
            "compared_unit": self.compared_unit,
            "baseline": self.baseline,
            "baseline_value": _finite(self.baseline_value),
            "ratio": _finite(self.ratio),
            "met": self.met,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        """Rebuild a target written by :meth:`to_json`."""
        return cls(
            description=str(data["description"]),
            value=_number(data.get("value")),
            limit=float(data["limit"]),
            unit=str(data["unit"]),
            measure=str(data["measure"]),
            ours=str(data["ours"]),
            ours_value=_number(data.get("ours_value")),
            compared_unit=str(data["compared_unit"]),
            baseline=data.get("baseline"),
            baseline_value=_number(data.get("baseline_value")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioResult:
    """Everything one scenario measured in one run, as stored in ``bench/results/<name>.json``."""

    name: str
    title: str
    description: str
    level: str
    started: str
    duration: float
    machine: Mapping[str, Any]
    series: tuple[Series, ...]
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def get(self, key: str) -> Series | None:
        """Return the series with this key, or None."""
        return next((s for s in self.series if s.key == key), None)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "level": self.level,
            "started": self.started,
            "duration": self.duration,
            "machine": dict(self.machine),
            "parameters": dict(self.parameters),
            "notes": list(self.notes),
            "error": self.error,
            "series": [s.to_json() for s in self.series],
            "targets": [t.to_json() for t in self.targets],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScenarioResult:
        """Rebuild a result written by :meth:`to_json`.

        Raises:
            ValueError: the file was written by another schema version.
        """
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"unsupported result schema {data.get('schema')!r}")
        return cls(
            name=str(data["name"]),
            title=str(data["title"]),
            description=str(data.get("description") or ""),
            level=str(data["level"]),
            started=str(data["started"]),
            duration=float(data["duration"]),
            machine=dict(data.get("machine") or {}),
            parameters=dict(data.get("parameters") or {}),
            notes=tuple(str(n) for n in data.get("notes") or ()),
            error=data.get("error"),
            series=tuple(Series.from_json(s) for s in data["series"]),
            targets=tuple(Target.from_json(t) for t in data.get("targets") or ()),
        )

    def write(self, directory: Path) -> Path:
        """Write ``<directory>/<name>.json`` and return its path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> ScenarioResult:
        """Read a result file."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
