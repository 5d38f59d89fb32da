"""The built-in progress reporters: silent, plain lines, JSON lines and tqdm bars.

Reporters only observe snapshots. Each is safe to share between threads (``pull_models`` feeds one
reporter from several pulls at once) and keeps its state per model. Text reporters look up
``sys.stderr`` at write time when no stream was given, so redirection and capture keep working.
tqdm is imported only when a bar is first drawn.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ollama_ready._format import human_bytes, human_seconds

if TYPE_CHECKING:
    from ollama_ready.progress import ProgressSnapshot

__all__ = [
    "JsonReporter",
    "LinesReporter",
    "NullReporter",
    "TqdmReporter",
    "format_bytes",
]


def format_bytes(count: float | None) -> str:
    """Format a byte count the way ``ollama pull`` does (decimal units: ``262 KB``, ``6.7 GB``).

    Unknown (``None``, NaN) reads ``?``; a negative count reads ``0 B``.
    """
    if count is None or math.isnan(count):
        return "?"
    return human_bytes(max(0.0, count))


def describe(snapshot: ProgressSnapshot) -> str:
    """Return one plain-text line describing ``snapshot`` (without the model prefix)."""
    phase = snapshot.phase
    if phase == "downloading" and snapshot.layer is not None:
        return _layer_text(snapshot)
    if phase == "manifest":
        suffix = f" (attempt {snapshot.attempt})" if snapshot.attempt > 1 else ""
        return f"pulling manifest{suffix}"
    if phase == "done":
        if snapshot.message:
            return snapshot.message
        return (
            f"success: {format_bytes(snapshot.total or 0)} in {human_seconds(snapshot.elapsed)} "
            f"({format_bytes(snapshot.downloaded)} downloaded, "
            f"{format_bytes(snapshot.cached)} already present)"
        )
    if phase == "failed":
        return f"failed: {snapshot.message or snapshot.status}"
    if phase == "retrying":
        return snapshot.message or "retrying"
    return snapshot.status


def _layer_text(snapshot: ProgressSnapshot) -> str:
    layer = snapshot.layer
    assert layer is not None
    fraction = layer.fraction
    if fraction is None:
        text = f"pulling {layer.short}: {format_bytes(layer.completed)}"
    else:
        # Floor, so a layer never reads 100% before its last byte.
        text = f"pulling {layer.short}: {int(fraction * 100):3d}% of {format_bytes(layer.total)}"
    if snapshot.rate is not None:
        text += f", {format_bytes(snapshot.rate)}/s"
    if snapshot.eta is not None:
        text += f", eta {human_seconds(snapshot.eta)}"
    return text


class NullReporter:
    """Report nothing."""

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        """Ignore ``snapshot``."""

    def __repr__(self) -> str:
        return "NullReporter()"


@dataclass(slots=True)
class _Cadence:
    """When a periodic reporter last spoke about one model."""

    phase: str | None = None
    layer: str | None = None
    attempt: int = 0
    bucket: int = -1
    at: float = -math.inf


class _Periodic:
    """Speak on a phase or layer change, per ``step`` % of a layer, or every ``interval`` s."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        step: float = 5.0,
        interval: float = 10.0,
        label: str | None = None,
    ) -> None:
        if not step > 0 or not interval > 0:
            raise ValueError("step and interval must be positive")
        self._stream = stream
        self._label = label
        self._step = step
        self._interval = interval
        self._lock = threading.Lock()
        self._cadence: dict[str, _Cadence] = {}

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        """Write a line for ``snapshot`` if it is due."""
        with self._lock:
            if not self._due(snapshot):
                return
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(self._render(snapshot) + "\n")
            stream.flush()

    def _render(self, snapshot: ProgressSnapshot) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(step={self._step}, interval={self._interval})"

    def _due(self, snapshot: ProgressSnapshot) -> bool:
        cadence = self._cadence.setdefault(snapshot.model, _Cadence())
        if snapshot.finished:
            del self._cadence[snapshot.model]
            return True
        layer = snapshot.layer
        digest = layer.digest if layer is not None else None
        fraction = layer.fraction if layer is not None else None
        bucket = -1 if fraction is None else int(fraction * 100 // self._step)
        changed = (
            snapshot.phase != cadence.phase
            or snapshot.attempt != cadence.attempt
            or (snapshot.phase == "downloading" and digest != cadence.layer)
        )
        if not changed:
            advanced = snapshot.phase == "downloading" and bucket > cadence.bucket
            if not advanced and snapshot.elapsed - cadence.at < self._interval:
                return False
        cadence.phase, cadence.layer, cadence.attempt = snapshot.phase, digest, snapshot.attempt
        cadence.bucket, cadence.at = bucket, snapshot.elapsed
        return True


class LinesReporter(_Periodic):
    """Write one plain line per phase change, new layer, ``step`` % of a layer or ``interval`` s.

    No ANSI codes and no carriage returns: made for ``docker logs`` and CI logs. Example::

        llama3.2:1b: pulling 74701a8c35f6:  45% of 1.3 GB, 41 MB/s, eta 17s
    """

    def _render(self, snapshot: ProgressSnapshot) -> str:
        return f"{self._label or snapshot.model}: {describe(snapshot)}"


class JsonReporter(_Periodic):
    """Write one JSON object per line, at the cadence of :class:`LinesReporter` (log pipelines)."""

    def _render(self, snapshot: ProgressSnapshot) -> str:
        record = snapshot.as_dict()
        if self._label:
            record["model"] = self._label
        return json.dumps(record, separators=(",", ":"))


_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}"


class TqdmReporter:
    """Draw one tqdm bar per model, in a terminal or as the Jupyter widget (``notebook=True``).

    The bar shows the snapshot's own numbers (smoothed rate, ETA), not tqdm's, and is redrawn at
    most every ``refresh`` seconds of pull time. tqdm is imported when the first bar is drawn.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        notebook: bool = False,
        refresh: float = 0.1,
        ncols: int | None = None,
        label: str | None = None,
    ) -> None:
        self._stream = stream
        self._label = label
        self._notebook = notebook
        self._refresh = refresh
        self._ncols = ncols
        self._lock = threading.Lock()
        self._bars: dict[str, tuple[Any, _Cadence]] = {}

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        """Draw ``snapshot`` on its model's bar."""
        with self._lock:
            entry = self._bars.get(snapshot.model)
            if snapshot.phase in ("retrying", "failed") or (entry is None and snapshot.finished):
                self._write(f"{self._label or snapshot.model}: {describe(snapshot)}")
            if snapshot.total is None and entry is None:
                return  # nothing to draw until a size is known
            if entry is None:
                entry = (self._open(self._label or snapshot.model), _Cadence())
                self._bars[snapshot.model] = entry
            bar, cadence = entry
            self._draw(bar, cadence, snapshot)
            if snapshot.finished:
                bar.close()
                del self._bars[snapshot.model]

    def _draw(self, bar: Any, cadence: _Cadence, snapshot: ProgressSnapshot) -> None:
        layer = snapshot.layer.digest if snapshot.layer is not None else None
        changed = snapshot.phase != cadence.phase or layer != cadence.layer
        if not (changed or snapshot.finished or snapshot.elapsed - cadence.at >= self._refresh):
            return
        cadence.phase, cadence.layer, cadence.at = snapshot.phase, layer, snapshot.elapsed
        if snapshot.total is not None:
            bar.total = snapshot.total
        bar.n = min(snapshot.completed, snapshot.total or snapshot.completed)
        bar.set_postfix_str(self._postfix(snapshot), refresh=False)
        bar.refresh()

    @staticmethod
    def _postfix(snapshot: ProgressSnapshot) -> str:
        if snapshot.phase == "downloading" and snapshot.layer is not None:
            parts = [snapshot.layer.short]
            if snapshot.rate is not None:
                parts.append(f"{format_bytes(snapshot.rate)}/s")
            if snapshot.eta is not None:
                parts.append(f"eta {human_seconds(snapshot.eta)}")
            return " ".join(parts)
        if snapshot.phase == "done":
            return "success"
        return snapshot.status if snapshot.phase != "failed" else "failed"

    def _factory(self) -> Any:
        if self._notebook:
            from tqdm.auto import tqdm as auto_tqdm

            return auto_tqdm
        from tqdm import tqdm as std_tqdm

        return std_tqdm

    def _open(self, model: str) -> Any:
        options: dict[str, Any] = {
            "total": None,
            "desc": model,
            "unit": "B",
            "unit_scale": True,
            "unit_divisor": 1000,
            "bar_format": _BAR_FORMAT,
            "leave": True,
            "mininterval": 0,
            "ncols": self._ncols,
            "file": self._stream if self._stream is not None else sys.stderr,
        }
        try:
            return self._factory()(**options)
        except ImportError:
            # tqdm's notebook widget needs ipywidgets; fall back to the text bar.
            from tqdm import tqdm as std_tqdm

            return std_tqdm(**options)

    def _write(self, line: str) -> None:
        from tqdm import tqdm as std_tqdm

        std_tqdm.write(line, file=self._stream if self._stream is not None else sys.stderr)

    def __repr__(self) -> str:
        return f"TqdmReporter(notebook={self._notebook})"
