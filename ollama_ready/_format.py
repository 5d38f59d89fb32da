"""Numbers as Ollama writes and reads them: human-readable sizes and durations, Go durations."""

from __future__ import annotations

import math
import re

__all__ = ["go_duration_seconds", "human_bytes", "human_seconds"]

_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))
_GO_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_GO_UNIT = r"(ns|us|µs|μs|ms|s|m|h)"
_GO_DURATION = re.compile(rf"[-+]?(?:{_GO_NUMBER}{_GO_UNIT})+")
_GO_DURATION_PART = re.compile(rf"({_GO_NUMBER}){_GO_UNIT}")
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def human_bytes(count: float | None) -> str:
    """Format a byte count in decimal units like Ollama's ``format.HumanBytes`` (``4.7 GB``).

    ``None`` and NaN read ``unknown``; a fraction of a byte is dropped.
    """
    if count is None or math.isnan(count):
        return "unknown"
    for unit, size in _UNITS:
        if count >= size:
            value = count / size
            if value >= 10 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{int(count)} B"


def human_seconds(seconds: float | None) -> str:
    """Format a duration compactly: ``0.4s``, ``12s``, ``9m02s``, ``1h02m``; ``?`` when unknown.

    ``None``, NaN and infinity are unknown; a negative duration reads as ``0.0s``.
    """
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def go_duration_seconds(text: str) -> float | None:
    """Return the seconds of a Go duration (``500ms``, ``-1h30m``), or None if it is not one.

    The form is Go's ``time.ParseDuration`` (every number has a unit, so ``"0"`` is not one
    here); the range is not checked.
    """
    if not _GO_DURATION.fullmatch(text):
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    total = 0.0
    for number, unit in _GO_DURATION_PART.findall(text.lstrip("+-")):
        total += float(number) * _GO_UNIT_SECONDS[unit]
    return sign * total
