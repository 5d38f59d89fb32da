"""Typed pull events, progress snapshots and the reporters that render them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ollama_ready.errors import ProtocolError

__all__ = ["PullEvent"]


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
