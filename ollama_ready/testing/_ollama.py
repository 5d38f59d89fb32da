"""FakeOllama: a real HTTP server on loopback that speaks Ollama's API, with fault injection.

It reproduces what a real Ollama v0.12.11 sends (see ``docs/real-ollama/`` in the project's
shared docs): status codes, content types, exact error texts, omitted zero fields, the order of
pull status lines and the progress line re-sent at every tick. Model bytes are simulated; only
sizes and digests exist. Faults can be switched on and off while clients talk to it.

Example::

    with FakeOllama(tick=0.005) as server:
        requests.post(f"{server.url}/api/pull", json={"model": "llama3.2:1b"})
        assert server.has_model("llama3.2:1b")
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar

from ollama_ready.errors import InvalidModelName
from ollama_ready.names import ModelName
from ollama_ready.testing._ollama_catalogue import (
    MEDIA_MODEL,
    FakeBlob,
    FakeModel,
    apply_create_request,
    default_registry,
)
from ollama_ready.testing._ollama_downloads import DownloadManager, StreamFault
from ollama_ready.testing._ollama_http import ConnectionGone, HandlerBase, Listener
from ollama_ready.testing._ollama_pull import (
    PullHooks,
    ResetConnection,
    Waiter,
    manifest_error,
    pull_events,
)
from ollama_ready.testing._ollama_wire import (
    NDJSON_TYPE,
    REPLY_TOKENS,
    TEXT_TYPE,
    WAIT_STREAM_TYPE,
    HTTPError,
    Installed,
    Loaded,
    allowed_host,
    check_fraction,
    dumps,
    go_quote,
    keep_alive_seconds,
    kv_cache_bytes,
    model_field,
    modelfile,
    ndjson_line,
    parameters_text,
    parse_body,
    ps_entry,
    reply_metrics,
    rfc3339,
    run_reply,
    send_json,
    status_phrase,
    string_field,
    tags_entry,
    tensors,
    unmarshal_error,
)

__all__ = ["FakeBlob", "FakeModel", "FakeOllama", "RecordedRequest"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T", bound="FakeOllama")

_MAX_JSON_BODY = 32 * 1024 * 1024
_BLOB_DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
_BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
_DEFAULT_KEEP_ALIVE = 300.0
_FOREVER_SECONDS = 290 * 365 * 24 * 3600.0  # Go's maximum duration is about 292 years
_DEFAULT_NUM_CTX = 4096


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake server received.

    ``body`` is the decoded JSON body, or None for an empty, non-JSON or blob-upload body.
    ``at`` is :func:`time.monotonic` when the request had been read.
    """

    method: str
    path: str
    body: Any
    headers: Mapping[str, str]
    at: float


@dataclass(slots=True)
class _FailRule:
    remaining: int
    status: int
    message: str
    path: str | None


@dataclass(slots=True)
class _RawResponse:
    method: str
    path: str
    status: int
    body: bytes
    headers: dict[str, str]
    remaining: int | None
    chunk_size: int | None
    delay: float
    close: bool


class _Handler(HandlerBase):
    fake: FakeOllama

    def __init__(
        self,
        request: socket.socket,
        client_address: tuple[str, int],
        listener: Listener,
        fake: FakeOllama,
    ) -> None:
        self.fake = fake
        super().__init__(request, client_address, listener)

    def _dispatch(self) -> None:
        self.listener.set_busy(self.connection, True)
        try:
            self.listener.wait_while_hung()
            if self.listener.stopping.is_set():
                self.close_connection = True
                return
            self.fake._handle(self)
        finally:
            self.listener.set_busy(self.connection, False)
            if self.listener.refusing or self.listener.stopping.is_set():
                self.close_connection = True

    do_GET = _dispatch  # noqa: N815 - BaseHTTPRequestHandler's naming
    do_HEAD = _dispatch  # noqa: N815
    do_POST = _dispatch  # noqa: N815
    do_DELETE = _dispatch  # noqa: N815
    do_PUT = _dispatch  # noqa: N815
    do_PATCH = _dispatch  # noqa: N815
    do_OPTIONS = _dispatch  # noqa: N815


class FakeOllama:
    """A fake Ollama server on loopback: real HTTP, simulated models, switchable faults.

    Nothing listens until :meth:`start` (or ``with FakeOllama() as server:``). ``models`` are
    present from the start; ``registry`` lists what can be pulled (a default catalogue with
    ``llama3.2:1b``, ``gpt-oss:20b``, ``qwen2.5:0.5b`` and ``tinyllama`` when omitted).

    Pull timing: a progress line every ``tick`` seconds (60 ms on a real server), downloads
    at ``bandwidth`` bytes per second per blob (None: a blob completes on its first tick), and
    at least ``blob_min_seconds`` per uncached blob (a real server needs about 1 s). Use
    :meth:`realistic` for the real server's pace. ``vram_fraction`` is the share of a loaded
    model placed in VRAM as ``/api/ps`` reports it (0.0 is a CPU-only server).

    With ``check_host`` the server answers 403 with an empty body to a request whose Host
    header is not local, as a real server bound to loopback does. ``load_seconds`` delays each
    load through ``/api/generate``; ``ready_after`` keeps a freshly started server silent that
    long (port open, nothing answered); ``models_dir`` appears in paths of error texts.
    """

    def __init__(
        self,
        *,
        models: Iterable[FakeModel | str] = (),
        registry: Iterable[FakeModel | str] | None = None,
        version: str = "0.12.11",
        tick: float = 0.06,
        bandwidth: float | None = None,
        blob_min_seconds: float = 0.0,
        vram_fraction: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        check_host: bool = False,
        load_seconds: float = 0.0,
        ready_after: float = 0.0,
        models_dir: str = "/root/.ollama/models",
    ) -> None:
        if tick <= 0:
            raise ValueError(f"tick must be positive, got {tick!r}")
        check_fraction("vram_fraction", vram_fraction)
        self.version = version
        self.tick = tick
        self.check_host = check_host
        self.load_seconds = load_seconds
        self.ready_after = ready_after
        self.models_dir = models_dir.rstrip("/")
        self._vram_fraction = vram_fraction
        self._lock = threading.RLock()
        self._downloads = DownloadManager(bandwidth=bandwidth, blob_min_seconds=blob_min_seconds)
        self._pull_hooks = PullHooks(
            downloads=self._downloads,
            tick=lambda: self.tick,
            has_blob=self.has_blob,
            add_blob=self._add_blob,
            install=self._install_locked,
        )
        self._listener = Listener(host, port, self._serve_connection)
        self._installed: dict[ModelName, Installed] = {}
        self._registry: dict[ModelName, FakeModel] = {}
        self._blobs: dict[str, int] = {}
        self._loaded: dict[ModelName, Loaded] = {}
        self._requests: list[RecordedRequest] = []
        self._fail_rules: list[_FailRule] = []
        self._raw_responses: list[_RawResponse] = []
        self._stream_faults: list[StreamFault] = []
        self._registry_error: str | None = None
        for pullable in default_registry() if registry is None else registry:
            self.add_registry_model(pullable)
        for present in models:
            self.add_model(present)

    @classmethod
    def realistic(cls: type[_T], **kwargs: Any) -> _T:
        """Return a server with a real Ollama's pace: 60 ms ticks, >= 1 s per blob, 10 MB/s."""
        settings: dict[str, Any] = {"tick": 0.06, "blob_min_seconds": 1.0, "bandwidth": 10_000_000}
        settings.update(kwargs)
        return cls(**settings)

    # -- life cycle -------------------------------------------------------------------------

    def start(self: _T, *, refuse_for: float = 0.0, hang_for: float | None = None) -> _T:
        """Bind the port and serve; the port is known at once even while refusing or hung.

        ``refuse_for`` keeps the port closed that long first (a process still starting);
        ``hang_for`` (default ``ready_after``) then accepts nothing that long (GPU discovery).
        """
        hang = self.ready_after if hang_for is None else hang_for
        self._listener.start(refuse_for=refuse_for, hang_for=hang)
        _log.debug("FakeOllama listening on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the port and all connections; never blocks longer than about ``timeout``."""
        self._listener.stop(timeout)

    def __enter__(self: _T) -> _T:
        if not self._listener.started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """The address the server binds."""
        return self._listener.host

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: the server was never started.
        """
        port = self._listener.port
        if port is None:
            raise RuntimeError("FakeOllama has no port yet: call start() first")
        return port

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def listening_since(self) -> float | None:
        """When the port last opened, as ``time.monotonic()``; None while it is closed.

        After ``start(refuse_for=...)``, :meth:`refuse_connections` or a restart, this is the
        moment a waiter could first connect again: measure a waiter's lag from it.
        """
        return self._listener.listening_since

    def __repr__(self) -> str:
        where = self.url if self._listener.port is not None else "not started"
        return f"FakeOllama({where}, models={len(self._installed)})"

    # -- catalogue ----------------------------------------------------------------------------

    def add_model(self, model: FakeModel | str) -> FakeModel:
        """Make ``model`` present, as if pulled earlier; a string builds a synthetic model."""
        if isinstance(model, str):
            with self._lock:
                known = self._registry.get(ModelName.parse(model))
            resolved = known or FakeModel.synthetic(model)
        else:
            resolved = model
        with self._lock:
            self._install(resolved)
        return resolved

    def add_registry_model(self, model: FakeModel | str) -> FakeModel:
        """Make ``model`` pullable; a string builds a synthetic model."""
        if isinstance(model, str):
            model = FakeModel.synthetic(model)
        with self._lock:
            self._registry[model.model_name] = model
        return model

    def remove_model(self, name: str) -> bool:
        """Delete a present model (as ``/api/delete`` does); False if it was absent."""
        with self._lock:
            return self._delete(ModelName.parse(name))

    def has_model(self, name: str) -> bool:
        """Return whether a model of this name is present (names compare as Ollama's do)."""
        try:
            key = ModelName.parse(name)
        except InvalidModelName:
            return False
        with self._lock:
            return key in self._installed

    def model(self, name: str) -> FakeModel | None:
        """Return the present model of this name, or None."""
        with self._lock:
            installed = self._installed.get(ModelName.parse(name))
            return installed.model if installed else None

    @property
    def models(self) -> tuple[FakeModel, ...]:
        """The models present now."""
        with self._lock:
            return tuple(entry.model for entry in self._installed.values())

    def has_blob(self, digest: str) -> bool:
        """Return whether the blob ``sha256:<hex>`` is complete on the simulated disk."""
        with self._lock:
            return digest in self._blobs

    def partial_bytes(self, digest: str) -> int:
        """Bytes of ``digest`` downloaded so far by an interrupted or running pull."""
        return self._downloads.partial(digest)

    def is_loaded(self, name: str) -> bool:
        """Return whether the model is loaded (listed by ``/api/ps``)."""
        with self._lock:
            self._expire_loaded()
            return ModelName.parse(name) in self._loaded

    @property
    def vram_fraction(self) -> float:
        """The share of a loaded model placed in VRAM unless the model sets its own."""
        return self._vram_fraction

    @vram_fraction.setter
    def vram_fraction(self, value: float) -> None:
        check_fraction("vram_fraction", value)
        self._vram_fraction = value

    # -- request log --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Count received requests, optionally only one method and/or path."""
        with self._lock:
            return sum(
                1
                for r in self._requests
                if (method is None or r.method == method.upper())
                and (path is None or r.path == path)
            )

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    # -- faults -------------------------------------------------------------------------------

    def refuse_connections(self, seconds: float) -> None:
        """Close the port for ``seconds`` (ECONNREFUSED), then listen on the same port again.

        Idle keep-alive connections are closed too; a response in progress completes.
        """
        self._listener.refuse(seconds)

    def hang_connections(self, seconds: float) -> None:
        """Keep the port open but accept and answer nothing for ``seconds``.

        Connections wait in the kernel backlog and are served when the hang ends, like a real
        server that opened its port but still runs GPU discovery.
        """
        self._listener.hang(seconds)

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        message: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (to ``path`` only, if given) with ``status``.

        The body is ``{"error": message}``; the default message for 503 is the real
        scheduler's "server busy" text.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if message is None:
            message = _BUSY_MESSAGE if status == 503 else status_phrase(status)
        with self._lock:
            self._fail_rules.append(_FailRule(count, status, message, path))

    def error_mid_stream(
        self, message: str, at_fraction: float = 0.5, *, times: int | None = 1
    ) -> None:
        """End the next pull(s) with an ``{"error": message}`` line once ``at_fraction`` is done.

        The status stays 200 (with ``stream: false`` the error becomes an HTTP 500).
        ``at_fraction=0`` fails right after ``pulling manifest``; ``1.0`` before verifying.
        """
        self._arm(
            StreamFault(
                "error", check_fraction("at_fraction", at_fraction), message, remaining=times
            )
        )

    def reset_at(self, fraction: float, *, times: int | None = 1) -> None:
        """Abort the next pull(s) with a TCP reset once ``fraction`` of the bytes are done."""
        self._arm(StreamFault("reset", check_fraction("fraction", fraction), remaining=times))

    def stall(
        self,
        seconds: float,
        mode: str = "repeat",
        *,
        at_fraction: float = 0.0,
        times: int | None = 1,
    ) -> None:
        """Freeze the next pull(s) for ``seconds`` once ``at_fraction`` of the bytes are done.

        ``mode="repeat"`` re-sends the same progress line every tick with ``completed`` frozen
        (how a real server stalls while it retries a dead blob host); ``mode="silent"`` sends
        nothing while the connection stays open.
        """
        if mode not in ("repeat", "silent"):
            raise ValueError(f"stall mode must be 'repeat' or 'silent', got {mode!r}")
        fraction = check_fraction("at_fraction", at_fraction)
        self._arm(StreamFault("stall", fraction, seconds=seconds, mode=mode, remaining=times))

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Change the download speed per blob from now on (None: unlimited)."""
        self._downloads.set_bandwidth(bytes_per_second)

    @property
    def blob_min_seconds(self) -> float:
        """The least time any uncached blob takes to download."""
        return self._downloads.blob_min_seconds

    @property
    def bandwidth(self) -> float | None:
        """The simulated download speed per blob in bytes per second (None: unlimited)."""
        return self._downloads.bandwidth

    def restart(self, *, keep_partials: bool = False, down_for: float = 0.0) -> None:
        """Simulate a server restart: drop every connection and unload every model.

        In-flight downloads are forgotten unless ``keep_partials``, in which case the next pull
        resumes from their bytes. The port refuses connections for ``down_for`` seconds.
        """

        def forget() -> None:
            self._downloads.reset(keep_partials=keep_partials)
            with self._lock:
                self._loaded.clear()

        self._listener.refuse(down_for, drop=True, while_closed=forget)

    def registry_unreachable(self, enabled: bool = True, kind: str = "dial") -> None:
        """Make every pull fail at the manifest step, even for models already present.

        ``kind="dial"`` gives the real "connection refused" text, ``kind="dns"`` the real
        "no such host" text.
        """
        if kind not in ("dial", "dns"):
            raise ValueError(f"kind must be 'dial' or 'dns', got {kind!r}")
        with self._lock:
            self._registry_error = kind if enabled else None

    def respond_with(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        times: int | None = 1,
        chunk_size: int | None = None,
        delay: float = 0.0,
        close: bool = False,
    ) -> None:
        """Answer ``method path`` with a raw response, for hostile-server tests.

        The body is sent as given (add ``Content-Encoding`` yourself for a gzip bomb, a
        ``Location`` header for a redirect). Content-Length is added unless ``headers`` has
        one or ``chunk_size`` is set; then the body trickles in chunks of that size, ``delay``
        seconds apart. ``close`` closes the connection afterwards. ``times=None``: until
        :meth:`clear_faults`.
        """
        data = body.encode() if isinstance(body, str) else bytes(body)
        rule = _RawResponse(
            method.upper(), path, status, data, dict(headers or {}), times, chunk_size, delay, close
        )
        with self._lock:
            self._raw_responses.append(rule)

    def clear_faults(self) -> None:
        """Switch every fault off: port, failures, stream faults, registry and raw responses."""
        with self._lock:
            self._fail_rules.clear()
            self._raw_responses.clear()
            self._stream_faults.clear()
            self._registry_error = None
        self._listener.clear()

    def _arm(self, fault: StreamFault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError(f"times must be at least 1 or None, got {fault.remaining}")
        with self._lock:
            self._stream_faults.append(fault)

    def _take_stream_faults(self) -> list[StreamFault]:
        with self._lock:
            taken: list[StreamFault] = []
            for fault in self._stream_faults:
                taken.append(replace(fault))
                if fault.remaining is not None:
                    fault.remaining -= 1
            self._stream_faults = [f for f in self._stream_faults if f.remaining != 0]
            return taken

    # -- HTTP plumbing ------------------------------------------------------------------------

    def _serve_connection(
        self, sock: socket.socket, address: tuple[str, int], listener: Listener
    ) -> None:
        _Handler(sock, address, listener, self)

    def _handle(self, h: _Handler) -> None:
        method = h.command
        path = h.path.partition("?")[0]
        upload = method == "POST" and path.startswith("/api/blobs/")
        body = b""
        if not upload:
            try:
                body = h.read_body(_MAX_JSON_BODY)
            except ValueError:
                h.close_connection = True
                send_json(h, 413, {"error": "http: request body too large"})
                return
        self._record(method, path, body, h)
        if self._answer_by_fault(h, method, path, upload):
            return
        route = _ROUTES.get((method, path))
        if route is None and path.startswith("/api/blobs/") and method in ("HEAD", "POST"):
            route = FakeOllama._blob
        if route is None:
            if upload:
                h.drain_body()
            h.send_bytes(404, b"404 page not found", "text/plain")
            return
        try:
            route(self, h, body)
        except HTTPError as exc:
            if upload:
                h.drain_body()
            send_json(h, exc.status, {"error": exc.message})
        except ResetConnection:
            h.reset_connection()

    def _record(self, method: str, path: str, body: bytes, h: _Handler) -> None:
        decoded: Any = None
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
        entry = RecordedRequest(method, path, decoded, dict(h.headers.items()), time.monotonic())
        with self._lock:
            self._requests.append(entry)

    def _answer_by_fault(self, h: _Handler, method: str, path: str, upload: bool) -> bool:
        if self.check_host and not allowed_host(h.headers.get("Host", "")):
            if upload:
                h.drain_body()
            h.send_bytes(403, b"", None)
            return True
        if self.check_host and method == "OPTIONS":
            h.send_bytes(204, b"", None, content_length=False)
            return True
        raw = self._take_raw(method, path)
        fail = None if raw else self._take_fail(path)
        if raw is None and fail is None:
            return False
        if upload:
            h.drain_body()
        if raw is not None:
            self._send_raw(h, raw)
        elif fail is not None:
            send_json(h, fail.status, {"error": fail.message})
        return True

    def _take_raw(self, method: str, path: str) -> _RawResponse | None:
        with self._lock:
            for rule in self._raw_responses:
                if rule.method == method and rule.path == path:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._raw_responses.remove(rule)
                    return rule
        return None

    def _take_fail(self, path: str) -> _FailRule | None:
        with self._lock:
            for rule in self._fail_rules:
                if rule.path is None or rule.path == path:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._fail_rules.remove(rule)
                    return rule
        return None

    def _send_raw(self, h: _Handler, raw: _RawResponse) -> None:
        h.send_response(raw.status)
        for name, value in raw.headers.items():
            h.send_header(name, value)
        has_length = any(name.lower() == "content-length" for name in raw.headers)
        if raw.chunk_size:
            h.send_header("Transfer-Encoding", "chunked")
        elif not has_length:
            h.send_header("Content-Length", str(len(raw.body)))
        if raw.close:
            h.send_header("Connection", "close")
        h.end_headers()
        if raw.chunk_size:
            for start in range(0, len(raw.body), raw.chunk_size):
                h.write_chunk(raw.body[start : start + raw.chunk_size])
                if raw.delay and h.listener.stopping.wait(raw.delay):
                    return
            h.end_stream()
        elif raw.body and h.command != "HEAD":
            h.write_raw(raw.body)
        if raw.close:
            h.close_connection = True

    def _waiter(self, h: _Handler) -> Waiter:
        listener = self._listener
        generation = listener.generation
        return Waiter(h.peer_gone, listener.stopping, lambda: listener.generation == generation)

    def _stream(
        self, h: _Handler, events: Generator[dict[str, Any], None, None], *, stream: bool
    ) -> None:
        """Send progress objects as NDJSON, or only the last one with ``stream: false``."""
        try:
            if stream:
                self._send_stream(h, events)
            else:
                self._send_last(h, events)
        finally:
            events.close()

    def _send_stream(self, h: _Handler, events: Iterator[dict[str, Any]]) -> None:
        first = next(events, None)
        if first is not None and "error" in first:
            send_json(h, int(first.get("status", 500)), {"error": first["error"]})
            return
        h.start_stream(NDJSON_TYPE)
        try:
            if first is not None:
                h.write_chunk(ndjson_line(first))
            for event in events:
                h.write_chunk(ndjson_line({"error": event["error"]} if "error" in event else event))
            h.end_stream()
        except ConnectionGone:
            h.close_connection = True

    def _send_last(self, h: _Handler, events: Iterator[dict[str, Any]]) -> None:
        last: dict[str, Any] | None = None
        for event in events:
            if "error" in event:
                status = int(event.get("status", 500))
                h.send_bytes(status, dumps({"error": event["error"]}), WAIT_STREAM_TYPE)
                return
            last = event
        if last is None:
            h.send_bytes(
                500, dumps({"error": "unexpected end of progress response"}), WAIT_STREAM_TYPE
            )
            return
        h.send_bytes(200, dumps(last), WAIT_STREAM_TYPE)

    # -- simple routes ------------------------------------------------------------------------

    def _root(self, h: _Handler, body: bytes) -> None:
        h.send_bytes(200, b"Ollama is running", TEXT_TYPE)

    def _version(self, h: _Handler, body: bytes) -> None:
        send_json(h, 200, {"version": self.version})

    def _tags(self, h: _Handler, body: bytes) -> None:
        with self._lock:
            entries = sorted(self._installed.values(), key=lambda e: e.modified_ns, reverse=True)
            models = [tags_entry(entry) for entry in entries]
        send_json(h, 200, {"models": models})

    def _show(self, h: _Handler, body: bytes) -> None:
        request = parse_body(body, "ShowRequest")
        name = model_field(request, "ShowRequest")
        if not name:
            raise HTTPError(400, "model is required")
        entry = self._find_installed(name)
        if entry is None:
            raise HTTPError(404, f"model '{name}' not found")
        send_json(h, 200, self._show_response(entry, verbose=bool(request.get("verbose"))))

    def _delete(self, key: ModelName) -> bool:
        installed = self._installed.pop(key, None)
        if installed is None:
            return False
        self._loaded.pop(key, None)
        self._prune(installed.model.blobs)
        return True

    def _delete_route(self, h: _Handler, body: bytes) -> None:
        request = parse_body(body, "DeleteRequest")
        name = model_field(request, "DeleteRequest")
        try:
            key = ModelName.parse(name)
        except InvalidModelName:
            raise HTTPError(400, f"name {go_quote(name)} is invalid") from None
        with self._lock:
            if not self._delete(key):
                raise HTTPError(404, f"model '{name}' not found")
        h.send_bytes(200, b"", None)

    def _copy(self, h: _Handler, body: bytes) -> None:
        request = parse_body(body, "CopyRequest")
        source = string_field(request, "source", "CopyRequest")
        destination = string_field(request, "destination", "CopyRequest")
        try:
            source_key = ModelName.parse(source)
        except InvalidModelName:
            raise HTTPError(400, f"source {go_quote(source)} is invalid") from None
        try:
            destination_key = ModelName.parse(destination)
        except InvalidModelName:
            raise HTTPError(400, f"destination {go_quote(destination)} is invalid") from None
        with self._lock:
            entry = self._installed.get(source_key)
            if entry is None:
                raise HTTPError(404, f"model {go_quote(source)} not found")
            self._install(entry.model.renamed(destination_key.full))
        h.send_bytes(200, b"", None)

    def _ps(self, h: _Handler, body: bytes) -> None:
        with self._lock:
            self._expire_loaded()
            loaded = sorted(self._loaded.values(), key=lambda e: e.expires_ns, reverse=True)
            models = [ps_entry(entry) for entry in loaded]
        send_json(h, 200, {"models": models})

    # -- blobs --------------------------------------------------------------------------------

    def _blob(self, h: _Handler, body: bytes) -> None:
        digest = h.path.partition("?")[0][len("/api/blobs/") :]
        if not _BLOB_DIGEST.match(digest):
            raise HTTPError(400, "invalid digest format")
        stored = "sha256:" + digest[7:]
        with self._lock:
            present = stored in self._blobs
        if h.command == "HEAD":
            if not present:
                raise HTTPError(404, f"blob {go_quote(digest)} not found")
            h.send_bytes(200, b"", None, content_length=False)
            return
        if present:
            h.drain_body()
            h.send_bytes(200, b"", None)
            return
        hasher = hashlib.sha256()
        size = 0
        for data in h.body_chunks():
            hasher.update(data)
            size += len(data)
        actual = f"sha256:{hasher.hexdigest()}"
        if actual != digest:
            message = f"digest mismatch, expected {go_quote(digest)}, got {go_quote(actual)}"
            raise HTTPError(400, message)
        with self._lock:
            self._blobs[actual] = size
        h.send_bytes(201, b"", None)

    # -- pull ---------------------------------------------------------------------------------

    def _pull(self, h: _Handler, body: bytes) -> None:
        request = parse_body(body, "PullRequest")
        raw_name = model_field(request, "PullRequest")
        try:
            name = ModelName.parse(raw_name)
        except InvalidModelName:
            raise HTTPError(400, "invalid model name") from None
        events = self._pull_events(name, bool(request.get("insecure")), self._waiter(h))
        self._stream(h, events, stream=request.get("stream") is not False)

    def _pull_events(
        self, name: ModelName, insecure: bool, waiter: Waiter, *, faults: bool = True
    ) -> Generator[dict[str, Any], None, None]:
        with self._lock:
            unreachable = self._registry_error
            model = self._registry.get(name)
        manifest: FakeModel | str
        if unreachable is None and model is not None:
            manifest = model
        else:
            manifest = manifest_error(name, insecure, unreachable)
        armed = self._take_stream_faults() if faults else []
        return pull_events(manifest, self._pull_hooks, waiter, armed)

    def _add_blob(self, digest: str, size: int) -> None:
        with self._lock:
            self._blobs[digest] = size

    def _install_locked(self, model: FakeModel) -> bool:
        with self._lock:
            return self._install(model)

    # -- create -------------------------------------------------------------------------------

    def _create(self, h: _Handler, body: bytes) -> None:
        request = parse_body(body, "CreateRequest")
        raw_name = model_field(request, "CreateRequest")
        try:
            name = ModelName.parse(raw_name)
        except InvalidModelName:
            raise HTTPError(400, "invalid model name") from None
        files = request.get("files")
        source = string_field(request, "from", "CreateRequest")
        if files is not None and not isinstance(files, dict):
            raise HTTPError(400, unmarshal_error(files, "CreateRequest.files", "map[string]string"))
        if not source and not files:
            raise HTTPError(400, "neither 'from' or 'files' was specified")
        events = self._create_events(name, request, self._waiter(h))
        self._stream(h, events, stream=request.get("stream") is not False)

    def _create_events(
        self,
        name: ModelName,
        request: Mapping[str, Any],
        waiter: Waiter,
    ) -> Generator[dict[str, Any], None, None]:
        files: Mapping[str, Any] = request.get("files") or {}
        if files:
            yield {"status": "parsing GGUF"}
            base = yield from self._base_from_files(name, files)
        else:
            base = yield from self._base_from_model(str(request["from"]), waiter)
        if base is None:
            return
        model = apply_create_request(base, name, request)
        lines = []
        with self._lock:
            for blob in model.layers:
                verb = "using existing" if blob.digest in self._blobs else "creating new"
                self._blobs[blob.digest] = blob.size
                lines.append({"status": f"{verb} layer {blob.digest}"})
            self._blobs[model.config.digest] = model.config.size
        yield from lines
        yield {"status": "writing manifest"}
        with self._lock:
            self._install(model)
        yield {"status": "success"}

    def _base_from_files(
        self, name: ModelName, files: Mapping[str, Any]
    ) -> Generator[dict[str, Any], None, FakeModel | None]:
        blobs: list[FakeBlob] = []
        for digest in files.values():
            text = str(digest)
            with self._lock:
                size = self._blobs.get(text)
            if size is None:
                path = f"{self.models_dir}/blobs/{text.replace(':', '-', 1)}"
                yield {"error": f"open {path}: no such file or directory"}
                return None
            blobs.append(FakeBlob(text, size, MEDIA_MODEL))
        total = sum(blob.size for blob in blobs)
        synthetic = FakeModel.synthetic(
            name.full, size=max(total, 1), layers=1, quantization_level="F16"
        )
        return replace(synthetic, blobs=(*blobs, synthetic.config), template="", parameters={})

    def _base_from_model(
        self, source: str, waiter: Waiter
    ) -> Generator[dict[str, Any], None, FakeModel | None]:
        entry = self._find_installed(source)
        if entry is not None:
            return entry.model
        try:
            source_name = ModelName.parse(source)
        except InvalidModelName:
            yield {"error": "invalid model name", "status": 400}
            return None
        for event in self._pull_events(source_name, False, waiter, faults=False):
            yield event
            if "error" in event:
                return None
        entry = self._find_installed(source)
        return entry.model if entry is not None else None

    # -- generate / chat (load and unload) ------------------------------------------------------

    def _generate(self, h: _Handler, body: bytes) -> None:
        self._run_model(h, parse_body(body, "GenerateRequest"), chat=False)

    def _chat(self, h: _Handler, body: bytes) -> None:
        self._run_model(h, parse_body(body, "ChatRequest"), chat=True)

    def _run_model(self, h: _Handler, request: Mapping[str, Any], *, chat: bool) -> None:
        kind = "ChatRequest" if chat else "GenerateRequest"
        raw_name = string_field(request, "model", kind)
        keep_alive = keep_alive_seconds(request.get("keep_alive"))  # decoded with the body
        entry = self._find_installed(raw_name)
        if entry is None:
            raise HTTPError(404, f"model '{raw_name}' not found")
        empty = not request.get("messages") if chat else not request.get("prompt")
        # Go truncates the duration to whole seconds: anything under 1 s unloads.
        if empty and keep_alive is not None and 0 <= keep_alive < 1:
            with self._lock:
                self._loaded.pop(entry.model.model_name, None)
            send_json(h, 200, run_reply(raw_name, chat, "unload"))
            return
        if "completion" not in entry.model.capabilities:
            verb = "chat" if chat else "generate"
            raise HTTPError(400, f"{go_quote(raw_name)} does not support {verb}")
        if self.load_seconds > 0 and not self._waiter(h).wait(self.load_seconds):
            h.close_connection = True
            return
        options = request.get("options") if isinstance(request.get("options"), dict) else {}
        self._load(entry.model, keep_alive, options or {})
        if empty:
            send_json(h, 200, run_reply(raw_name, chat, "load"))
            return
        self._reply(h, raw_name, chat=chat, stream=request.get("stream") is not False)

    def _load(self, model: FakeModel, keep_alive: float | None, options: Mapping[str, Any]) -> None:
        seconds = _DEFAULT_KEEP_ALIVE if keep_alive is None else keep_alive
        if seconds < 0:
            seconds = _FOREVER_SECONDS
        num_ctx = options.get("num_ctx")
        context = min(
            num_ctx if isinstance(num_ctx, int) and num_ctx > 0 else _DEFAULT_NUM_CTX,
            model.context_length,
        )
        size = model.size + kv_cache_bytes(model, context)
        fraction = model.vram_fraction if model.vram_fraction is not None else self._vram_fraction
        expires = time.time_ns() + int(seconds * 1e9)
        with self._lock:
            self._loaded[model.model_name] = Loaded(
                model, expires, size, int(size * fraction), context
            )

    def _reply(self, h: _Handler, name: str, *, chat: bool, stream: bool) -> None:
        if not stream:
            final = run_reply(name, chat, "stop", "".join(REPLY_TOKENS))
            final.update(reply_metrics())
            send_json(h, 200, final)
            return
        h.start_stream(NDJSON_TYPE)
        try:
            for token in REPLY_TOKENS:
                partial = run_reply(name, chat, None, token)
                h.write_chunk(ndjson_line(partial))
            final = run_reply(name, chat, "stop", "")
            final.update(reply_metrics())
            h.write_chunk(ndjson_line(final))
            h.end_stream()
        except ConnectionGone:
            h.close_connection = True

    # -- state helpers (call with the lock held where they mutate) ----------------------------

    def _find_installed(self, name: str) -> Installed | None:
        try:
            key = ModelName.parse(name)
        except InvalidModelName:
            return None
        with self._lock:
            return self._installed.get(key)

    def _install(self, model: FakeModel) -> bool:
        """Write the manifest; return whether an older manifest's layers were removed."""
        key = model.model_name
        previous = self._installed.get(key)
        for blob in model.blobs:
            self._blobs[blob.digest] = blob.size
            self._downloads.discard_partial(blob.digest)
        modified = max(
            time.time_ns(), max((e.modified_ns + 1 for e in self._installed.values()), default=0)
        )
        self._installed[key] = Installed(model, modified)
        if previous is None:
            return False
        return self._prune(
            b for b in previous.model.blobs if b.digest not in {x.digest for x in model.blobs}
        )

    def _prune(self, blobs: Iterable[FakeBlob]) -> bool:
        used = {blob.digest for entry in self._installed.values() for blob in entry.model.blobs}
        removed = False
        for blob in blobs:
            if blob.digest not in used and self._blobs.pop(blob.digest, None) is not None:
                removed = True
        return removed

    def _expire_loaded(self) -> None:
        now = time.time_ns()
        for key in [k for k, v in self._loaded.items() if v.expires_ns <= now]:
            del self._loaded[key]

    def _show_response(self, entry: Installed, *, verbose: bool) -> dict[str, Any]:
        model = entry.model
        weights = model.weights
        response: dict[str, Any] = {}
        if model.license:
            response["license"] = model.license
        response["modelfile"] = modelfile(model, self.models_dir)
        response["parameters"] = parameters_text(model.parameters)
        response["template"] = model.template
        if model.system:
            response["system"] = model.system
        response["details"] = dict(model.details)
        response["model_info"] = dict(model.model_info)
        if weights is not None:
            response["tensors"] = tensors(model)
        response["capabilities"] = list(model.capabilities)
        response["modified_at"] = rfc3339(entry.modified_ns)
        if verbose:
            response["model_info"] = {
                k: ([] if v is None else v) for k, v in model.model_info.items()
            }
        return response


_Route = Callable[[FakeOllama, _Handler, bytes], None]
_ROUTES: dict[tuple[str, str], _Route] = {
    ("GET", "/"): FakeOllama._root,
    ("HEAD", "/"): FakeOllama._root,
    ("GET", "/api/version"): FakeOllama._version,
    ("HEAD", "/api/version"): FakeOllama._version,
    ("GET", "/api/tags"): FakeOllama._tags,
    ("HEAD", "/api/tags"): FakeOllama._tags,
    ("POST", "/api/show"): FakeOllama._show,
    ("POST", "/api/pull"): FakeOllama._pull,
    ("DELETE", "/api/delete"): FakeOllama._delete_route,
    ("POST", "/api/copy"): FakeOllama._copy,
    ("POST", "/api/create"): FakeOllama._create,
    ("GET", "/api/ps"): FakeOllama._ps,
    ("POST", "/api/generate"): FakeOllama._generate,
    ("POST", "/api/chat"): FakeOllama._chat,
}
