"""Human-readable numbers, the way Ollama prints them."""

from __future__ import annotations

import math

__all__ = ["human_bytes", "human_seconds"]

_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))


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
