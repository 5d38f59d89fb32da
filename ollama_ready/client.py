"""The HTTP client for one Ollama server, over an injectable :class:`requests.Session`.

:class:`OllamaClient` speaks the parts of Ollama's API that getting a model ready needs: ping,
version, list, show, pull and create (NDJSON streams of :class:`~ollama_ready.progress.PullEvent`),
blobs, delete, copy, ps, load and unload. It assumes nothing about the peer: every body is read
with bounds on size, line length and time, and every ``requests`` failure and HTTP error becomes
an error of :mod:`ollama_ready.errors` that keeps the server's own message and names the host.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, cast
from urllib.parse import urljoin, urlsplit

import requests

from ollama_ready._format import go_duration_seconds
from ollama_ready._http import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    ERROR_BODY_BYTES,
    TRANSPORT_ERRORS,
    Exchange,
    content_codings,
    decode_json,
    decoded_pieces,
    looks_like_html,
    ndjson_records,
    not_ollama,
    read_all,
    read_prefix,
    status_error,
    transport_error,
)
from ollama_ready._version import __version__
from ollama_ready.clock import SYSTEM_CLOCK, Clock
from ollama_ready.config import is_loopback_url, parse_host
from ollama_ready.errors import (
    ConfigError,
    OllamaReadyError,
    ProtocolError,
    ResponseError,
)
from ollama_ready.names import ModelName
from ollama_ready.progress import PullEvent

if TYPE_CHECKING:
    from ollama_ready.config import Settings

__all__ = [
    "DEFAULT_TIMEOUT",
    "LOAD_READ_TIMEOUT",
    "ListedModel",
    "ModelDetails",
    "ModelInfo",
    "OllamaClient",
    "RunningModel",
    "Timeout",
    "validate_keep_alive",
]

logger = logging.getLogger(__name__)

Timeout: TypeAlias = float | tuple[float, float]
"""Seconds for both the connect and each read, or ``(connect, read)``."""

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
LOAD_READ_TIMEOUT = 300.0
"""The default read timeout of :meth:`OllamaClient.load`: Ollama's ``OLLAMA_LOAD_TIMEOUT``."""

_MIN_TIMEOUT = 0.001
_JSON = "application/json"
_NDJSON = "application/x-ndjson, application/json"
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
_GO_MAX_DURATION_SECONDS = (2**63 - 1) / 1e9
# A progress line exactly as Ollama writes it (Go's encoding/json: fields in struct order, zero
# values omitted, no spaces), parsed without the cost of json.loads and PullEvent.from_json. Only
# lines whose JSON reading is certain match: strings without escapes or control characters,
# integers without sign or leading zeros. Anything else takes the general path.
_PROGRESS_LINE = re.compile(
    rb'\{"status":"([^"\\\x00-\x1f]*)"'
    rb'(?:,"digest":"([^"\\\x00-\x1f]*)")?'
    rb'(?:,"total":(0|[1-9][0-9]{0,17}))?'
    rb'(?:,"completed":(0|[1-9][0-9]{0,17}))?\}'
)

# Headers that carry no credentials; every other header the caller adds (Authorization,
# OLLAMA_READY_HEADERS) is masked in errors and stays behind when a redirect leaves the host.
_PLAIN_HEADERS = frozenset({"user-agent", "host", "accept", "accept-encoding", "content-type"})
_MAX_REDIRECTS = 5
# requests' rules: 303 always becomes GET, 301/302 turn a POST into a GET (browsers do).
_METHOD_CHANGING_REDIRECTS = frozenset({301, 302, 303})
_MIN_SECRET_LENGTH = 4  # masking shorter values would mangle ordinary words

_ClientT = TypeVar("_ClientT", bound="OllamaClient")


def _secret_values(values: Iterable[str]) -> tuple[str, ...]:
    """Return the credential strings to mask: each value, and the token of ``Bearer <token>``."""
    found: set[str] = set()
    for value in values:
        found.add(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in ("bearer", "basic", "token"):
            found.add(token)
    # Longest first, so a token inside a longer value is masked as part of it.
    return tuple(sorted((v for v in found if len(v) >= _MIN_SECRET_LENGTH), key=len, reverse=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """One model of ``GET /api/tags``: what the server has on disk."""

    name: str
    model: str
    digest: str
    """The sha256 of the manifest, as bare hex."""
    size: int
    modified_at: str
    details: Mapping[str, Any] = field(default_factory=dict)


class ListedModel(Protocol):
    """What pull and create read of an ``/api/tags`` entry; :class:`ModelInfo` provides it."""

    @property
    def name(self) -> str: ...

    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningModel:
    """One model of ``GET /api/ps``: loaded in memory, ``size_vram`` of it on GPUs."""

    name: str
    model: str
    digest: str
    size: int
    size_vram: int
    expires_at: str | None = None
    context_length: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDetails:
    """The answer of ``POST /api/show`` for one model."""

    model: str
    """The name that was asked for."""
    modelfile: str
    parameters: str
    template: str
    details: Mapping[str, Any]
    model_info: Mapping[str, Any]
    capabilities: tuple[str, ...]
    raw: Mapping[str, Any]
    """The whole decoded answer, for fields this class does not name."""


class OllamaClient:
    """A client for one Ollama server.

    Args:
        base_url: The server, e.g. ``http://127.0.0.1:11434``. ``OLLAMA_HOST``-style values
            (``localhost``, ``:11434``, ``0.0.0.0``) are accepted and read by Ollama's rules.
        session: The session to send requests with; one is created (and closed with the
            client) when omitted.
        headers: Extra headers for every request (User-Agent, Authorization, ...).
        timeout: Seconds for the connect and for each read, or ``(connect, read)``.
        verify: TLS verification: a flag, or the path of a CA bundle.
        host_source: Where ``base_url`` came from (``argument``, ``OLLAMA_HOST``, ``default``);
            error messages say it.
        bypass_proxy: Whether to ignore HTTP proxies; None means "when the host is loopback",
            since a proxy that answers for localhost is a trap (ollama-python#437).
        max_body_bytes: The largest decoded body of a non-streamed answer.
        max_line_bytes: The longest line of a streamed answer.
        clock: The clock that times whole answers; the :mod:`time` module by default.

    Raises:
        InvalidHost: ``base_url`` cannot name an HTTP server.
        ConfigError: a timeout or limit is not a positive number.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        host_source: str = "argument",
        bypass_proxy: bool | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self._base_url = parse_host(base_url)
        self.host_source = host_source
        self._timeout = _timeouts(timeout)
        self._headers = {"User-Agent": f"ollama-ready/{__version__}", **dict(headers or {})}
        self._sent_host = next(
            (value for name, value in self._headers.items() if name.lower() == "host"), None
        )
        self._credentials = frozenset(
            name.lower() for name in self._headers if name.lower() not in _PLAIN_HEADERS
        )
        self._secrets = _secret_values(
            value for name, value in self._headers.items() if name.lower() in self._credentials
        )
        self._verify = verify
        loopback = is_loopback_url(self._base_url)
        self._bypass_proxy = loopback if bypass_proxy is None else bypass_proxy
        self._max_body = _positive_int(max_body_bytes, "max_body_bytes")
        self._max_line = _positive_int(max_line_bytes, "max_line_bytes")
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, session: requests.Session | None = None
    ) -> OllamaClient:
        """Build a client from :class:`~ollama_ready.config.Settings`."""
        return cls(
            settings.host,
            session=session,
            headers=settings.request_headers(),
            timeout=(settings.connect_timeout, settings.read_timeout),
            verify=settings.verify,
            host_source=settings.host_source,
            bypass_proxy=settings.bypass_proxy,
        )

    @property
    def base_url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self._base_url

    def __repr__(self) -> str:
        return f"OllamaClient({self._base_url!r}, host_source={self.host_source!r})"

    # --- server ------------------------------------------------------------------------------

    def ping(self, *, timeout: Timeout | None = None, path: str = "/", method: str = "HEAD") -> int:
        """Send ``HEAD /`` (or ``method path``) and return the status when it is a success.

        Raises:
            OllamaConnectionError: the server cannot be reached.
            ResponseError: it answered an error status (``HostNotAllowed`` for the host guard,
                ``ServerBusy`` for 503).
            ProtocolError: an HTML page or something else that is not Ollama answered.
        """
        if not path.startswith("/"):
            raise ConfigError(f"ping path must start with '/', got {path!r}")
        status, _, _ = self._exchange(method.upper(), path, timeout=timeout)
        return status

    def version(self, *, timeout: Timeout | None = None) -> str:
        """Return the server's version, e.g. ``0.12.11``."""
        answer = _Fields(self._json("GET", "/api/version", timeout=timeout))
        version = answer.text("version")
        if not version:
            raise answer.wrong("version", "a version string")
        return version

    def list_models(self, *, timeout: Timeout | None = None) -> tuple[ModelInfo, ...]:
        """Return the models on the server (``GET /api/tags``), newest first."""
        answer = _Fields(self._json("GET", "/api/tags", timeout=timeout))
        return tuple(_model_info(item) for item in answer.items("models"))

    def show(
        self, name: str, *, verbose: bool = False, timeout: Timeout | None = None
    ) -> ModelDetails:
        """Return what the server knows about one model (``POST /api/show``).

        Raises:
            InvalidModelName: ``name`` breaks Ollama's naming rules; nothing is sent.
            ModelNotPresent: the server does not have the model.
        """
        _check_name(name)
        body: dict[str, Any] = {"model": name}
        if verbose:
            body["verbose"] = True
        answer = _Fields(
            self._json(
                "POST", "/api/show", body=body, timeout=timeout, model=name, missing_model=True
            )
        )
        return ModelDetails(
            model=name,
            modelfile=answer.text("modelfile"),
            parameters=answer.text("parameters"),
            template=answer.text("template"),
            details=answer.mapping("details"),
            model_info=answer.mapping("model_info"),
            capabilities=answer.strings("capabilities"),
            raw=answer.obj,
        )

    def ps(self, *, timeout: Timeout | None = None) -> tuple[RunningModel, ...]:
        """Return the models loaded in memory (``GET /api/ps``)."""
        answer = _Fields(self._json("GET", "/api/ps", timeout=timeout))
        return tuple(_running_model(item) for item in answer.items("models"))

    # --- streams -----------------------------------------------------------------------------

    def pull(
        self, name: str, *, insecure: bool = False, timeout: Timeout | None = None
    ) -> Generator[PullEvent, None, None]:
        """Pull a model and yield its progress events as they arrive.

        The request is sent when iteration starts. Closing the iterator (or leaving a ``for``
        loop early) closes the connection at once; the read timeout applies to every read.

        Raises:
            InvalidModelName: ``name`` breaks Ollama's naming rules; nothing is sent.
            ResponseError: an HTTP error status, or an ``{"error": ...}`` line inside the 200
                stream (then ``status`` is 200 and ``server_message`` the server's text).
            ProtocolError: a line that is not JSON, or longer than the line limit.
            OllamaConnectionError: the connection failed, broke, or went silent.
        """
        _check_name(name)
        body: dict[str, Any] = {"model": name, "stream": True}
        if insecure:
            body["insecure"] = True
        return self._stream("/api/pull", body, timeout=timeout, model=name)

    def create(
        self,
        name: str,
        *,
        from_: str | None = None,
        files: Mapping[str, str] | None = None,
        adapters: Mapping[str, str] | None = None,
        template: str | None = None,
        system: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        license: str | Sequence[str] | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        quantize: str | None = None,
        timeout: Timeout | None = None,
    ) -> Generator[PullEvent, None, None]:
        """Create a model (``POST /api/create``, v0.5.5+ fields) and yield its status events.

        ``files`` and ``adapters`` map file names to blob digests (``sha256:<hex>``) that
        :meth:`push_blob` uploaded. Streaming and errors behave as in :meth:`pull`.
        """
        _check_name(name)
        body: dict[str, Any] = {"model": name, "stream": True}
        optional: dict[str, Any] = {
            "from": from_,
            "files": _blob_map(files, "files"),
            "adapters": _blob_map(adapters, "adapters"),
            "template": template,
            "license": license if license is None or isinstance(license, str) else list(license),
            "system": system,
            "parameters": None if parameters is None else dict(parameters),
            "messages": None if messages is None else [dict(item) for item in messages],
            "quantize": quantize,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return self._stream("/api/create", body, timeout=timeout, model=name)

    # --- blobs, delete, copy -----------------------------------------------------------------

    def has_blob(self, digest: str, *, timeout: Timeout | None = None) -> bool:
        """Return whether the server has a blob (``HEAD /api/blobs/sha256:<hex>``)."""
        path = f"/api/blobs/{_digest(digest)}"
        status, _, _ = self._exchange("HEAD", path, timeout=timeout, absent_on_404=True)
        return status != 404

    def push_blob(
        self, digest: str, path: str | os.PathLike[str], *, timeout: Timeout | None = None
    ) -> bool:
        """Upload a file as a blob, streamed from disk; return True if the server created it.

        The server hashes what it receives and answers 400 when that is not ``digest``.

        Raises:
            OSError: the file cannot be opened.
            ResponseError: the server refused the blob (a digest mismatch, for instance).
        """
        url_path = f"/api/blobs/{_digest(digest)}"
        with open(path, "rb") as stream:
            status, _, _ = self._exchange("POST", url_path, data=stream, timeout=timeout)
        return status == 201

    def delete(self, name: str, *, timeout: Timeout | None = None) -> None:
        """Delete a model from the server.

        Raises:
            ModelNotPresent: the server does not have the model.
        """
        _check_name(name)
        self._exchange(
            "DELETE",
            "/api/delete",
            body={"model": name},
            timeout=timeout,
            model=name,
            missing_model=True,
        )

    def copy(self, source: str, destination: str, *, timeout: Timeout | None = None) -> None:
        """Copy a model under a new name.

        Raises:
            ModelNotPresent: the server does not have ``source``.
        """
        _check_name(source)
        _check_name(destination)
        self._exchange(
            "POST",
            "/api/copy",
            body={"source": source, "destination": destination},
            timeout=timeout,
            model=source,
            missing_model=True,
        )

    # --- load, unload ------------------------------------------------------------------------

    def load(
        self,
        name: str,
        *,
        keep_alive: str | float | None = None,
        timeout: Timeout | None = None,
    ) -> None:
        """Load a model into memory: ``/api/generate`` with no prompt; returns once loaded.

        ``keep_alive`` is seconds (a number; negative means forever) or a Go duration string
        (``"5m"``, ``"1h30m"``, ``"-1m"``). Without ``timeout`` the read timeout is at least
        :data:`LOAD_READ_TIMEOUT`, since loading a large model takes minutes.

        Raises:
            ConfigError: ``keep_alive`` is not a valid duration; nothing is sent.
            ModelNotPresent: the server does not have the model.
        """
        _check_name(name)
        body: dict[str, Any] = {"model": name}
        if keep_alive is not None:
            body["keep_alive"] = validate_keep_alive(keep_alive)
        if timeout is None:
            connect, read = self._timeout
            timeout = (connect, max(read, LOAD_READ_TIMEOUT))
        self._generate(body, timeout=timeout, model=name)

    def unload(self, name: str, *, timeout: Timeout | None = None) -> None:
        """Unload a model from memory: ``/api/generate`` with no prompt and ``keep_alive: 0``.

        Raises:
            ModelNotPresent: the server does not have the model.
        """
        _check_name(name)
        self._generate({"model": name, "keep_alive": 0}, timeout=timeout, model=name)

    def _generate(self, body: dict[str, Any], *, timeout: Timeout | None, model: str) -> None:
        answer = self._json(
            "POST", "/api/generate", body=body, timeout=timeout, model=model, missing_model=True
        )
        _Fields(answer)  # must be an object; its fields vary across versions

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self: _ClientT) -> _ClientT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        timeout: Timeout | None,
        model: str | None,
        body: Mapping[str, Any] | None = None,
        data: Any = None,
        accept: str = _JSON,
    ) -> tuple[requests.Response, Exchange]:
        connect, read = self._timeout if timeout is None else _timeouts(timeout)
        ex = Exchange(
            self._base_url,
            self.host_source,
            method,
            path,
            connect,
            read,
            model,
            self._sent_host,
            self._secrets,
        )
        headers = {
            **self._headers,
            "Accept": accept,
            # Compressed streams reach us late (proxies buffer to compress) and we decode
            # everything ourselves, so only ask for what _http can decode with bounds.
            "Accept-Encoding": "identity" if accept == _NDJSON else "gzip, deflate",
        }
        logger.debug("%s %s%s", method, self._base_url, path)
        url = self._base_url + path
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                response = self._session.request(
                    method,
                    url,
                    json=body,
                    data=data,
                    headers=headers,
                    timeout=(connect, read),
                    verify=self._verify,
                    proxies=self._proxies(),
                    stream=True,
                    allow_redirects=False,
                )
                target = self._session.get_redirect_target(response)
                if target is None:
                    return response, ex
                response.close()
                if data is not None and not isinstance(data, bytes):
                    raise ProtocolError(  # a streamed upload cannot be sent twice
                        f"The server at {ex.host} redirected {ex.what} to {target}; Ollama never "
                        "redirects, so something else answers at this address.",
                        **ex.context(),
                    )
                # Followed by hand: requests strips only Authorization when a redirect leaves the
                # host, and every credential header must stay behind.
                next_url = urljoin(url, target)
                if self._session.should_strip_auth(url, next_url):  # type: ignore[no-untyped-call]
                    headers = {
                        k: v for k, v in headers.items() if k.lower() not in self._credentials
                    }
                if response.status_code in _METHOD_CHANGING_REDIRECTS and method != "HEAD":
                    method, body, data = "GET", None, None
                url = next_url
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, ex) from exc
        raise transport_error(requests.TooManyRedirects(f"redirected from {url}"), ex)

    def _proxies(self) -> dict[str, str] | None:
        if not self._bypass_proxy:
            return None
        hostname = urlsplit(self._base_url).hostname or ""
        keys = ("http", "https", "all")
        # requests drops keys whose value is None after merging in the environment's
        # proxies, so these entries mean "no proxy", whatever HTTP_PROXY or ALL_PROXY say.
        no_proxy: dict[str, str | None] = dict.fromkeys(keys)
        no_proxy.update(dict.fromkeys(f"{key}://{hostname}" for key in keys))
        return cast("dict[str, str]", no_proxy)

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        timeout: Timeout | None,
        model: str | None = None,
        body: Mapping[str, Any] | None = None,
        data: Any = None,
        missing_model: bool = False,
        absent_on_404: bool = False,
    ) -> tuple[int, bytes, Exchange]:
        """Send one request; return its success status, its whole (bounded) body, the exchange."""
        response, ex = self._send(method, path, timeout=timeout, model=model, body=body, data=data)
        with response:
            status = response.status_code
            if absent_on_404 and status == 404:
                return status, b"", ex
            pieces = self._success_body(response, ex, missing_model=missing_model)
            payload = read_all(
                pieces, ex, limit=self._max_body, budget=ex.read_timeout, clock=self._clock
            )
            if looks_like_html("", payload):
                raise not_ollama(ex, status, payload)
            return status, payload, ex

    def _json(
        self,
        method: str,
        path: str,
        *,
        timeout: Timeout | None,
        model: str | None = None,
        body: Mapping[str, Any] | None = None,
        missing_model: bool = False,
    ) -> _Answer:
        _, payload, ex = self._exchange(
            method, path, timeout=timeout, model=model, body=body, missing_model=missing_model
        )
        return _Answer(decode_json(payload, ex), ex)

    def _success_body(
        self, response: requests.Response, ex: Exchange, *, missing_model: bool
    ) -> Iterator[bytes]:
        """Return the decoded body of a success; raise what an error status or HTML means."""
        codings = self._check_success(response, ex, missing_model=missing_model)
        return decoded_pieces(response.raw, codings, ex)

    def _check_success(
        self, response: requests.Response, ex: Exchange, *, missing_model: bool
    ) -> tuple[str, ...]:
        """Return the content codings of a success; raise what an error status or HTML means."""
        if not 200 <= response.status_code < 300:
            raise self._status_error(response, ex, missing_model=missing_model)
        codings = _codings(response, ex)
        if "html" in response.headers.get("Content-Type", "").lower():
            pieces = decoded_pieces(response.raw, codings, ex)
            raise not_ollama(ex, response.status_code, self._prefix(pieces, ex))
        return codings

    def _prefix(self, pieces: Iterator[bytes], ex: Exchange) -> bytes:
        return read_prefix(pieces, ERROR_BODY_BYTES, budget=ex.read_timeout, clock=self._clock)

    def _status_error(
        self, response: requests.Response, ex: Exchange, *, missing_model: bool
    ) -> OllamaReadyError:
        try:
            payload = self._prefix(decoded_pieces(response.raw, _codings(response, ex), ex), ex)
        except ProtocolError:
            payload = b""
        content_type = response.headers.get("Content-Type", "")
        return status_error(
            ex, response.status_code, content_type, payload, missing_model_on_404=missing_model
        )

    def _stream(
        self, path: str, body: Mapping[str, Any], *, timeout: Timeout | None, model: str
    ) -> Generator[PullEvent, None, None]:
        response, ex = self._send(
            "POST", path, timeout=timeout, model=model, body=body, accept=_NDJSON
        )
        with response:
            codings = self._check_success(response, ex, missing_model=False)
            yield from ndjson_records(
                response.raw, codings, ex, max_line=self._max_line, parse=_event
            )


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    value: Any
    ex: Exchange


class _Fields:
    """Typed access to a JSON object from the server; a wrong type is a ProtocolError."""

    __slots__ = ("ex", "obj", "what")

    def __init__(self, answer: _Answer, what: str = "the answer") -> None:
        self.ex = answer.ex
        self.what = what
        if not isinstance(answer.value, dict):
            raise self._error(f"{what} is {_kind(answer.value)}, not a JSON object")
        self.obj: dict[str, Any] = answer.value

    def _error(self, problem: str) -> ProtocolError:
        return ProtocolError(
            f"Unexpected answer from {self.ex.host} to {self.ex.what}: {problem}",
            **self.ex.context(),
        )

    def wrong(self, key: str, expected: str) -> ProtocolError:
        """Return the error for a field that is missing or of the wrong type."""
        value = self.obj.get(key)
        return self._error(f"{key!r} in {self.what} is {_kind(value)}; expected {expected}")

    def text(self, key: str, default: str = "") -> str:
        """Return a string field; absent or null gives ``default``."""
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.wrong(key, "a string")
        return value

    def optional_text(self, key: str) -> str | None:
        """Return a string field, or None when it is absent or null."""
        return self.text(key) if self.obj.get(key) is not None else None

    def count(self, key: str) -> int:
        """Return a byte count or similar; absent or null gives 0."""
        value = self.optional_count(key)
        return 0 if value is None else value

    def optional_count(self, key: str) -> int | None:
        """Return a non-negative integer field, or None when it is absent or null."""
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.wrong(key, "a non-negative integer")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        """Return an object field; absent or null gives ``{}``."""
        value = self.obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.wrong(key, "a JSON object")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        """Return a list of strings; absent or null gives ``()``."""
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.wrong(key, "a list of strings")
        return tuple(value)

    def items(self, key: str) -> Iterator[_Fields]:
        """Yield the objects of a list field; absent or null (Go's nil slice) gives none."""
        value = self.obj.get(key)
        if value is None:
            return
        if not isinstance(value, list):
            raise self.wrong(key, "a list")
        for index, item in enumerate(value):
            yield _Fields(_Answer(item, self.ex), f"{key}[{index}]")


def _names(fields: _Fields) -> tuple[str, str]:
    """Return an entry's ``name`` and ``model``; each stands in for the other when absent."""
    name = fields.text("name") or fields.text("model")
    if not name:
        raise fields.wrong("name", "a model name")
    return name, fields.text("model") or name


def _model_info(fields: _Fields) -> ModelInfo:
    name, model = _names(fields)
    return ModelInfo(
        name=name,
        model=model,
        digest=_bare_digest(fields.text("digest")),
        size=fields.count("size"),
        modified_at=fields.text("modified_at"),
        details=fields.mapping("details"),
    )


def _running_model(fields: _Fields) -> RunningModel:
    name, model = _names(fields)
    return RunningModel(
        name=name,
        model=model,
        digest=_bare_digest(fields.text("digest")),
        size=fields.count("size"),
        size_vram=fields.count("size_vram"),
        expires_at=fields.optional_text("expires_at"),
        context_length=fields.optional_count("context_length"),
    )


def _event(line: bytes, ex: Exchange) -> PullEvent:
    match = _PROGRESS_LINE.fullmatch(line)
    if match is not None:
        try:
            return _progress_event(*match.groups())
        except UnicodeDecodeError:
            pass  # the general path below reports it as JSON would
    try:
        obj = decode_json(line, ex)
    except ProtocolError:
        if looks_like_html("", line):
            raise not_ollama(ex, 200, line) from None
        raise
    if not isinstance(obj, dict):
        raise ProtocolError(
            f"A line of the stream from {ex.host} ({ex.what}) is {_kind(obj)}, not a JSON object",
            **ex.context(),
        )
    error = obj.get("error")
    if error is not None:
        message = ex.redact(error if isinstance(error, str) else json.dumps(error))
        raise ResponseError(
            f"Ollama at {ex.host} reported an error during {ex.what}: {message}",
            status=200,
            server_message=message,
            **ex.context(),
        )
    try:
        return PullEvent.from_json(obj)
    except ProtocolError as exc:
        raise ProtocolError(f"{exc.message} (from {ex.host}, {ex.what})", **ex.context()) from exc


def _progress_event(
    status: bytes, digest: bytes | None, total: bytes | None, completed: bytes | None
) -> PullEvent:
    return PullEvent(
        status.decode(),
        digest.decode() if digest else None,
        None if total is None else int(total),
        None if completed is None else int(completed),
    )


def _codings(response: requests.Response, ex: Exchange) -> tuple[str, ...]:
    return content_codings(response.headers.get("Content-Encoding"), ex)


def _kind(value: object) -> str:
    text = json.dumps(value) if value is None or isinstance(value, (bool, int, float)) else ""
    if text:
        return text
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    return f"a JSON {'list' if isinstance(value, list) else 'object'}"


def _bare_digest(digest: str) -> str:
    return digest.removeprefix("sha256:")


# --- checks on the caller's input ------------------------------------------------------------


def _timeouts(value: Timeout) -> tuple[float, float]:
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2:
        raise ConfigError(f"timeout must be seconds or (connect, read), got {value!r}")
    checked = []
    for seconds in pair:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ConfigError(f"timeout must be a number of seconds, got {value!r}")
        if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
            raise ConfigError(f"timeout must be a finite number of seconds >= 0, got {value!r}")
        # A zero timeout makes the socket non-blocking; a deadline that just ran out should
        # fail as a timeout instead.
        checked.append(max(float(seconds), _MIN_TIMEOUT))
    return checked[0], checked[1]


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of bytes, got {value!r}")
    return value


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise ConfigError(f"a model name must be a string, got {type(name).__name__}")
    ModelName.parse(name)


def _digest(digest: str, what: str = "digest") -> str:
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ConfigError(
            f"{what} {digest!r} is not a blob digest; expected 'sha256:' and 64 hex digits"
        )
    return f"sha256:{match.group(1).lower()}"


def _blob_map(files: Mapping[str, str] | None, what: str) -> dict[str, str] | None:
    if files is None:
        return None
    return {str(name): _digest(digest, f"{what}[{name!r}]") for name, digest in files.items()}


def validate_keep_alive(value: str | float) -> str | float:
    """Check a ``keep_alive`` value the way Ollama parses it, and return what to send.

    A number is seconds (negative: keep the model loaded forever). A string must be a Go
    duration with a unit (``"5m"``, ``"1h30m"``, ``"-1m"``) or ``"0"``; ``"-1"`` and ``"300"``
    are rejected by the server, so they are rejected here, before any request.

    Raises:
        ConfigError: the value is not a finite number or a Go duration.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"keep_alive must be seconds or a duration string, got {value!r}")
    if not isinstance(value, str):
        if not math.isfinite(value):
            raise ConfigError(f"keep_alive must be a finite number of seconds, got {value!r}")
        return value
    text = value.strip()
    if text.lstrip("+-") == "0" or _is_go_duration(text):
        return text
    hint = "a number means seconds and a negative one keeps the model loaded forever"
    if re.fullmatch(r"[-+]?[0-9]+(?:\.[0-9]+)?", text):
        raise ConfigError(
            f"keep_alive {value!r} is not a Go duration: a string needs a unit, as in "
            f"'{text}s' or '{text}m'; or pass the number {text} (seconds)",
            hint=hint,
        )
    raise ConfigError(
        f"keep_alive {value!r} is not a Go duration such as '5m', '1h30m' or '-1m'", hint=hint
    )


def _is_go_duration(text: str) -> bool:
    """Return whether Go's ``time.ParseDuration`` accepts ``text`` (form and range)."""
    seconds = go_duration_seconds(text)
    return seconds is not None and abs(seconds) <= _GO_MAX_DURATION_SECONDS
