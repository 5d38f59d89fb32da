"""The socket layer of FakeOllama: a listener whose port can be closed, hung and reopened.

The listening socket belongs to one acceptor thread; every accepted connection gets its own
daemon thread running an HTTP/1.1 handler. Faults that concern the port itself live here:

- *refuse*: the listening socket is closed, so connects fail with ``ECONNREFUSED``; the same
  port is bound again when the period ends.
- *hang*: the port stays open but nothing is accepted; new connections wait in the kernel's
  backlog and are served when the hang ends, which is how a real Ollama behaves while it runs
  GPU discovery after opening its port. Requests on connections already open wait too.
- *drop*: every open connection is shut down at once (a restart).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

__all__ = ["ConnectionGone", "HandlerBase", "Listener"]

_log = logging.getLogger(__name__)

_BACKLOG = 128
_GO_CHUNKING_THRESHOLD = 2048  # net/http buffers this much before it switches to chunked
_READ_CHUNK = 64 * 1024
_REBIND_RETRY = 0.05


class ConnectionGone(Exception):
    """The client closed the connection, or the server dropped it on purpose."""


@dataclass(slots=True)
class _Connection:
    sock: socket.socket
    thread: threading.Thread
    busy: bool = False


class Listener:
    """Own a listening socket on ``host:port`` and hand each connection to ``serve``."""

    def __init__(
        self,
        host: str,
        port: int,
        serve: Callable[[socket.socket, tuple[str, int], Listener], None],
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._serve = serve
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._refuse_until = 0.0
        self._hang_until = 0.0
        self._connections: dict[int, _Connection] = {}
        self._acceptor: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.stopping = threading.Event()
        self.generation = 0
        self.listening_since: float | None = None
        """When the port last opened (``time.monotonic()``); None while it is closed."""

    # -- life cycle -------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The bound port (known once started), or None."""
        return self._port

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran and :meth:`stop` did not."""
        return self._acceptor is not None and not self.stopping.is_set()

    def start(self, *, refuse_for: float = 0.0, hang_for: float = 0.0) -> None:
        """Bind the port and start accepting, after an optional refused or hung period."""
        if self._acceptor is not None:
            raise RuntimeError("this server was already started; create a new one")
        with self._cond:
            self._bind_locked()
            now = time.monotonic()
            if refuse_for > 0:
                self._refuse_until = now + refuse_for
                self._close_listener_locked()
            self._hang_until = now + hang_for if hang_for > 0 else 0.0
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"FakeOllama-acceptor-{self._port}", daemon=True
        )
        self._acceptor.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the port and every connection; join the threads, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self.stopping.set()
            self._cond.notify_all()
        self._wake()
        if self._acceptor is not None:
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._close_listener_locked()
            connections = list(self._connections.values())
        for connection in connections:
            _shutdown(connection.sock)
        for connection in connections:
            connection.thread.join(max(0.0, deadline - time.monotonic()))
        self._wake_r.close()
        self._wake_w.close()

    # -- faults -----------------------------------------------------------------------------

    def refuse(
        self,
        seconds: float,
        *,
        drop: bool = False,
        while_closed: Callable[[], None] | None = None,
    ) -> None:
        """Close the port for ``seconds`` (connects get ECONNREFUSED), then bind it again.

        Idle keep-alive connections are closed too, since nothing would answer on them; with
        ``drop`` every connection is closed, busy or not. ``while_closed`` runs before the port
        can open again, so no new client sees the state it changes half done.
        """
        with self._cond:
            self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)
            self._close_listener_locked()
            if drop:
                self.generation += 1
            for connection in self._connections.values():
                if drop or not connection.busy:
                    _shutdown(connection.sock)
            if while_closed is not None:
                while_closed()
            self._cond.notify_all()
        self._wake()
        if seconds <= 0:
            self._wait_rebound()

    def hang(self, seconds: float) -> None:
        """Stop accepting and answering for ``seconds``; waiting clients are served after."""
        with self._cond:
            self._hang_until = max(self._hang_until, time.monotonic() + seconds)
            self._cond.notify_all()
        self._wake()

    def clear(self) -> None:
        """End any refused or hung period now."""
        with self._cond:
            self._refuse_until = 0.0
            self._hang_until = 0.0
            self._cond.notify_all()
        self._wake()
        if self._acceptor is not None:
            self._wait_rebound()

    @property
    def refusing(self) -> bool:
        """Whether the port is closed on purpose right now."""
        with self._cond:
            return time.monotonic() < self._refuse_until

    def wait_while_hung(self) -> None:
        """Block while a hang is in force (returns early when the server stops)."""
        with self._cond:
            while not self.stopping.is_set():
                remaining = self._hang_until - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def set_busy(self, sock: socket.socket, busy: bool) -> None:
        """Mark a connection as answering a request (busy) or idle between requests."""
        with self._cond:
            connection = self._connections.get(id(sock))
            if connection is not None:
                connection.busy = busy

    # -- internals ----------------------------------------------------------------------------

    def _wait_rebound(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._sock is None and not self.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"could not bind {self.host}:{self._port} again")
                self._cond.wait(remaining)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _bind_locked(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            port = self._port if self._port is not None else self._requested_port
            sock.bind((self.host, port))
            sock.listen(_BACKLOG)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._sock = sock
        self.listening_since = time.monotonic()
        self._cond.notify_all()

    def _close_listener_locked(self) -> None:
        if self._sock is not None:
            # The acceptor's select() holds the socket open after close(); shutdown() stops
            # the listening at once, so the very next connect is refused.
            _shutdown(self._sock)
            self._sock.close()
            self._sock = None
            self.listening_since = None
            self._cond.notify_all()

    def _next_listener(self) -> socket.socket | None:
        """Wait until the port should accept; return the socket, or None to re-check."""
        with self._cond:
            if self.stopping.is_set():
                return None
            now = time.monotonic()
            if now < self._refuse_until:
                self._close_listener_locked()
                self._cond.wait(self._refuse_until - now)
                return None
            if self._sock is None:
                try:
                    self._bind_locked()
                except OSError as exc:
                    _log.warning("FakeOllama: cannot bind port %s again: %s", self._port, exc)
                    self._cond.wait(_REBIND_RETRY)
                    return None
            if now < self._hang_until:
                self._cond.wait(self._hang_until - now)
                return None
            return self._sock

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            sock = self._next_listener()
            if sock is None:
                continue
            try:
                readable, _, _ = select.select([sock, self._wake_r], [], [], 1.0)
            except (OSError, ValueError):
                continue
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if sock not in readable or self._next_listener() is not sock:
                continue
            try:
                conn, address = sock.accept()
            except OSError:
                continue
            self._spawn(conn, address)

    def _spawn(self, conn: socket.socket, address: tuple[str, int]) -> None:
        thread = threading.Thread(
            target=self._run_connection,
            args=(conn, address),
            name=f"FakeOllama-conn-{address[1]}",
            daemon=True,
        )
        with self._cond:
            self._connections[id(conn)] = _Connection(conn, thread)
        thread.start()

    def _run_connection(self, conn: socket.socket, address: tuple[str, int]) -> None:
        try:
            self._serve(conn, address, self)
        except Exception:  # a handler bug must not kill the server silently
            _log.exception("FakeOllama: connection handler failed")
        finally:
            with self._cond:
                self._connections.pop(id(conn), None)
            with contextlib.suppress(OSError):
                conn.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class HandlerBase(BaseHTTPRequestHandler):
    """HTTP/1.1 plumbing shared by the fake's routes: bodies, JSON, chunked streams, resets."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    listener: Listener

    def __init__(self, request: socket.socket, client_address: tuple[str, int], listener: Listener):
        self.listener = listener
        self._was_reset = False
        self._body_read = False
        super().__init__(request, client_address, None)  # type: ignore[arg-type]

    # -- logging and headers ----------------------------------------------------------------

    def log_message(self, format: str, *args: object) -> None:
        """Log through :mod:`logging` at debug level instead of writing to stderr."""
        _log.debug("FakeOllama %s: " + format, self.address_string(), *args)

    def parse_request(self) -> bool:
        """Parse the request line and headers; a new request has an unread body."""
        self._body_read = False
        return super().parse_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        """Send the status line and a Date header; Ollama (Go) sends no Server header."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    # -- request bodies -----------------------------------------------------------------------

    def body_chunks(self) -> Iterator[bytes]:
        """Yield the request body piece by piece (Content-Length or chunked), once."""
        if self._body_read:
            return
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            yield from self._chunked_body()
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(remaining, _READ_CHUNK))
            if not data:
                raise ConnectionGone("client closed the connection mid-body")
            remaining -= len(data)
            yield data

    def _chunked_body(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionGone("client closed the connection mid-body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return
            remaining = size
            while remaining > 0:
                data = self.rfile.read(min(remaining, _READ_CHUNK))
                if not data:
                    raise ConnectionGone("client closed the connection mid-body")
                remaining -= len(data)
                yield data
            self.rfile.readline(16)

    def read_body(self, limit: int) -> bytes:
        """Read the whole request body, refusing more than ``limit`` bytes."""
        parts: list[bytes] = []
        total = 0
        for data in self.body_chunks():
            total += len(data)
            if total > limit:
                raise ValueError(f"request body larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    def drain_body(self) -> None:
        """Read and discard the request body so the connection can be reused."""
        for _ in self.body_chunks():
            pass

    # -- responses ----------------------------------------------------------------------------

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        *,
        extra_headers: dict[str, str] | None = None,
        content_length: bool = True,
    ) -> None:
        """Send a complete response; large bodies go chunked, as Go's net/http sends them."""
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        chunked = len(body) > _GO_CHUNKING_THRESHOLD and self.command != "HEAD"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif content_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if chunked:
            self._write(_chunk(body) + b"0\r\n\r\n")
        elif body:
            self._write(body)

    def start_stream(self, content_type: str) -> None:
        """Send 200 headers for a chunked stream of lines."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are; raise :class:`ConnectionGone` if the client left."""
        self._write(data)

    def write_chunk(self, data: bytes) -> None:
        """Send one chunk of a stream; raise :class:`ConnectionGone` if the client left."""
        self._write(_chunk(data))

    def end_stream(self) -> None:
        """Send the terminating zero-length chunk."""
        self._write(b"0\r\n\r\n")

    def reset_connection(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0, then close)."""
        self._was_reset = True
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError, ValueError):
            self.rfile.close()
        with contextlib.suppress(OSError, ValueError):
            self.wfile.close()
        with contextlib.suppress(OSError):
            self.connection.close()

    def peer_gone(self) -> bool:
        """Return whether the client closed its side (EOF or error pending on the socket)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except (OSError, ValueError):
            return True

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except (OSError, ValueError) as exc:
            self.close_connection = True
            raise ConnectionGone(str(exc)) from exc

    def finish(self) -> None:
        """Flush and close the streams unless the connection was reset on purpose."""
        if self._was_reset:
            return
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def handle(self) -> None:
        """Serve requests until the client or the server closes the connection."""
        try:
            super().handle()
        except ConnectionGone:
            self.close_connection = True
        except ValueError:
            # The streams of a connection reset on purpose are closed under the stdlib's feet.
            if not self._was_reset:
                raise
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.EBADF, errno.ENOTCONN, None):
                raise


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
