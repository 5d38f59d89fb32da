"""OllamaClient against servers that misbehave: garbage, bombs, floods, drips, resets, redirects.

Cases that plain HTTP answers can express go through ``FakeOllama.respond_with``. Cases that
need raw control of the socket (no HTTP at all, a body produced lazily without end, a TCP reset,
a redirect to a second server) use :class:`RawServer`, a tiny scripted loopback server.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import socketserver
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.exceptions

from ollama_ready._http import Exchange, transport_error
from ollama_ready.client import OllamaClient
from ollama_ready.errors import OllamaConnectionError, ProtocolError

MiB = 1 << 20


# --- a scripted raw server ---------------------------------------------------------------------


@dataclass
class RawRequest:
    """What the raw server read before running its script."""

    method: str
    path: str
    headers: dict[str, str]


class RawConn:
    """One accepted connection, handed to a script."""

    def __init__(
        self, sock: socket.socket, request: RawRequest, reader: socketserver.StreamRequestHandler
    ):
        self.sock = sock
        self.request = request
        self._reader = reader

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def head(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """Send a status line and headers."""
        fields = {"Connection": "close", **(headers or {})}
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in fields.items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def chunk(self, data: bytes) -> None:
        """Send one chunk of a chunked body."""
        self.send(b"%x\r\n%s\r\n" % (len(data), data))

    def body_reader(self) -> Callable[[int], bytes]:
        """Return a reader of the request body."""
        return self._reader.rfile.read

    def reset(self) -> None:
        """Abort the connection with a TCP RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


Script = Callable[[RawConn], None]


@dataclass
class RawServer:
    """A loopback server that runs ``script`` for every request it receives."""

    script: Script
    requests: list[RawRequest] = field(default_factory=list)
    peer_gone: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request_line = self.rfile.readline(65536).decode("latin-1").split()
                if len(request_line) < 2:
                    return
                headers: dict[str, str] = {}
                while (line := self.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                request = RawRequest(request_line[0], request_line[1], headers)
                owner.requests.append(request)
                try:
                    owner.script(RawConn(self.connection, request, self))
                except (BrokenPipeError, ConnectionResetError):
                    owner.peer_gone.set()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def raw() -> Iterator[Callable[[Script], RawServer]]:
    """Start raw servers for a test and stop them afterwards."""
    started: list[RawServer] = []

    def start(script: Script) -> RawServer:
        server = RawServer(script).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__()


def _client(url: str, **kwargs: Any) -> OllamaClient:
    kwargs.setdefault("timeout", (2.0, 2.0))
    return OllamaClient(url, **kwargs)


def _answer(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> Script:
    def script(conn: RawConn) -> None:
        conn.head(status, {"Content-Length": str(len(body)), **(headers or {})})
        conn.send(body)

    return script


def _stream(lines: Sequence[bytes], *, headers: dict[str, str] | None = None) -> Script:
    def script(conn: RawConn) -> None:
        base = {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"}
        conn.head(200, {**base, **(headers or {})})
        for line in lines:
            conn.chunk(line)
        conn.send(b"0\r\n\r\n")

    return script


def _endless(piece: bytes, *, interval: float = 0.0, first: bytes = b"") -> Script:
    """Stream ``first``, then ``piece`` again and again until the client leaves (or 20 s)."""

    def script(conn: RawConn) -> None:
        conn.head(200, {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"})
        if first:
            conn.chunk(first)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            conn.chunk(piece)
            if interval:
                time.sleep(interval)

    return script


def _gzip_bomb(decoded_size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    parts = [compressor.compress(zeros) for _ in range(decoded_size // MiB)]
    return b"".join([*parts, compressor.flush()])


def _peak_while(action: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Run ``action``; return the peak of traced allocations and what it raised."""
    tracemalloc.start()
    error: BaseException | None = None
    try:
        action()
    except Exception as exc:
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


# --- not HTTP at all ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="another-protocol"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
            id="too-many-headers",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Big: " + b"y" * 70_000 + b"\r\n\r\n", id="huge-header"),
    ],
)
def test_a_reply_that_is_not_http_is_a_protocol_error(
    raw: Callable[[Script], RawServer], reply: bytes
) -> None:
    server = raw(lambda conn: conn.send(reply))
    with pytest.raises(ProtocolError, match="not valid HTTP") as info:
        _client(server.url).version()
    assert info.value.host == server.url


def test_a_server_that_closes_without_answering_is_a_reset(
    raw: Callable[[Script], RawServer],
) -> None:
    server = raw(lambda conn: None)
    with pytest.raises(OllamaConnectionError, match="without answering GET /api/version") as info:
        _client(server.url).version()
    assert info.value.kind == "reset"


def test_a_body_shorter_than_its_content_length_is_a_broken_connection(
    raw: Callable[[Script], RawServer],
) -> None:
    def script(conn: RawConn) -> None:
        conn.head(200, {"Content-Type": "application/json", "Content-Length": "100"})
        conn.send(b'{"version":')

    server = raw(script)
    with pytest.raises(OllamaConnectionError, match="before the answer") as info:
        _client(server.url).version()
    assert info.value.kind == "reset"


def test_tls_to_a_plain_http_server_is_a_tls_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_plain_http() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.recv(65536)

    thread = threading.Thread(target=answer_plain_http, daemon=True)
    thread.start()
    try:
        with pytest.raises(OllamaConnectionError, match="TLS") as info:
            _client(f"https://127.0.0.1:{port}").version()
    finally:
        listener.close()
        thread.join(5)
    assert info.value.kind == "tls"
    assert info.value.hint is not None
    assert "http://" in info.value.hint


# --- streams -----------------------------------------------------------------------------------


def test_a_reset_in_the_middle_of_a_pull_is_kind_reset(raw: Callable[[Script], RawServer]) -> None:
    def script(conn: RawConn) -> None:
        conn.head(200, {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"})
        conn.chunk(b'{"status":"pulling manifest"}\n')
        time.sleep(0.05)
        conn.reset()

    events = _client(raw(script).url).pull("tiny")
    assert next(events).status == "pulling manifest"
    with pytest.raises(OllamaConnectionError) as info:
        next(events)
    assert info.value.kind == "reset"


def test_a_stream_cut_before_its_last_chunk_is_a_broken_connection(
    raw: Callable[[Script], RawServer],
) -> None:
    def script(conn: RawConn) -> None:
        conn.head(200, {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"})
        conn.chunk(b'{"status":"pulling manifest"}\n')

    events = _client(raw(script).url).pull("tiny")
    assert next(events).status == "pulling manifest"
    with pytest.raises(OllamaConnectionError, match="before the answer") as info:
        next(events)
    assert info.value.kind == "reset"


def test_a_silent_stream_hits_the_read_timeout(raw: Callable[[Script], RawServer]) -> None:
    server = raw(_silent_after_first_line)
    events = _client(server.url, timeout=(2.0, 0.2)).pull("tiny")
    assert next(events).status == "pulling manifest"
    started = time.monotonic()
    with pytest.raises(OllamaConnectionError, match=r"no answer within 0\.2s") as info:
        next(events)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def _silent_after_first_line(conn: RawConn) -> None:
    conn.head(200, {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"})
    conn.chunk(b'{"status":"pulling manifest"}\n')
    time.sleep(2)


def test_closing_the_stream_closes_the_connection(raw: Callable[[Script], RawServer]) -> None:
    server = raw(_endless(b'{"status":"pulling abc","total":10,"completed":1}\n', interval=0.01))
    events = _client(server.url).pull("tiny")
    assert next(events).completed == 1
    assert not server.peer_gone.is_set()
    events.close()
    assert server.peer_gone.wait(3)


def test_an_interrupt_inside_the_stream_closes_the_connection(
    raw: Callable[[Script], RawServer],
) -> None:
    server = raw(_endless(b'{"status":"pulling abc","total":10,"completed":1}\n', interval=0.01))
    events = _client(server.url).pull("tiny")
    next(events)
    with pytest.raises(KeyboardInterrupt):
        events.throw(KeyboardInterrupt)
    assert server.peer_gone.wait(3)


def test_a_line_without_end_is_refused_with_bounded_memory(
    raw: Callable[[Script], RawServer],
) -> None:
    server = raw(_endless(b"x" * 65536))  # 20 s of it would be gigabytes
    client = _client(server.url)
    started = time.monotonic()
    peak, error = _peak_while(lambda: list(client.pull("tiny")))
    assert isinstance(error, ProtocolError)
    assert "longer than 1048576 bytes" in str(error)
    assert peak < 4 * MiB
    assert time.monotonic() - started < 5
    assert server.peer_gone.wait(3)


def test_the_line_limit_is_configurable(raw: Callable[[Script], RawServer]) -> None:
    long_status = b'{"status":"' + b"s" * 5000 + b'"}\n'
    server = raw(_stream([long_status]))
    assert [e.status for e in _client(server.url).pull("tiny")] == ["s" * 5000]
    with pytest.raises(ProtocolError, match="longer than 4096 bytes"):
        list(_client(server.url, max_line_bytes=4096).pull("tiny"))


def test_lines_are_split_across_pieces_and_blank_lines_skipped(
    raw: Callable[[Script], RawServer],
) -> None:
    pieces = [b'{"status":"pull', b'ing manifest"}\r\n\n{"status":', b'"success"}']
    server = raw(_stream(pieces))
    assert [e.status for e in _client(server.url).pull("tiny")] == ["pulling manifest", "success"]


# --- compression -------------------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_within_the_default_cap(raw: Callable[[Script], RawServer]) -> None:
    bomb = _gzip_bomb(128 * MiB)
    server = raw(
        _answer(bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    )
    client = _client(server.url)
    peak, error = _peak_while(client.version)
    assert isinstance(error, ProtocolError)
    assert f"larger than {32 * MiB} bytes" in str(error)
    assert peak < 40 * MiB


def test_the_body_cap_is_configurable(raw: Callable[[Script], RawServer]) -> None:
    inner = _gzip_bomb(64 * MiB)
    nested = gzip.compress(inner)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"}
    server = raw(_answer(nested, headers=headers))
    client = _client(server.url, max_body_bytes=MiB)
    peak, error = _peak_while(client.version)
    assert isinstance(error, ProtocolError)
    assert f"larger than {MiB} bytes" in str(error)
    assert peak < 3 * MiB


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, no zlib header
        ("gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),
        ("identity", lambda data: data),
    ],
)
def test_compressed_answers_are_decoded(
    raw: Callable[[Script], RawServer], coding: str, encode: Callable[[bytes], bytes]
) -> None:
    body = encode(b'{"version":"0.12.11"}')
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    assert _client(raw(_answer(body, headers=headers)).url).version() == "0.12.11"


def test_gzip_members_are_concatenated(raw: Callable[[Script], RawServer]) -> None:
    body = gzip.compress(b'{"version":') + gzip.compress(b'"0.12.11"}')
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert _client(raw(_answer(body, headers=headers)).url).version() == "0.12.11"


def test_a_compressed_stream_is_decoded(raw: Callable[[Script], RawServer]) -> None:
    lines = b'{"status":"pulling manifest"}\n{"status":"success"}\n'
    compressed = gzip.compress(lines)
    pieces = [compressed[:10], compressed[10:]]
    server = raw(_stream(pieces, headers={"Content-Encoding": "gzip"}))
    assert [e.status for e in _client(server.url).pull("tiny")] == ["pulling manifest", "success"]


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        pytest.param("gzip", b"\x1f\x8bnot really gzip", "corrupt", id="corrupt"),
        pytest.param(
            "gzip",
            gzip.compress(b'{"version":"0.12.11"}')[:-12],
            "ends in the middle",
            id="truncated",
        ),
        pytest.param(
            "deflate", zlib.compress(b"{}") + b"trailing", "data follows the end", id="trailing"
        ),
        pytest.param(
            "gzip", gzip.compress(b"{}") + b"trailing garbage", "corrupt", id="gzip-trailing"
        ),
        pytest.param("br", b"\x00", "nor can decode", id="unknown-coding"),
        pytest.param("gzip, gzip, gzip", b"\x00", "compressed 3 times", id="too-many-codings"),
    ],
)
def test_broken_compression_is_a_protocol_error(
    raw: Callable[[Script], RawServer], coding: str, body: bytes, message: str
) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    with pytest.raises(ProtocolError, match=message):
        _client(raw(_answer(body, headers=headers)).url).version()


# --- time --------------------------------------------------------------------------------------


def test_an_answer_that_trickles_in_is_cut_at_the_read_timeout(
    raw: Callable[[Script], RawServer],
) -> None:
    def script(conn: RawConn) -> None:
        conn.head(200, {"Content-Type": "application/json", "Content-Length": "500"})
        for _ in range(500):
            conn.send(b" ")
            time.sleep(0.02)

    server = raw(script)
    started = time.monotonic()
    with pytest.raises(OllamaConnectionError, match=r"within 0\.3s") as info:
        _client(server.url, timeout=(2.0, 0.3)).version()
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 2


# --- redirects ---------------------------------------------------------------------------------


def test_credentials_do_not_follow_a_redirect_to_another_server(
    raw: Callable[[Script], RawServer],
) -> None:
    target = raw(_answer(b'{"version":"0.12.11"}', headers={"Content-Type": "application/json"}))
    location = f"{target.url}/api/version"
    origin = raw(lambda conn: conn.head(307, {"Location": location, "Content-Length": "0"}))
    client = _client(origin.url, headers={"Authorization": "Bearer secret", "X-Trace": "1"})
    assert client.version() == "0.12.11"
    assert origin.requests[0].headers["authorization"] == "Bearer secret"
    assert "authorization" not in target.requests[0].headers
    assert target.requests[0].headers["x-trace"] == "1"


def test_a_redirect_loop_is_a_protocol_error(raw: Callable[[Script], RawServer]) -> None:
    server: list[RawServer] = []
    server.append(
        raw(lambda conn: conn.head(302, {"Location": f"{server[0].url}/x", "Content-Length": "0"}))
    )
    with pytest.raises(ProtocolError, match="redirected"):
        _client(server[0].url).version()


# --- uploads -----------------------------------------------------------------------------------


def test_push_blob_streams_the_file_from_disk(
    raw: Callable[[Script], RawServer], tmp_path: Path
) -> None:
    blob = tmp_path / "blob.gguf"
    digest = hashlib.sha256()
    with blob.open("wb") as out:
        for index in range(16):
            piece = bytes([index]) * MiB
            digest.update(piece)
            out.write(piece)
    received = hashlib.sha256()

    def script(conn: RawConn) -> None:
        remaining = int(conn.request.headers["content-length"])
        read = conn.body_reader()
        while remaining:
            data = read(min(remaining, 65536))
            received.update(data)
            remaining -= len(data)
        conn.head(201, {"Content-Length": "0"})

    server = raw(script)
    client = _client(server.url)
    peak, error = _peak_while(lambda: client.push_blob(f"sha256:{digest.hexdigest()}", blob))
    assert error is None
    assert received.hexdigest() == digest.hexdigest()
    assert server.requests[0].path == f"/api/blobs/sha256:{digest.hexdigest()}"
    assert server.requests[0].headers["content-length"] == str(16 * MiB)
    assert peak < 2 * MiB


# --- classification of failures that loopback cannot produce -----------------------------------


def _raised(make: Callable[[], None]) -> BaseException:
    try:
        make()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


def _exchange(source: str = "OLLAMA_HOST") -> Exchange:
    return Exchange("http://ollama.internal:11434", source, "GET", "/api/version", 3.0, 7.0)


def test_a_dns_failure_is_kind_dns_and_names_the_host_and_its_source() -> None:
    def fail() -> None:
        try:
            try:
                raise socket.gaierror(-2, "Name or service not known")
            except socket.gaierror as exc:
                raise urllib3.exceptions.NameResolutionError("ollama.internal", None, exc) from exc  # type: ignore[arg-type]
        except urllib3.exceptions.NameResolutionError as exc:
            pool_error = urllib3.exceptions.MaxRetryError(None, "/api/version", exc)  # type: ignore[arg-type]
            raise requests.exceptions.ConnectionError(pool_error) from None

    error = transport_error(_raised(fail), _exchange())
    assert isinstance(error, OllamaConnectionError)
    assert error.kind == "dns"
    assert "'ollama.internal'" in str(error)
    assert "OLLAMA_HOST" in str(error)


def test_a_connect_timeout_is_kind_timeout_with_the_connect_seconds() -> None:
    def fail() -> None:
        try:
            try:
                raise TimeoutError("timed out")
            except TimeoutError as exc:
                raise urllib3.exceptions.ConnectTimeoutError(None, "Connection timed out") from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:
            pool_error = urllib3.exceptions.MaxRetryError(None, "/api/version", exc)  # type: ignore[arg-type]
            raise requests.exceptions.ConnectTimeout(pool_error) from None

    error = transport_error(_raised(fail), _exchange("default"))
    assert isinstance(error, OllamaConnectionError)
    assert error.kind == "timeout"
    assert "within 3s" in str(error)
    assert "OLLAMA_HOST is not set" in str(error)


def test_an_unknown_transport_failure_is_kind_other() -> None:
    error = transport_error(requests.exceptions.RetryError("odd"), _exchange())
    assert isinstance(error, OllamaConnectionError)
    assert error.kind == "other"
    assert "odd" in str(error)
