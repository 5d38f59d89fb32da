"""Typed pull events, progress snapshots and the reporters that render them.

The client yields :class:`PullEvent` values; a :class:`ProgressAggregator` folds them into
immutable :class:`ProgressSnapshot` values (phase, per-layer and total bytes, bytes already present,
a smoothed rate and an ETA); a reporter observes the snapshots. Reporters never influence the pull.

Reporters, built by :func:`make_reporter`:

- ``"auto"``: a tqdm bar in a terminal, the tqdm widget in Jupyter, ``"lines"`` otherwise.
- ``"lines"``: a plain line per 5 % of a layer or per 10 s, no ANSI codes (``docker logs``, CI).
- ``"json"``: the same cadence, one JSON object per line (log pipelines).
- ``"none"``: silence.
- any callable taking a :class:`ProgressSnapshot`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from ollama_ready._reporters import JsonReporter, LinesReporter, NullReporter, TqdmReporter
from ollama_ready.clock import SYSTEM_CLOCK, Clock
from ollama_ready.errors import ConfigError, ProtocolError

__all__ = [
    "JsonReporter",
    "LayerProgress",
    "LinesReporter",
    "NullReporter",
    "Phase",
    "REPORTER_NAMES",
    "ProgressAggregator",
    "ProgressSnapshot",
    "PullEvent",
    "Reporter",
    "TqdmReporter",
    "make_reporter",
]

Phase = Literal["manifest", "downloading", "verifying", "writing", "done", "retrying", "failed"]
"""Where a pull stands. ``retrying`` and ``failed`` are set by the pull engine, not the server."""

Reporter = Callable[["ProgressSnapshot"], None]
"""Anything that observes progress: a function or an object with ``__call__(snapshot)``."""

REPORTER_NAMES = ("auto", "lines", "json", "none")

# Rate smoothing: an exponential moving average with this time constant, sampled at most this often.
_RATE_TIME_CONSTANT = 5.0
_RATE_MIN_SAMPLE = 0.5


@dataclass(frozen=True, slots=True)
class PullEvent:
    """One line of an ``/api/pull`` (or ``/api/create``) NDJSON stream.

    Ollama omits zero values, so ``digest``, ``total`` and ``completed`` may be ``None``.
    """

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PullEvent:
        """Build an event from a decoded line; raise :class:`ProtocolError` on a wrong shape.

        Out-of-range numbers (negative, NaN, infinite) are dropped to ``None`` rather than
        trusted: a progress display must never crash on a confused server.
        """
        status = obj.get("status")
        if not isinstance(status, str):
            raise ProtocolError(f"pull stream line has no status string: {_preview(obj)}")
        digest = obj.get("digest")
        if digest is not None and not isinstance(digest, str):
            raise ProtocolError(f"pull stream line has a non-string digest: {_preview(obj)}")
        return cls(
            status=status,
            digest=digest or None,
            total=_byte_count(obj.get("total"), obj),
            completed=_byte_count(obj.get("completed"), obj),
        )

    @property
    def layer(self) -> str | None:
        """The short layer id Ollama prints (``digest[7:19]``), if this event names a blob."""
        if self.digest and self.digest.startswith("sha256:"):
            return self.digest[7:19]
        return None


def _byte_count(value: object, obj: Mapping[str, Any]) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value < 0:
            return None
        return int(value)
    raise ProtocolError(f"pull stream line has a non-numeric byte count: {_preview(obj)}")


def _preview(obj: object, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerProgress:
    """The progress of one blob of a model.

    ``cached`` is what the server already had when the layer first appeared in this pull: the whole
    blob for a cache hit, the partial data for a resumed download.
    """

    digest: str
    total: int | None
    completed: int
    cached: int

    @property
    def short(self) -> str:
        """The 12-character id Ollama prints (``pulling 1df98b4ea3fe``)."""
        return self.digest[7:19] if self.digest.startswith("sha256:") else self.digest

    @property
    def fraction(self) -> float | None:
        """Completed share of the blob in ``[0, 1]``, or ``None`` while the size is unknown."""
        if not self.total:
            return None
        return min(1.0, self.completed / self.total)

    @property
    def done(self) -> bool:
        """Whether every byte of the blob is there."""
        return self.total is not None and self.completed >= self.total


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressSnapshot:
    """An immutable view of one pull at one moment.

    Totals become known layer by layer (Ollama announces each blob only when it starts on it), so
    ``total`` is the sum of the sizes known so far and grows during the pull.
    """

    model: str
    phase: Phase
    status: str
    layers: tuple[LayerProgress, ...] = ()
    layer: LayerProgress | None = None
    completed: int = 0
    total: int | None = None
    cached: int = 0
    downloaded: int = 0
    rate: float | None = None
    eta: float | None = None
    elapsed: float = 0.0
    attempt: int = 1
    message: str | None = None

    @property
    def fraction(self) -> float | None:
        """Completed share of the known total in ``[0, 1]``; ``None`` before any size is known."""
        if not self.total:
            return None
        return min(1.0, self.completed / self.total)

    @property
    def finished(self) -> bool:
        """Whether this is the last snapshot of the pull (done or failed)."""
        return self.phase in ("done", "failed")

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping (the current layer only, rates rounded)."""
        layer = self.layer
        return {
            "model": self.model,
            "phase": self.phase,
            "status": self.status,
            "attempt": self.attempt,
            "layer": layer.short if layer else None,
            "layer_completed": layer.completed if layer else None,
            "layer_total": layer.total if layer else None,
            "completed": self.completed,
            "total": self.total,
            "cached": self.cached,
            "downloaded": self.downloaded,
            "rate": None if self.rate is None else round(self.rate, 1),
            "eta": None if self.eta is None else round(self.eta, 1),
            "elapsed": round(self.elapsed, 3),
            "message": self.message,
        }


@dataclass(slots=True)
class _RateMeter:
    """An exponential moving average of bytes per second over the downloaded counter."""

    rate: float | None = None
    _at: float | None = None
    _bytes: int = 0

    def sample(self, now: float, downloaded: int) -> None:
        if self._at is None:
            self._at, self._bytes = now, downloaded
            return
        elapsed = now - self._at
        if elapsed < _RATE_MIN_SAMPLE:
            return
        instant = max(0, downloaded - self._bytes) / elapsed
        if self.rate is None:
            self.rate = instant
        else:
            weight = 1.0 - math.exp(-elapsed / _RATE_TIME_CONSTANT)
            self.rate += weight * (instant - self.rate)
        self._at, self._bytes = now, downloaded

    def restart(self) -> None:
        """Forget the last sample (keep the rate): the time between attempts is not a transfer."""
        self._at = None


@dataclass(slots=True)
class _State:
    phase: Phase = "manifest"
    status: str = "pulling manifest"
    layers: dict[str, LayerProgress] = field(default_factory=dict)
    current: str | None = None
    downloaded: int = 0
    attempt: int = 1
    message: str | None = None
    # A layer whose one line so far said "complete": a cache hit, unless a second line follows.
    complete_on_sight: str | None = None


class ProgressAggregator:
    """Fold the events of one pull (across its attempts) into :class:`ProgressSnapshot` values.

    Byte accounting: the first report of a layer counts as already present (``cached``: a cache
    hit, or partial data the server resumes from); growth after that counts as ``downloaded``, also
    across retries. A cache hit is one line saying "complete"; a small blob that is complete on
    its first line but keeps being reported was downloaded, and is counted so once that is seen.
    Numbers a confused server sends (negative, NaN, ``completed > total``) are clamped, never
    trusted and never fatal.
    """

    def __init__(self, model: str, *, clock: Clock | None = None) -> None:
        self.model = model
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._start = self._clock.monotonic()
        self._state = _State()
        self._rate = _RateMeter()
        # Sums over the layers, kept up to date as layers change: a pull engine reads
        # ``completed`` after every line, and most lines change one layer or none.
        self._completed = 0
        self._cached = 0
        self._known_total = 0
        self._known_totals = 0  # how many layers have a known total
        self._layers: tuple[LayerProgress, ...] = ()  # rebuilt only when a layer changed
        self._dirty = False
        self._last = self._build(self._start)
        self._fed_at: float | None = None  # when the last event fed came, if not published

    @property
    def snapshot(self) -> ProgressSnapshot:
        """The latest snapshot (built now if events were fed since the last one)."""
        if self._fed_at is not None:
            self._publish(self._fed_at)
        return self._last

    @property
    def phase(self) -> Phase:
        """The phase now; cheaper than ``snapshot.phase`` after :meth:`feed`."""
        return self._state.phase

    @property
    def status(self) -> str:
        """The status text of the last event; cheaper than ``snapshot.status``."""
        return self._state.status

    @property
    def completed(self) -> int:
        """The bytes present over every layer; cheaper than ``snapshot.completed``."""
        return self._completed

    def update(self, event: PullEvent) -> ProgressSnapshot:
        """Apply one stream event and return the new snapshot."""
        self.feed(event)
        return self.snapshot

    def feed(self, event: PullEvent) -> None:
        """Apply one stream event without building a snapshot until :attr:`snapshot` is read.

        For a pull nobody watches: the snapshot is what most of the cost of an event is.
        """
        state = self._state
        state.status = event.status
        state.message = None
        fresh, state.complete_on_sight = state.complete_on_sight, None
        if fresh is not None and fresh == event.digest:
            self._downloaded_after_all(fresh)
        if event.digest:
            self._apply_layer(event.digest, _clean(event.total), _clean(event.completed))
            state.phase = "downloading"
        else:
            state.phase = _phase_of(event.status, state.phase)
        now = self._clock.monotonic()
        if state.phase == "downloading":
            self._rate.sample(now, state.downloaded)
        self._fed_at = now

    def begin_attempt(self, attempt: int) -> ProgressSnapshot:
        """Mark the start of attempt ``attempt`` (the server starts again with the manifest)."""
        state = self._state
        state.attempt = attempt
        state.phase = "manifest"
        state.status = "pulling manifest"
        state.current = None
        state.message = None
        self._rate.restart()
        return self._publish(self._clock.monotonic())

    def retrying(self, attempt: int, delay: float, cause: str) -> ProgressSnapshot:
        """Record that attempt ``attempt`` failed with ``cause``; the next starts in ``delay`` s."""
        state = self._state
        state.phase = "retrying"
        state.message = (
            f"attempt {attempt} failed ({cause}); retrying in {delay:.1f}s, "
            "the server resumes from the data it kept"
        )
        return self._publish(self._clock.monotonic())

    def finish(self, message: str | None = None) -> ProgressSnapshot:
        """Mark the pull as done (``message`` says why, e.g. the model was already present)."""
        state = self._state
        state.phase = "done"
        state.message = message
        return self._publish(self._clock.monotonic())

    def fail(self, message: str) -> ProgressSnapshot:
        """Mark the pull as failed with ``message``."""
        state = self._state
        state.phase = "failed"
        state.message = message
        return self._publish(self._clock.monotonic())

    def _apply_layer(self, digest: str, total: int | None, completed: int | None) -> None:
        state = self._state
        done = completed or 0  # Ollama omits zero values
        if total is not None:
            done = min(done, total)
        previous = state.layers.get(digest)
        state.current = digest
        if previous is not None and previous.completed == done and total in (None, previous.total):
            return  # the same line again: nothing changed
        self._dirty = True
        if previous is None:
            layer = LayerProgress(digest=digest, total=total, completed=done, cached=done)
            self._cached += done
            if total is not None and done == total:
                state.complete_on_sight = digest
        else:
            if done > previous.completed:
                state.downloaded += done - previous.completed
            layer = LayerProgress(
                digest=digest,
                total=total if total is not None else previous.total,
                completed=done,
                cached=previous.cached,
            )
            self._completed -= previous.completed
            if previous.total is not None:
                self._known_total -= previous.total
                self._known_totals -= 1
        self._completed += done
        if layer.total is not None:
            self._known_total += layer.total
            self._known_totals += 1
        state.layers[digest] = layer

    def _downloaded_after_all(self, digest: str) -> None:
        state = self._state
        layer = state.layers[digest]
        self._dirty = True
        state.downloaded += layer.cached
        self._cached -= layer.cached
        state.layers[digest] = LayerProgress(
            digest=digest, total=layer.total, completed=layer.completed, cached=0
        )

    def _publish(self, now: float) -> ProgressSnapshot:
        self._last = self._build(now)
        self._fed_at = None
        return self._last

    def _build(self, now: float) -> ProgressSnapshot:
        state = self._state
        if self._dirty:
            self._dirty = False
            self._layers = tuple(state.layers.values())
        layers = self._layers
        total = self._known_total if self._known_totals else None
        completed = self._completed
        cached = self._cached
        rate = self._rate.rate
        eta = None
        if state.phase == "downloading" and total is not None and rate:
            eta = max(0, total - completed) / rate
        return ProgressSnapshot(
            model=self.model,
            phase=state.phase,
            status=state.status,
            layers=layers,
            layer=state.layers.get(state.current) if state.current else None,
            completed=completed,
            total=total,
            cached=cached,
            downloaded=state.downloaded,
            rate=rate,
            eta=eta,
            elapsed=max(0.0, now - self._start),
            attempt=state.attempt,
            message=state.message,
        )


def _clean(value: float | None) -> int | None:
    """Return a usable byte count, or ``None`` for anything negative, NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    count = int(value)
    return count if count >= 0 else None


def _phase_of(status: str, current: Phase) -> Phase:
    text = status.lower()
    if text == "pulling manifest":
        return "manifest"
    if text.startswith("verifying"):
        return "verifying"
    if text.startswith(("writing", "removing", "couldn't remove")):
        return "writing"
    if text == "success":
        return "done"
    return current


def make_reporter(
    spec: str | Reporter | None = "auto",
    *,
    stream: TextIO | None = None,
    label: str | None = None,
) -> Reporter:
    """Return the reporter named ``spec`` (``auto``, ``lines``, ``json``, ``none``), or ``spec``.

    ``None`` means ``"none"``; a callable is returned as is. ``stream`` is where text goes (default:
    ``sys.stderr``, looked up at write time). ``label`` replaces the model name in the output of the
    built-in reporters.
    ``auto`` picks the tqdm widget in Jupyter, a tqdm bar when ``stream`` is a terminal, and plain
    lines otherwise.

    Raises:
        ConfigError: ``spec`` is an unknown name.
    """
    if spec is None:
        return NullReporter()
    if callable(spec):
        return spec
    name = spec.strip().lower()
    if name == "none":
        return NullReporter()
    if name == "lines":
        return LinesReporter(stream, label=label)
    if name == "json":
        return JsonReporter(stream, label=label)
    if name == "auto":
        if _in_notebook():
            return TqdmReporter(stream, notebook=True, label=label)
        target = stream if stream is not None else sys.stderr
        if _isatty(target) and _columns(target) > 0:
            return TqdmReporter(stream, label=label)
        # Not a terminal (docker logs, CI), or one that reports no width (some `docker exec -t`,
        # serial consoles): a bar would draw nothing, plain lines always read well.
        return LinesReporter(stream, label=label)
    raise ConfigError(
        f"unknown progress reporter {spec!r}; use one of {', '.join(REPORTER_NAMES)} or a callable"
    )


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (checked without importing IPython)."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        shell = get_ipython()
    except Exception:  # a half-initialised IPython must not break progress
        return False
    config = getattr(shell, "config", None)
    try:
        return config is not None and "IPKernelApp" in config
    except TypeError:
        return False
