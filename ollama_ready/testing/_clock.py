"""A clock whose time only moves when someone sleeps or advances it."""

from __future__ import annotations

import math
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`~ollama_ready.clock.Clock` for tests: ``sleep`` advances time instantly.

    A 10-minute wait runs in no real time. ``sleeps`` records every requested sleep, so tests
    can assert a schedule. ``on_sleep`` hooks let a test change the world at a given time.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Return the current fake time."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float, /) -> None:
        """Advance time by ``seconds`` without blocking."""
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"sleep length must be non-negative, got {seconds!r}")
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (not recorded as a sleep)."""
        with self._lock:
            self._now += seconds

    @property
    def slept(self) -> float:
        """Total seconds slept so far."""
        with self._lock:
            return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:.3f}, sleeps={len(self.sleeps)})"
