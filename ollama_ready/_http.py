"""HTTP plumbing behind :class:`ollama_ready.client.OllamaClient`.

Everything here assumes the server may be hostile or simply not Ollama: bodies are read through
decoders whose output is bounded per step, whole bodies are capped in size and in time, stream
lines are capped in length, and every ``requests``/``urllib3``/socket failure and every HTTP error
status becomes an error of :mod:`ollama_ready.errors` that says what happened and to which host.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from ollama_ready.clock import Clock
from ollama_ready.errors import (
    ConfigError,
    HostNotAllowed,
    InvalidHost,
    ModelNotPresent,
    OllamaConnectionError,
    OllamaReadyError,
    ProtocolError,
    ResponseError,
    ServerBusy,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "ERROR_BODY_BYTES",
    "MAX_CONTENT_CODINGS",
    "READ_CHUNK_BYTES",
    "TRANSPORT_ERRORS",
    "Exchange",
    "RawBody",
    "content_codings",
    "decode_json",
    "decoded_pieces",
    "guarded",
    "looks_like_html",
    "ndjson_records",
    "not_ollama",
    "read_all",
    "read_prefix",
    "status_error",
    "transport_error",
]

DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_BODY_BYTES = 32 << 20
ERROR_BODY_BYTES = 64 << 10
READ_CHUNK_BYTES = 64 << 10
MAX_CONTENT_CODINGS = 2
_MESSAGE_CHARS = 500
_PREVIEW_BYTES = 80

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)
"""What a request or a body read can raise besides our own errors."""

_RESET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_BROKEN_BODY_ERRORS = (
    http.client.IncompleteRead,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
)
_BAD_URL_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    urllib3.exceptions.LocationValueError,
)
_SOURCE_PHRASES = {
    "argument": "the host was given as an argument",
    "OLLAMA_HOST": "the host came from OLLAMA_HOST",
    "default": "the host is the default, because OLLAMA_HOST is not set",
}
_R = TypeVar("_R")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request, as error messages describe it."""

    host: str
    host_source: str
    method: str
    path: str
    connect_timeout: float
    read_timeout: float
    model: str | None = None
    sent_host: str | None = None
    """The ``Host`` header when the caller set one instead of the URL's."""
    secrets: tuple[str, ...] = ()
    """Credential values the request carried; never repeated in an error message."""

    @property
    def what(self) -> str:
        """The request line, e.g. ``POST /api/pull``."""
        return f"{self.method} {self.path}"

    @property
    def host_header(self) -> str:
        """The ``Host`` header the request carried."""
        return self.sent_host or urlsplit(self.host).netloc

    def context(self) -> dict[str, Any]:
        """Keyword arguments that every error of this exchange carries."""
        return {"host": self.host, "model": self.model}

    def redact(self, text: str) -> str:
        """Return ``text`` with every credential of the request masked.

        A server or proxy may echo the credentials it was sent ("invalid token Bearer ...");
        what it says goes into error messages, logs and ``--json`` output, so they are masked.
        """
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class RawBody(Protocol):
    """The part of ``urllib3``'s response that reads undecoded body bytes."""

    chunked: bool

    def stream(self, amt: int, decode_content: bool) -> Iterator[bytes]:
        """Yield undecoded pieces of at most ``amt`` bytes."""
        ...


# --- transport failures ----------------------------------------------------------------------


def transport_error(exc: BaseException, ex: Exchange) -> OllamaReadyError:
    """Translate a ``requests``/``urllib3``/socket failure into ollama_ready's tree."""
    chain = _chain(exc)
    for classify in _CLASSIFIERS:
        error = classify(chain, ex)
        if error is not None:
            return error
    return OllamaConnectionError(
        f"{ex.what} to Ollama at {ex.host} failed: {_describe(exc)}",
        kind="other",
        **ex.context(),
    )


def _chain(exc: BaseException) -> tuple[BaseException, ...]:
    """Return ``exc`` and every exception it wraps, outermost first."""
    found: list[BaseException] = []
    pending = [exc]
    while pending and len(found) < 32:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        wrapped: list[object] = [*current.args, getattr(current, "reason", None)]
        wrapped += [
            getattr(current, "original_error", None),
            current.__cause__,
            current.__context__,
        ]
        pending.extend(item for item in wrapped if isinstance(item, BaseException))
    return tuple(found)


def _first(chain: tuple[BaseException, ...], *types: type[BaseException]) -> BaseException | None:
    return next((item for item in chain if isinstance(item, types)), None)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "..."


def _proxy_failure(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    found = _first(chain, requests.exceptions.ProxyError, urllib3.exceptions.ProxyError)
    if found is None:
        return None
    return OllamaConnectionError(
        f"The HTTP proxy in front of Ollama at {ex.host} failed during {ex.what}: "
        f"{_describe(found)}",
        kind="other",
        hint="Fix the proxy, or add the Ollama host to NO_PROXY so requests go to it directly.",
        **ex.context(),
    )


def _tls_failure(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    found = _first(chain, ssl.SSLError, urllib3.exceptions.SSLError, requests.exceptions.SSLError)
    if found is None:
        return None
    innermost = _first(chain, ssl.SSLError) or found
    return OllamaConnectionError(
        f"TLS with Ollama at {ex.host} failed during {ex.what}: {_describe(innermost)}",
        kind="tls",
        hint=(
            "Check the server certificate, pass a CA bundle (OLLAMA_READY_CA_BUNDLE) or "
            "verify=False for a self-signed server, or use http:// if it speaks plain HTTP."
        ),
        **ex.context(),
    )


def _dns_failure(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    found = _first(chain, socket.gaierror)
    if found is None:
        return None
    hostname = urlsplit(ex.host).hostname or ex.host
    return OllamaConnectionError(
        f"Could not resolve {hostname!r}, the host name of Ollama at {ex.host} "
        f"({_source_phrase(ex.host_source)}): {_describe(found)}",
        kind="dns",
        hint="Check the spelling of the host, or use an IP address.",
        **ex.context(),
    )


def _timeout(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    connect = _first(chain, requests.exceptions.ConnectTimeout)
    if connect is None:
        pure = [
            item
            for item in chain
            if isinstance(item, urllib3.exceptions.ConnectTimeoutError)
            and not isinstance(item, urllib3.exceptions.NewConnectionError)
        ]
        connect = pure[0] if pure else None
    if connect is not None:
        return OllamaConnectionError(
            f"Could not connect to Ollama at {ex.host} within {ex.connect_timeout:g}s: "
            f"the TCP connect got no answer ({_source_phrase(ex.host_source)})",
            kind="timeout",
            hint="Check that the host is reachable and that no firewall drops the packets.",
            **ex.context(),
        )
    read = _first(
        chain, requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError
    )
    if read is None:
        return None
    return OllamaConnectionError(
        f"Ollama at {ex.host} connected but sent no answer within {ex.read_timeout:g}s ({ex.what})",
        kind="timeout",
        hint=(
            "The server may still be starting (GPU discovery can take seconds) or be "
            "overloaded; wait longer or raise the read timeout."
        ),
        **ex.context(),
    )


def _refused(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    if _first(chain, ConnectionRefusedError) is None:
        return None
    return OllamaConnectionError(
        f"Could not connect to Ollama at {ex.host}: connection refused "
        f"({_source_phrase(ex.host_source)})",
        kind="refused",
        hint=(
            "Start the server (`ollama serve`), or point OLLAMA_HOST or the host argument "
            "at the address it listens on."
        ),
        **ex.context(),
    )


def _reset(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    if _first(chain, http.client.RemoteDisconnected) is not None:
        return OllamaConnectionError(
            f"Ollama at {ex.host} closed the connection without answering {ex.what}",
            kind="reset",
            **ex.context(),
        )
    found = _first(chain, *_RESET_ERRORS)
    if found is not None:
        return OllamaConnectionError(
            f"The connection to Ollama at {ex.host} was reset during {ex.what}: {_describe(found)}",
            kind="reset",
            **ex.context(),
        )
    if _not_http_reply(chain) is not None:
        return None
    found = _first(chain, *_BROKEN_BODY_ERRORS)
    if found is not None:
        return OllamaConnectionError(
            f"The connection to Ollama at {ex.host} broke before the answer to {ex.what} "
            f"was complete: {_describe(found)}",
            kind="reset",
            **ex.context(),
        )
    return None


def _not_http_reply(chain: tuple[BaseException, ...]) -> BaseException | None:
    """Return the parse failure of a reply that is not HTTP (a bad status line, huge headers)."""
    return next(
        (
            item
            for item in chain
            if isinstance(item, http.client.HTTPException)
            and not isinstance(item, http.client.IncompleteRead)
        ),
        None,
    )


def _not_http(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    found = _not_http_reply(chain)
    if found is not None:
        return ProtocolError(
            f"The server at {ex.host} answered {ex.what} with something that is not valid "
            f"HTTP ({type(found).__name__}: {_describe(found)}); is it really Ollama?",
            **ex.context(),
        )
    if _first(chain, requests.exceptions.TooManyRedirects) is not None:
        return ProtocolError(
            f"The server at {ex.host} redirected {ex.what} too many times; Ollama never "
            "redirects, so something else answers at this address.",
            **ex.context(),
        )
    found = _first(chain, requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError)
    if found is not None:
        return ProtocolError(
            f"The answer of {ex.host} to {ex.what} could not be decoded: {_describe(found)}",
            **ex.context(),
        )
    return None


def _bad_request(chain: tuple[BaseException, ...], ex: Exchange) -> OllamaReadyError | None:
    found = _first(chain, *_BAD_URL_ERRORS)
    if found is not None:
        return InvalidHost(
            f"Cannot send {ex.what} to {ex.host!r}: {_describe(found)}", **ex.context()
        )
    found = _first(chain, requests.exceptions.InvalidHeader, requests.exceptions.InvalidJSONError)
    if found is not None:
        return ConfigError(
            f"Cannot send {ex.what} to Ollama at {ex.host}: {_describe(found)}", **ex.context()
        )
    return None


_CLASSIFIERS = (
    _proxy_failure,
    _tls_failure,
    _dns_failure,
    _timeout,
    _refused,
    _reset,
    _not_http,
    _bad_request,
)


def _source_phrase(host_source: str) -> str:
    return _SOURCE_PHRASES.get(host_source, f"the host came from {host_source}")


def guarded(pieces: Iterator[bytes], ex: Exchange) -> Iterator[bytes]:
    """Yield from ``pieces``, translating transport failures raised while reading."""
    while True:
        try:
            piece = next(pieces)
        except StopIteration:
            return
        except OllamaReadyError:
            raise
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, ex) from exc
        yield piece


# --- HTTP error statuses ---------------------------------------------------------------------


def status_error(
    ex: Exchange,
    status: int,
    content_type: str,
    body: bytes,
    *,
    missing_model_on_404: bool = False,
) -> OllamaReadyError:
    """Build the error for an unexpected HTTP status, keeping the server's own message."""
    text = body.decode("utf-8", "replace").strip()
    if status == 403 and not text:
        return _host_not_allowed(ex)
    if looks_like_html(content_type, body):
        return not_ollama(ex, status, body)
    message, is_json_error = _server_message(ex.redact(text))
    context = ex.context()
    if status == 503:
        return ServerBusy(
            f"Ollama at {ex.host} is busy (HTTP 503 to {ex.what}): {message or 'no message'}",
            status=status,
            server_message=message,
            hint="Retry later; the server has too many requests queued or is still starting.",
            **context,
        )
    if status == 404 and missing_model_on_404 and is_json_error:
        return ModelNotPresent(
            f"Model {ex.model!r} is not on the Ollama server at {ex.host}: {message}",
            hint="Pull it first (`ollama pull`, or ensure_model with pull_policy='missing').",
            **context,
        )
    hint = None
    if status == 404 and not is_json_error:
        hint = "The endpoint does not exist there: the server is too old, or it is not Ollama."
    return ResponseError(
        f"Ollama at {ex.host} answered {ex.what} with HTTP {status}: {message or 'no message'}",
        status=status,
        server_message=message,
        hint=hint,
        **context,
    )


def not_ollama(ex: Exchange, status: int, body: bytes) -> ProtocolError:
    """Build the error for an HTML page where Ollama would have answered JSON or text."""
    match = _TITLE.search(body[:ERROR_BODY_BYTES])
    title = ""
    if match:
        words = ex.redact(match.group(1).decode("utf-8", "replace")).split()
        title = f" titled {' '.join(words)[:120]!r}"
    return ProtocolError(
        f"A proxy or another web server answered {ex.what} at {ex.host} instead of Ollama "
        f"(HTTP {status}, an HTML page{title})",
        hint=(
            "Check the host and port; if an HTTP proxy is configured, add the Ollama host to "
            "NO_PROXY. Ollama answers JSON or plain text, never HTML."
        ),
        **ex.context(),
    )


def looks_like_html(content_type: str, body: bytes) -> bool:
    """Whether an answer is an HTML page (by its type, or by its first bytes)."""
    if "html" in content_type.lower():
        return True
    start = body[:64].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _host_not_allowed(ex: Exchange) -> HostNotAllowed:
    return HostNotAllowed(
        f"Ollama at {ex.host} answered {ex.what} with 403 and an empty body: its host-header "
        f"guard rejected the Host header {ex.host_header!r}. An Ollama bound to a loopback "
        "address only accepts Host headers naming localhost, a loopback, private or local "
        "address, the machine's host name, or *.localhost, *.local and *.internal.",
        status=403,
        server_message="",
        hint=(
            "Connect with an IP address or localhost, make the proxy in front send "
            "'Host: localhost', or bind Ollama to a non-loopback address "
            "(OLLAMA_HOST=0.0.0.0:11434), which turns the guard off; OLLAMA_ORIGINS only "
            "covers the Origin header of browsers."
        ),
        **ex.context(),
    )


def _server_message(text: str) -> tuple[str, bool]:
    """Return the server's message and whether it came as Ollama's ``{"error": ...}``."""
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("error"), str):
            return _clip(obj["error"]), True
    return _clip(" ".join(text.split())), False


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "..."


# --- bounded body reading --------------------------------------------------------------------


def content_codings(header: str | None, ex: Exchange) -> tuple[str, ...]:
    """Return the content codings of a response in the order they were applied."""
    codings = [part.strip().lower() for part in (header or "").split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    unknown = sorted({coding for coding in codings if coding not in _CODINGS})
    if unknown:
        raise ProtocolError(
            f"The answer of {ex.host} to {ex.what} uses Content-Encoding "
            f"{', '.join(unknown)}, which this client neither asked for nor can decode",
            **ex.context(),
        )
    if len(codings) > MAX_CONTENT_CODINGS:
        raise ProtocolError(
            f"The answer of {ex.host} to {ex.what} is compressed {len(codings)} times over "
            f"(Content-Encoding {header!r}); refusing to decode it",
            **ex.context(),
        )
    return tuple(codings)


def decoded_pieces(
    raw: RawBody, codings: tuple[str, ...], ex: Exchange, *, piece_bytes: int = READ_CHUNK_BYTES
) -> Iterator[bytes]:
    """Yield the decoded body in pieces of at most ``piece_bytes``; translate read failures.

    Decoding is done here, not by ``urllib3``, so that no single step can inflate a small
    compressed input into an unbounded output, whatever the ``urllib3`` version.
    """
    pieces: Iterator[bytes] = guarded(_raw_pieces(raw, piece_bytes), ex)
    for coding in reversed(codings):
        pieces = _inflate(pieces, coding, piece_bytes, ex)
    return pieces


def _raw_pieces(raw: RawBody, piece_bytes: int) -> Iterator[bytes]:
    """Return the undecoded body in pieces, failures untranslated (one generator, not two)."""
    read1 = getattr(raw, "read1", None)
    if getattr(raw, "chunked", False) or read1 is None:
        return raw.stream(piece_bytes, decode_content=False)
    return _read1_pieces(read1, piece_bytes)


def _read1_pieces(read1: Callable[..., bytes], piece_bytes: int) -> Iterator[bytes]:
    # A body without chunked framing: read1 returns what has arrived instead of blocking
    # until a whole piece is there, so stream lines are seen as soon as they are sent.
    while data := read1(piece_bytes, decode_content=False):
        yield data


def _inflate(pieces: Iterable[bytes], coding: str, limit: int, ex: Exchange) -> Iterator[bytes]:
    decompressor: Any = None
    head = b""
    for piece in pieces:
        data = piece
        if decompressor is None:
            head += data
            if coding == "deflate" and len(head) < 2:
                continue
            decompressor = zlib.decompressobj(_wbits(coding, head))
            data, head = head, b""
        while data:
            if decompressor.eof:
                if coding == "deflate":
                    raise _bad_compression(ex, coding, "data follows the end of the stream")
                decompressor = zlib.decompressobj(_GZIP_WBITS)
            try:
                out = decompressor.decompress(data, limit)
            except zlib.error as exc:
                raise _bad_compression(ex, coding, str(exc)) from exc
            data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            if out:
                yield out
    if head or (decompressor is not None and not decompressor.eof):
        raise _bad_compression(ex, coding, "the body ends in the middle of the compressed data")


def _wbits(coding: str, head: bytes) -> int:
    if coding != "deflate":
        return _GZIP_WBITS
    # "deflate" is meant to carry a zlib header, but servers also send raw deflate.
    zlib_header = head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
    return zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS


def _bad_compression(ex: Exchange, coding: str, detail: str) -> ProtocolError:
    return ProtocolError(
        f"The {coding}-compressed answer of {ex.host} to {ex.what} is corrupt: {detail}",
        **ex.context(),
    )


def read_all(
    pieces: Iterable[bytes], ex: Exchange, *, limit: int, budget: float, clock: Clock
) -> bytes:
    """Read a whole body of at most ``limit`` decoded bytes within ``budget`` seconds."""
    end = clock.monotonic() + budget
    body = bytearray()
    for piece in pieces:
        body += piece
        if len(body) > limit:
            raise ProtocolError(
                f"The answer of {ex.host} to {ex.what} is larger than {limit} bytes once "
                "decoded; refusing to read more (a proxy, a compression bomb, or not Ollama)",
                **ex.context(),
            )
        if clock.monotonic() > end:
            raise OllamaConnectionError(
                f"Ollama at {ex.host} did not finish its answer to {ex.what} within "
                f"{budget:g}s; it trickles in too slowly",
                kind="timeout",
                **ex.context(),
            )
    return bytes(body)


def read_prefix(pieces: Iterable[bytes], limit: int, *, budget: float, clock: Clock) -> bytes:
    """Read what arrives of a body's first ``limit`` bytes within ``budget`` seconds.

    For error messages: a failure or the end of the budget ends the reading, never the call.
    """
    end = clock.monotonic() + budget
    body = bytearray()
    try:
        for piece in pieces:
            body += piece
            if len(body) >= limit or clock.monotonic() > end:
                break
    except OllamaReadyError:
        pass
    return bytes(body[:limit])


def ndjson_records(
    raw: RawBody,
    codings: tuple[str, ...],
    ex: Exchange,
    *,
    max_line: int,
    parse: Callable[[bytes, Exchange], _R],
) -> Iterator[_R]:
    """Read a streamed body as NDJSON: yield ``parse(line, ex)`` for every non-empty line.

    No line may be longer than ``max_line`` bytes, and memory stays within about twice that,
    even for a body with no newline at all. A line byte-identical to the one before (a stuck
    Ollama re-sends its last line every 60 ms) yields the same record again without parsing.
    Transport failures while reading become errors of :mod:`ollama_ready.errors`.

    The stream, the split and the parse share one generator: a progress line arrives on its
    own, so the per-line overhead is what a pull's CPU is made of.
    """
    pieces = decoded_pieces(raw, codings, ex) if codings else _raw_pieces(raw, READ_CHUNK_BYTES)
    pending = bytearray()  # the start of a line whose newline has not come yet
    previous: bytes | None = None  # the line ``record`` was parsed from
    record: _R
    try:
        for piece in pieces:
            data = piece
            if pending:
                pending += piece
                data = bytes(pending)
                pending.clear()
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                if end - start > max_line:
                    raise _line_too_long(ex, max_line)
                line = data[start:end]
                start = end + 1
                if line != previous:
                    stripped = line.strip()
                    if not stripped:
                        continue
                    record = parse(stripped, ex)
                    previous = line
                yield record
            if len(data) - start > max_line:
                raise _line_too_long(ex, max_line)
            pending += memoryview(data)[start:]
    except OllamaReadyError:
        raise
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, ex) from exc
    last = pending.strip()
    if last:
        yield parse(bytes(last), ex)


def _line_too_long(ex: Exchange, max_line: int) -> ProtocolError:
    return ProtocolError(
        f"A line of the stream from {ex.host} ({ex.what}) is longer than {max_line} bytes; "
        "Ollama's progress lines are short, so this is not Ollama's protocol",
        **ex.context(),
    )


def decode_json(data: bytes, ex: Exchange) -> Any:
    """Parse JSON from the server; raise :class:`ProtocolError` on anything else."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        preview = data[:_PREVIEW_BYTES]
        more = "..." if len(data) > _PREVIEW_BYTES else ""
        raise ProtocolError(
            f"The answer of {ex.host} to {ex.what} is not valid JSON ({exc.__class__.__name__}): "
            f"{ex.redact(repr(preview))}{more}",
            **ex.context(),
        ) from exc
