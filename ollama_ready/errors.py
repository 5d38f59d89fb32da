"""The one exception tree of ollama_ready.

Every error the library raises on purpose derives from :class:`OllamaReadyError`.
Builtins are mixed in where a caller would naturally catch them (``except TimeoutError``,
``except ValueError``, ``except LookupError``)::

    OllamaReadyError
    ├── ConfigError (ValueError)                 bad input, found before any request
    │   ├── InvalidHost
    │   ├── InvalidModelName
    │   ├── InvalidStrategySpec
    │   └── ModelfileError
    ├── OllamaConnectionError (ConnectionError)  refused, reset, DNS, TLS, read timeout
    ├── ProtocolError                            garbage, HTML from a proxy, oversized line
    ├── ResponseError                            an HTTP error status, or an ``{"error": ...}`` line
    │   ├── HostNotAllowed                       403 with empty body: the host-header guard
    │   └── ServerBusy                           503 ``server busy``
    ├── NotReadyError (TimeoutError)             readiness not reached within the deadline
    ├── DeadlineExceeded (TimeoutError)          the one deadline ran out in a later phase
    ├── ModelNotPresent (LookupError)            not on the server (``/api/show`` 404)
    ├── ServerTooOld                             version check failed, or the registry's 412
    ├── PullError                                a pull that did not complete
    │   ├── ModelNotFound (LookupError)          the registry has no such model or tag
    │   ├── DiskFull (OSError)                   ``no space left on device``
    │   ├── Unauthorized (PermissionError)       ``unauthorized``
    │   ├── InsecureRegistry                     an ``http`` registry without ``insecure=True``
    │   ├── RegistryUnreachable                  dial or DNS failure at the manifest step
    │   ├── DigestMismatch                       blob or manifest digest did not verify
    │   ├── PullStalled (TimeoutError)           completed bytes stopped growing
    │   └── PullRetriesExhausted                 transient failures outlasted the retries
    ├── PlacementError                           ``require_gpu`` and the model is not on the GPU
    ├── PayloadError (OSError)                   runner payload extraction failed
    └── AggregateError                           several models or hosts failed; holds each cause

Each error carries ``host``, ``model`` and ``phase`` where they are known, and an optional
``hint``: one line that says what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AggregateError",
    "ConfigError",
    "DeadlineExceeded",
    "DigestMismatch",
    "DiskFull",
    "HostNotAllowed",
    "InsecureRegistry",
    "InvalidHost",
    "InvalidModelName",
    "InvalidStrategySpec",
    "ModelNotFound",
    "ModelNotPresent",
    "ModelfileError",
    "NotReadyError",
    "OllamaConnectionError",
    "OllamaReadyError",
    "PayloadError",
    "PlacementError",
    "ProtocolError",
    "PullError",
    "PullRetriesExhausted",
    "PullStalled",
    "RegistryUnreachable",
    "ResponseError",
    "ServerBusy",
    "ServerTooOld",
    "Unauthorized",
]


class OllamaReadyError(Exception):
    """Root of every error raised by ollama_ready.

    Args:
        message: What happened, in one sentence.
        host: The server base URL involved, if any.
        model: The model name involved, if any.
        phase: The phase that failed (``wait``, ``version``, ``pull``, ``verify``, ``load``, ...).
        hint: One line telling the user what to do, if a fix is known.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        model: str | None = None,
        phase: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.model = model
        self.phase = phase
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default pickling (multiprocessing, xdist).
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))

    def describe(self) -> str:
        """Return the message followed by the hint line, if any."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


def _rebuild(cls: type[OllamaReadyError], message: str, state: dict[str, Any]) -> OllamaReadyError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigError(OllamaReadyError, ValueError):
    """Bad input detected before any request: a host, a name, a spec, a setting."""


class InvalidHost(ConfigError):
    """The host (``OLLAMA_HOST`` or an argument) cannot be turned into a base URL."""


class InvalidModelName(ConfigError):
    """A model name breaks Ollama's grammar; the message names the part and the rule."""


class InvalidStrategySpec(ConfigError):
    """A wait strategy spec names an unknown strategy or a bad parameter."""


class ModelfileError(ConfigError):
    """A Modelfile could not be parsed, or names a file that does not exist."""


class OllamaConnectionError(OllamaReadyError, ConnectionError):
    """The server could not be reached, or the connection broke.

    ``kind`` is one of ``refused``, ``reset``, ``timeout`` (connected but no answer),
    ``dns``, ``tls`` or ``other``.
    """

    def __init__(self, message: str, *, kind: str = "other", **context: Any) -> None:
        super().__init__(message, **context)
        self.kind = kind


class ProtocolError(OllamaReadyError):
    """The server answered something that is not Ollama's protocol."""


class ResponseError(OllamaReadyError):
    """The server reported an error: an HTTP error status or an ``{"error": ...}`` line.

    ``status`` is the HTTP status; for an error line inside a 200 stream it is 200.
    ``server_message`` is the server's own text, unchanged.
    """

    def __init__(self, message: str, *, status: int, server_message: str = "", **context: Any):
        super().__init__(message, **context)
        self.status = status
        self.server_message = server_message


class HostNotAllowed(ResponseError):
    """403 with an empty body: Ollama's host-header guard rejected the ``Host`` header."""


class ServerBusy(ResponseError):
    """503: the server is busy or not yet serving."""


class NotReadyError(OllamaReadyError, TimeoutError):
    """The server did not reach the requested readiness level within the deadline.

    ``last_failure`` describes the last thing observed (refused, no answer, HTTP 503, ...).
    """

    def __init__(self, message: str, *, last_failure: str | None = None, **context: Any):
        super().__init__(message, **context)
        self.last_failure = last_failure


class DeadlineExceeded(OllamaReadyError, TimeoutError):
    """The single deadline of an operation ran out."""


class ModelNotPresent(OllamaReadyError, LookupError):
    """The model is not on the server (and the policy forbids pulling it)."""


class ServerTooOld(OllamaReadyError):
    """The server's version does not satisfy what is required."""


class PullError(OllamaReadyError):
    """A pull did not complete. ``transient`` says whether retrying could help."""

    transient = False


class ModelNotFound(PullError, LookupError):
    """The registry has no such model or tag (``pull model manifest: file does not exist``)."""


class DiskFull(PullError, OSError):
    """The server ran out of disk space (``no space left on device``)."""


class Unauthorized(PullError, PermissionError):
    """The registry refused the credentials (``unauthorized``)."""


class InsecureRegistry(PullError):
    """The registry speaks plain HTTP and ``insecure=True`` was not given."""


class RegistryUnreachable(PullError):
    """The server could not reach the registry (dial or DNS failure at the manifest step)."""

    transient = True


class DigestMismatch(PullError):
    """A downloaded blob or the resulting manifest did not match the expected digest."""


class PullStalled(PullError, TimeoutError):
    """The completed byte count stopped growing for longer than the stall timeout."""

    transient = True


class PullRetriesExhausted(PullError):
    """Transient failures continued until the retries or the deadline ran out."""


class PlacementError(OllamaReadyError):
    """``require_gpu`` was asked and the model landed fully or partly on the CPU."""


class PayloadError(OllamaReadyError, OSError):
    """Runner payloads could not be extracted; nothing half-written is left behind."""


class AggregateError(OllamaReadyError):
    """Several operations failed; ``errors`` maps each model or host to its own cause."""

    def __init__(
        self,
        message: str,
        errors: Mapping[str, BaseException],
        *,
        results: Sequence[object] = (),
        **context: Any,
    ) -> None:
        lines = [message, *(f"  {key}: {_one_line(err)}" for key, err in errors.items())]
        super().__init__("\n".join(lines), **context)
        self.errors = dict(errors)
        self.results = tuple(results)


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text.splitlines()[0]}"
