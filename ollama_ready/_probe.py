"""One look at a server: check a readiness level once and name what was wrong.

Strategies decide *when* to look; this module decides *how*. A probe returns an
:class:`Observation` when the level is reached and a :class:`ProbeFailure` when it is not.
Errors that no amount of waiting can fix (the host-header guard) propagate to the strategy.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ollama_ready.errors import (
    HostNotAllowed,
    ModelNotPresent,
    OllamaConnectionError,
    OllamaReadyError,
    ProtocolError,
    ResponseError,
)
from ollama_ready.names import ModelName

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

    from ollama_ready.client import OllamaClient, RunningModel
    from ollama_ready.clock import Deadline

__all__ = [
    "FailureKind",
    "Observation",
    "ProbeFailure",
    "RETRYABLE_ERRORS",
    "ReadyLevel",
    "Target",
    "is_fatal",
    "parse_version_spec",
    "probe",
]

# Errors a probe turns into a failure and tries again later; anything else propagates.
RETRYABLE_ERRORS: tuple[type[OllamaReadyError], ...] = (
    OllamaConnectionError,
    ResponseError,
    ProtocolError,
    ModelNotPresent,
)

_LEVEL_ALIASES = {
    "present": "MODEL_PRESENT",
    "model": "MODEL_PRESENT",
    "loaded": "MODEL_LOADED",
    "gpu": "MODEL_ON_GPU",
    "on_gpu": "MODEL_ON_GPU",
}


class ReadyLevel(enum.IntEnum):
    """How ready a server is; each level includes every level below it."""

    SERVER = 1
    """The server answers HTTP."""
    VERSION = 2
    """The server reports a version (that satisfies the requested specifier, if any)."""
    MODEL_PRESENT = 3
    """The model is on the server (``/api/show`` knows it)."""
    MODEL_LOADED = 4
    """The model is loaded in memory (``/api/ps`` lists it)."""
    MODEL_ON_GPU = 5
    """The model is loaded fully on the GPU (``/api/ps`` ``size_vram == size``)."""

    @classmethod
    def parse(cls, value: str | int) -> ReadyLevel:
        """Return the level named by ``value``: a member name, a CLI alias or a number.

        Aliases: ``server``, ``version``, ``model``/``present``, ``loaded``, ``gpu``.

        Raises:
            ValueError: the name is unknown; the message lists the valid names.
        """
        if isinstance(value, int):
            return cls(value)
        key = value.strip().replace("-", "_").upper()
        key = _LEVEL_ALIASES.get(key.lower(), key)
        try:
            return cls[key]
        except KeyError:
            valid = ", ".join([m.name.lower() for m in cls] + sorted(_LEVEL_ALIASES))
            raise ValueError(f"unknown readiness level {value!r}; valid: {valid}") from None

    @property
    def needs_model(self) -> bool:
        """Whether checking this level needs a model name."""
        return self >= ReadyLevel.MODEL_PRESENT


class FailureKind(str, enum.Enum):
    """What kind of thing stood between the server and the requested level."""

    REFUSED = "connection refused"
    NO_ANSWER = "connected but no answer"
    CONNECTION = "connection failed"
    HTTP_STATUS = "HTTP status"
    PROTOCOL = "unexpected answer"
    WRONG_VERSION = "wrong version"
    MODEL_MISSING = "model missing"
    MODEL_NOT_LOADED = "model not loaded"
    MODEL_NOT_ON_GPU = "model not on GPU"


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    """One failed probe: its kind, what exactly was seen and, for HTTP errors, the status."""

    kind: FailureKind
    detail: str
    status: int | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: ``kind`` (its name in lower case), ``detail``, ``status``."""
        return {"kind": self.kind.name.lower(), "detail": self.detail, "status": self.status}

    @classmethod
    def from_error(cls, error: OllamaReadyError) -> ProbeFailure:
        """Classify an error raised by the client during a probe."""
        detail = error.message
        if isinstance(error, OllamaConnectionError):
            kind = {
                "refused": FailureKind.REFUSED,
                "timeout": FailureKind.NO_ANSWER,
            }.get(error.kind, FailureKind.CONNECTION)
            return cls(kind, detail)
        if isinstance(error, ResponseError):
            if f"HTTP {error.status}" not in detail:
                detail = f"HTTP {error.status}: {detail}"
            return cls(FailureKind.HTTP_STATUS, detail, error.status)
        if isinstance(error, ModelNotPresent):
            return cls(FailureKind.MODEL_MISSING, detail)
        return cls(FailureKind.PROTOCOL, detail)


@dataclass(frozen=True, slots=True)
class Observation:
    """A probe that reached its level; ``version`` is set when the probe learned it."""

    level: ReadyLevel
    version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What one probe checks: a level, plus what that level needs.

    At ``SERVER`` level the probe is one request to ``path`` with ``method``; a ``GET`` of
    ``/api/version`` also records the version. Higher levels ask ``/api/version``, then
    ``/api/show`` and ``/api/ps`` for the ``model``.
    """

    level: ReadyLevel = ReadyLevel.SERVER
    version_spec: SpecifierSet | None = None
    model: ModelName | None = None
    model_text: str | None = None
    path: str = "/"
    method: str = "HEAD"


def parse_version_spec(text: str) -> SpecifierSet:
    """Parse a version requirement; a bare version such as ``0.11`` means ``>=0.11``.

    Raises:
        ValueError: the text is neither a specifier set nor a version.
    """
    # Deferred, as below: packaging.specifiers costs ~15 ms of start-up (it loads
    # packaging.tags), and only a version requirement needs it.
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    stripped = text.strip()
    try:
        return SpecifierSet(f">={Version(stripped)}")
    except InvalidVersion:
        pass
    try:
        spec = SpecifierSet(stripped)
    except InvalidSpecifier:
        raise ValueError(
            f"invalid version requirement {text!r}: expected a version such as '0.11' "
            "or a specifier set such as '>=0.11,<1'"
        ) from None
    if not str(spec):
        raise ValueError("the version requirement is empty")
    return spec


def is_fatal(error: OllamaReadyError) -> bool:
    """Whether waiting longer cannot help: Ollama's host-header guard rejects us for good."""
    return isinstance(error, HostNotAllowed)


def probe(
    client: OllamaClient,
    target: Target,
    deadline: Deadline,
    *,
    connect_timeout: float,
    read_timeout: float,
) -> Observation | ProbeFailure:
    """Check ``target`` once, every request bounded by ``deadline``.

    Raises:
        OllamaReadyError: an error no retry can fix (see :func:`is_fatal`), or one that is not
            a probe failure at all.
    """
    try:
        return _check(client, target, _Timeouts(deadline, connect_timeout, read_timeout))
    except _OutOfTime as exc:
        return ProbeFailure(FailureKind.NO_ANSWER, f"no answer within {exc.budget:.3g} s")
    except RETRYABLE_ERRORS as exc:
        if is_fatal(exc):
            raise
        return ProbeFailure.from_error(exc)


class _OutOfTime(Exception):
    def __init__(self, budget: float) -> None:
        super().__init__(budget)
        self.budget = budget


class _Timeouts:
    """Per-request ``(connect, read)`` timeouts that never reach past the deadline."""

    __slots__ = ("_connect", "_deadline", "_read")

    def __init__(self, deadline: Deadline, connect: float, read: float) -> None:
        self._deadline = deadline
        self._connect = connect
        self._read = read

    def next(self) -> tuple[float, float]:
        left = self._deadline.remaining()
        if left <= 0:
            budget = self._deadline.timeout
            raise _OutOfTime(budget if budget is not None and math.isfinite(budget) else 0.0)
        return (min(self._connect, left), min(self._read, left))


def _check(client: OllamaClient, target: Target, timeouts: _Timeouts) -> Observation | ProbeFailure:
    if target.level is ReadyLevel.SERVER and target.version_spec is None:
        if target.method == "GET" and target.path.rstrip("/") == "/api/version":
            return Observation(ReadyLevel.VERSION, client.version(timeout=timeouts.next()))
        client.ping(timeout=timeouts.next(), path=target.path, method=target.method)
        return Observation(ReadyLevel.SERVER)
    version = client.version(timeout=timeouts.next())
    wrong = _version_failure(version, target.version_spec)
    if wrong is not None:
        return wrong
    if target.level <= ReadyLevel.VERSION:
        return Observation(ReadyLevel.VERSION, version)
    # The strategy checked that model levels come with a model.
    assert target.model is not None
    assert target.model_text is not None
    if target.level is ReadyLevel.MODEL_PRESENT:
        client.show(target.model_text, timeout=timeouts.next())
        return Observation(ReadyLevel.MODEL_PRESENT, version)
    running = _find_running(client.ps(timeout=timeouts.next()), target.model)
    if running is None:
        client.show(target.model_text, timeout=timeouts.next())  # ModelNotPresent if absent
        return ProbeFailure(
            FailureKind.MODEL_NOT_LOADED, f"{target.model_text} is present but not loaded"
        )
    if target.level is ReadyLevel.MODEL_LOADED:
        return Observation(ReadyLevel.MODEL_LOADED, version)
    if running.size > 0 and running.size_vram >= running.size:
        return Observation(ReadyLevel.MODEL_ON_GPU, version)
    share = 0 if running.size <= 0 else round(100 * running.size_vram / running.size)
    return ProbeFailure(
        FailureKind.MODEL_NOT_ON_GPU,
        f"{target.model_text} is loaded with {running.size_vram} of {running.size} bytes "
        f"in VRAM ({share}% GPU)",
    )


def _version_failure(version: str, spec: SpecifierSet | None) -> ProbeFailure | None:
    if spec is None:
        return None
    from packaging.version import InvalidVersion, Version  # see parse_version_spec

    try:
        parsed = Version(version)
    except InvalidVersion:
        return ProbeFailure(
            FailureKind.WRONG_VERSION, f"server version {version!r} cannot be compared to {spec}"
        )
    # Release candidates (0.12.0-rc1) count: a server that new is what the requirement is about.
    if spec.contains(parsed, prereleases=True):
        return None
    return ProbeFailure(
        FailureKind.WRONG_VERSION, f"server version {version} does not satisfy {spec}"
    )


def _find_running(running: tuple[RunningModel, ...], model: ModelName) -> RunningModel | None:
    for entry in running:
        if model.matches(entry.name) or model.matches(entry.model):
            return entry
    return None
