"""Simulated blob downloads shared by concurrent pulls, as in Ollama's ``server/download.go``.

One :class:`Download` exists per digest while any pull waits on it; every waiter reads the same
progress. When the last waiter leaves before the blob is complete, the download stops and its
bytes are kept as a *partial*; the next pull of that digest resumes from them. No bytes exist:
progress is computed from the elapsed time and the bandwidth.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Download", "DownloadManager", "StreamFault"]


@dataclass(slots=True)
class StreamFault:
    """A fault armed for the next pull stream(s), fired once the pull reaches ``at_fraction``.

    ``kind`` is ``"error"`` (a final ``{"error": message}`` line), ``"reset"`` (a TCP RST) or
    ``"stall"`` (no progress for ``seconds``; ``mode`` ``"repeat"`` re-sends the same line
    every tick, ``"silent"`` sends nothing). ``remaining`` counts the pulls still to hit;
    None means every pull until the faults are cleared.
    """

    kind: str
    at_fraction: float
    message: str = ""
    seconds: float = 0.0
    mode: str = "repeat"
    remaining: int | None = 1


class Download:
    """The shared state of one blob download."""

    __slots__ = (
        "_completed",
        "_folded_at",
        "cap",
        "digest",
        "frozen_until",
        "started_at",
        "total",
        "waiters",
    )

    def __init__(self, digest: str, total: int, completed: int, now: float) -> None:
        self.digest = digest
        self.total = total
        self._completed = float(completed)
        self._folded_at = now
        self.started_at = now
        self.waiters = 0
        self.cap: int | None = None
        self.frozen_until = 0.0

    def __repr__(self) -> str:
        done = f"{int(self._completed)}/{self.total}"
        return f"Download({self.digest[7:19]}, {done}, waiters={self.waiters})"


class DownloadManager:
    """Create, share, pause and resume simulated downloads keyed by digest (thread-safe)."""

    def __init__(
        self,
        *,
        bandwidth: float | None,
        blob_min_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Download] = {}
        self._partials: dict[str, int] = {}
        self._bandwidth = _check_bandwidth(bandwidth)
        self._blob_min_seconds = blob_min_seconds
        self._clock = clock

    @property
    def bandwidth(self) -> float | None:
        """Simulated bytes per second per download; None means unlimited."""
        return self._bandwidth

    @property
    def blob_min_seconds(self) -> float:
        """The least time a blob download takes, however fast the bandwidth."""
        return self._blob_min_seconds

    def set_bandwidth(self, bandwidth: float | None) -> None:
        """Change the speed of running and future downloads from now on."""
        bandwidth = _check_bandwidth(bandwidth)
        with self._lock:
            now = self._clock()
            for download in self._active.values():
                self._advance(download, now)
            self._bandwidth = bandwidth

    def acquire(self, digest: str, total: int) -> Download:
        """Join the download of ``digest``, starting or resuming it if nobody else waits."""
        with self._lock:
            download = self._active.get(digest)
            if download is None:
                now = self._clock()
                resumed = min(self._partials.pop(digest, 0), total)
                download = Download(digest, total, resumed, now)
                self._active[digest] = download
            download.waiters += 1
            return download

    def release(self, download: Download) -> None:
        """Leave a download; the last waiter to leave pauses it and keeps its bytes."""
        with self._lock:
            download.waiters -= 1
            if download.waiters > 0 or self._active.get(download.digest) is not download:
                return
            self._advance(download, self._clock())
            del self._active[download.digest]
            self._partials[download.digest] = int(download._completed)

    def poll(self, download: Download) -> tuple[int, bool]:
        """Return ``(completed, done)`` for a download, advancing its simulated progress."""
        with self._lock:
            now = self._clock()
            self._advance(download, now, polling=True)
            completed = int(download._completed)
            done = (
                completed >= download.total
                and now - download.started_at >= self._blob_min_seconds
                and now >= download.frozen_until
            )
            return completed, done

    def finish(self, download: Download) -> bool:
        """Retire a completed download; False if it was already retired or forgotten."""
        with self._lock:
            if self._active.get(download.digest) is not download:
                return False
            del self._active[download.digest]
            self._partials.pop(download.digest, None)
            return True

    def is_current(self, download: Download) -> bool:
        """Whether ``download`` is still the live download of its digest."""
        with self._lock:
            return self._active.get(download.digest) is download

    def set_cap(self, download: Download, cap: int | None) -> None:
        """Hold progress at ``cap`` bytes (None lifts the hold)."""
        with self._lock:
            self._advance(download, self._clock())
            download.cap = cap

    def freeze(self, download: Download, seconds: float) -> None:
        """Stop progress for ``seconds`` (a stalled blob host)."""
        with self._lock:
            now = self._clock()
            self._advance(download, now)
            download.frozen_until = max(download.frozen_until, now + seconds)

    def partial(self, digest: str) -> int:
        """Bytes of ``digest`` downloaded so far (live or paused), 0 if none."""
        with self._lock:
            download = self._active.get(digest)
            if download is not None:
                self._advance(download, self._clock())
                return int(download._completed)
            return self._partials.get(digest, 0)

    def reset(self, *, keep_partials: bool) -> None:
        """Forget every live download (a restart); keep their bytes as partials if asked."""
        with self._lock:
            now = self._clock()
            for download in self._active.values():
                self._advance(download, now)
                if keep_partials:
                    self._partials[download.digest] = int(download._completed)
            self._active.clear()
            if not keep_partials:
                self._partials.clear()

    def discard_partial(self, digest: str) -> None:
        """Drop the paused bytes of ``digest`` (the blob is now complete on disk)."""
        with self._lock:
            self._partials.pop(digest, None)

    def _advance(self, download: Download, now: float, *, polling: bool = False) -> None:
        """Fold the progress made since the last fold into ``_completed``.

        At unlimited bandwidth a blob completes when it is polled (on a tick), never as a
        side effect of another operation such as setting a cap.
        """
        start = max(download._folded_at, download.frozen_until)
        if now > start and download.waiters > 0:
            limit = float(
                download.total if download.cap is None else min(download.cap, download.total)
            )
            if self._bandwidth is None:
                target = limit if polling else download._completed
            else:
                target = min(limit, download._completed + self._bandwidth * (now - start))
            download._completed = max(download._completed, target)
        download._folded_at = max(download._folded_at, now)


def _check_bandwidth(bandwidth: float | None) -> float | None:
    if bandwidth is None:
        return None
    if math.isnan(bandwidth) or bandwidth <= 0:
        raise ValueError(
            f"bandwidth must be a positive number of bytes per second, got {bandwidth!r}"
        )
    return float(bandwidth)
