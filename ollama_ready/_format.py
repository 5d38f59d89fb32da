"""Human-readable numbers, the way Ollama prints them."""

from __future__ import annotations

__all__ = ["human_bytes", "human_seconds"]

_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))


def human_bytes(count: int | None) -> str:
    """Format a byte count in decimal units like Ollama's ``format.HumanBytes`` (``4.7 GB``)."""
    if count is None:
        return "unknown"
    for unit, size in _UNITS:
        if count >= size:
            value = count / size
            if value >= 10 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{count} B"


def human_seconds(seconds: float) -> str:
    """Format a duration compactly: ``850 ms``, ``12.3 s``, ``4m05s``, ``1h02m``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
