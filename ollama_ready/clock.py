"""Time as a parameter: the :class:`Clock` protocol and the one :class:`Deadline` per operation."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "Deadline"]


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time that can sleep. The :mod:`time` module is one."""

    def monotonic(self) -> float:
        """Return seconds from an arbitrary fixed point; never goes backwards."""
        ...

    def sleep(self, seconds: float, /) -> None:
        """Block for ``seconds``."""
        ...


SYSTEM_CLOCK: Clock = time


class Deadline:
    """The remaining time budget of one operation, shared by all of its phases.

    ``Deadline(None)`` never expires. Phases ask :meth:`remaining` and never wait past it;
    :meth:`sleep` sleeps at most until the deadline. :meth:`cancel` ends it early from any thread
    (asyncio cancellation, a signal handler) and wakes a :meth:`sleep` in progress.
    """

    __slots__ = ("_cancelled", "_clock", "_end", "_start", "timeout")

    def __init__(self, timeout: float | None, *, clock: Clock | None = None) -> None:
        if timeout is not None and (math.isnan(timeout) or timeout < 0):
            raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.timeout = timeout
        self._start = self._clock.monotonic()
        self._end = math.inf if timeout is None else self._start + timeout
        self._cancelled = threading.Event()

    @property
    def clock(self) -> Clock:
        """The clock this deadline reads."""
        return self._clock

    def elapsed(self) -> float:
        """Seconds since the deadline was created."""
        return self._clock.monotonic() - self._start

    def remaining(self) -> float:
        """Seconds left, never negative; ``math.inf`` when there is no deadline."""
        if self._cancelled.is_set():
            return 0.0
        return max(0.0, self._end - self._clock.monotonic())

    @property
    def expired(self) -> bool:
        """Whether no time is left (or the deadline was cancelled)."""
        return self._cancelled.is_set() or self._clock.monotonic() >= self._end

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """End the deadline now; every phase sharing it stops at its next check."""
        self._cancelled.set()

    def bound(self, seconds: float | None) -> float | None:
        """Return ``seconds`` capped at the remaining time (``None`` means no own limit)."""
        left = self.remaining()
        if seconds is None:
            return None if math.isinf(left) else left
        return min(seconds, left)

    def sleep(self, seconds: float) -> float:
        """Sleep ``seconds`` or until the deadline, whichever is first; return the time slept."""
        duration = max(0.0, min(seconds, self.remaining()))
        if duration <= 0:
            return 0.0
        if self._clock is SYSTEM_CLOCK:
            # An Event wait sleeps like time.sleep but wakes at once on cancel().
            self._cancelled.wait(duration)
            return duration
        self._clock.sleep(duration)
        return duration

    def sub(self, timeout: float | None) -> Deadline:
        """Return a deadline ending ``timeout`` from now or with this one, whichever is first."""
        left = self.remaining()
        if timeout is None:
            own: float | None = None if math.isinf(left) else left
        else:
            own = min(timeout, left)
        child = Deadline(own, clock=self._clock)
        child._cancelled = self._cancelled  # cancelling the parent cancels the child
        return child

    def __repr__(self) -> str:
        if math.isinf(self._end):
            return "Deadline(None)"
        return f"Deadline(timeout={self.timeout!r}, remaining={self.remaining():.3f})"
