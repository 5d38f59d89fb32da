"""OllamaClient against servers that misbehave: garbage, bombs, floods, drips, resets, redirects.

Cases that plain HTTP answers can express go through ``FakeOllama.respond_with``. Cases that
need raw control of the socket (no HTTP at all, a body produced lazily without end, a TCP reset,
a redirect to a second server) use :class:`RawServer`, a tiny scripted loopback server.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import socket
import socketserver
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.exceptions

from ollama_ready._http import Exchange, transport_error
from ollama_ready.client import OllamaClient
from ollama_ready.errors import OllamaConnectionError, ProtocolError, ResponseError
from ollama_ready.testing import FakeOllama

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


def _endless(piece: bytes, *, interval: float = 0.0) -> Script:
    """Stream ``piece`` again and again until the client leaves (or 20 s pass)."""

    def script(conn: RawConn) -> None:
        conn.head(200, {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"})
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


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    """A FakeOllama with one model present."""
    with FakeOllama(models=["tinyllama"]) as server:
        yield server


_JSON = {"Content-Type": "application/json; charset=utf-8"}
_NDJSON = {"Content-Type": "application/x-ndjson"}


# --- garbage where JSON should be --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"version": ', id="truncated"),
        pytest.param(b"\xff\xfe\x00\x01garbage", id="not-utf8"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
        pytest.param(b"", id="empty"),
        pytest.param(b"Ollama is running", id="text"),
        pytest.param(b"1" * 5000, id="huge-integer"),
        pytest.param(b"null", id="null"),
        pytest.param(b'["0.12.11"]', id="list"),
        pytest.param(b'{"version": 12}', id="number"),
        pytest.param(b'{"version": null}', id="missing"),
    ],
)
def test_garbage_instead_of_json_is_a_protocol_error(fake: FakeOllama, body: bytes) -> None:
    fake.respond_with("GET", "/api/version", body=body, headers=_JSON)
    with pytest.raises(ProtocolError) as info:
        _client(fake.url).version()
    assert info.value.host == fake.url
    assert "/api/version" in str(info.value)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/tags", b'{"models": 5}', "'models'"),
        ("/api/tags", b'{"models": [5]}', "models[0]"),
        ("/api/tags", b'{"models": [{"name": 5}]}', "'name'"),
        ("/api/tags", b'{"models": [{"name": "a", "size": -1}]}', "'size'"),
        ("/api/tags", b'{"models": [{"name": "a", "size": "big"}]}', "'size'"),
        ("/api/tags", b'{"models": [{"name": "a", "size": true}]}', "'size'"),
        ("/api/tags", b'{"models": [{"name": "a", "details": []}]}', "'details'"),
        ("/api/tags", b'{"models": [{"size": 1}]}', "'name'"),
        ("/api/ps", b'{"models": [{"name": "a", "size_vram": 1.5}]}', "'size_vram'"),
        ("/api/ps", b'{"models": [{"name": "a", "expires_at": 0}]}', "'expires_at'"),
        ("/api/ps", b'{"models": [{"name": "a", "context_length": "4k"}]}', "'context_length'"),
    ],
)
def test_a_wrong_shape_is_a_protocol_error_naming_the_field(
    fake: FakeOllama, path: str, body: bytes, field: str
) -> None:
    fake.respond_with("GET", path, body=body, headers=_JSON)
    client = _client(fake.url)
    with pytest.raises(ProtocolError, match=re.escape(field)):
        client.list_models() if path == "/api/tags" else client.ps()


@pytest.mark.parametrize(
    "body",
    [
        b'{"capabilities": "completion"}',
        b'{"capabilities": [1]}',
        b'{"model_info": []}',
        b'{"modelfile": 3}',
    ],
)
def test_a_wrong_show_answer_is_a_protocol_error(fake: FakeOllama, body: bytes) -> None:
    fake.respond_with("POST", "/api/show", body=body, headers=_JSON)
    with pytest.raises(ProtocolError, match="/api/show"):
        _client(fake.url).show("tinyllama")


def test_null_lists_and_unknown_fields_are_accepted(fake: FakeOllama) -> None:
    fake.respond_with("GET", "/api/tags", body=b'{"models": null, "next": 1}', headers=_JSON)
    fake.respond_with("GET", "/api/ps", body=b"{}", headers=_JSON)
    client = _client(fake.url)
    assert client.list_models() == ()
    assert client.ps() == ()


# --- another web server answers ----------------------------------------------------------------

_PROXY_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad\n Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


def test_an_html_error_page_says_a_proxy_answered(fake: FakeOllama) -> None:
    fake.respond_with(
        "GET", "/api/version", status=502, body=_PROXY_PAGE, headers={"Content-Type": "text/html"}
    )
    with pytest.raises(ProtocolError, match="A proxy or another web server answered") as info:
        _client(fake.url).version()
    assert "HTTP 502" in str(info.value)
    assert "'502 Bad Gateway'" in str(info.value)
    assert info.value.hint is not None
    assert "NO_PROXY" in info.value.hint


def test_an_html_page_with_status_200_and_no_type_is_recognised(fake: FakeOllama) -> None:
    fake.respond_with("GET", "/api/tags", body=b"  <html><body>Welcome to nginx!</body></html>")
    with pytest.raises(ProtocolError, match="instead of Ollama"):
        _client(fake.url).list_models()


def test_a_large_html_page_is_recognised_by_its_type_before_the_size_cap(
    fake: FakeOllama,
) -> None:
    page = _PROXY_PAGE + b"<!-- padding -->" * 1000
    fake.respond_with("GET", "/api/tags", body=page, headers={"Content-Type": "text/html"})
    with pytest.raises(ProtocolError, match="instead of Ollama"):
        _client(fake.url, max_body_bytes=1000).list_models()


def test_an_error_body_that_trickles_in_is_cut_at_the_read_timeout(fake: FakeOllama) -> None:
    body = b'{"error":"' + b"x" * 500 + b'"}'
    fake.respond_with("GET", "/api/ps", status=500, body=body, chunk_size=1, delay=0.02)
    started = time.monotonic()
    with pytest.raises(ResponseError) as info:
        _client(fake.url, timeout=(2.0, 0.3)).ps()
    assert info.value.status == 500
    assert time.monotonic() - started < 2


def test_an_html_page_instead_of_a_stream_says_a_proxy_answered(fake: FakeOllama) -> None:
    fake.respond_with("POST", "/api/pull", body=_PROXY_PAGE, headers={"Content-Type": "text/html"})
    with pytest.raises(ProtocolError, match="instead of Ollama"):
        list(_client(fake.url).pull("tinyllama"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(b"not json", "not valid JSON", id="text"),
        pytest.param(b"[1, 2]", "not a JSON object", id="list"),
        pytest.param(b'{"status": 5}', "no status string", id="status-type"),
        pytest.param(b'{"status": "x", "total": "big"}', "non-numeric", id="total-type"),
        pytest.param(b"<html><title>Login</title>", "instead of Ollama", id="html"),
    ],
)
def test_a_bad_stream_line_is_a_protocol_error_after_the_good_ones(
    fake: FakeOllama, line: bytes, message: str
) -> None:
    body = b'{"status":"pulling manifest"}\n' + line + b'\n{"status":"success"}\n'
    fake.respond_with("POST", "/api/pull", body=body, headers=_NDJSON, chunk_size=5)
    events = _client(fake.url).pull("tinyllama")
    assert next(events).status == "pulling manifest"
    with pytest.raises(ProtocolError, match=message) as info:
        next(events)
    assert info.value.host == fake.url


def test_an_error_line_keeps_the_server_message(fake: FakeOllama) -> None:
    body = b'{"status":"pulling manifest"}\n{"error":"max retries exceeded: EOF"}\n'
    fake.respond_with("POST", "/api/pull", body=body, headers=_NDJSON)
    events = _client(fake.url).pull("tinyllama")
    assert next(events).status == "pulling manifest"
    with pytest.raises(ResponseError) as info:
        next(events)
    assert info.value.status == 200
    assert info.value.server_message == "max retries exceeded: EOF"
    assert info.value.model == "tinyllama"


def test_lines_are_split_across_pieces_and_blank_lines_skipped(fake: FakeOllama) -> None:
    body = b'{"status":"pulling manifest"}\r\n\n  \n{"status":"success"}'
    fake.respond_with("POST", "/api/pull", body=body, headers=_NDJSON, chunk_size=3)
    statuses = [event.status for event in _client(fake.url).pull("tinyllama")]
    assert statuses == ["pulling manifest", "success"]


# --- size and time -----------------------------------------------------------------------------


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


def test_the_line_limit_is_configurable(fake: FakeOllama) -> None:
    body = b'{"status":"' + b"s" * 5000 + b'"}\n'
    fake.respond_with("POST", "/api/pull", body=body, headers=_NDJSON, times=2)
    assert [e.status for e in _client(fake.url).pull("tinyllama")] == ["s" * 5000]
    with pytest.raises(ProtocolError, match="longer than 4096 bytes"):
        list(_client(fake.url, max_line_bytes=4096).pull("tinyllama"))


def test_a_gzip_bomb_is_refused_within_the_default_cap(fake: FakeOllama) -> None:
    headers = {**_JSON, "Content-Encoding": "gzip"}
    fake.respond_with("GET", "/api/tags", body=_gzip_bomb(128 * MiB), headers=headers)
    client = _client(fake.url)
    peak, error = _peak_while(client.list_models)
    assert isinstance(error, ProtocolError)
    assert f"larger than {32 * MiB} bytes" in str(error)
    assert peak < 40 * MiB


def test_the_body_cap_is_configurable_and_covers_nested_codings(fake: FakeOllama) -> None:
    nested = gzip.compress(_gzip_bomb(64 * MiB))
    fake.respond_with(
        "GET", "/api/tags", body=nested, headers={**_JSON, "Content-Encoding": "gzip, gzip"}
    )
    client = _client(fake.url, max_body_bytes=MiB)
    peak, error = _peak_while(client.list_models)
    assert isinstance(error, ProtocolError)
    assert f"larger than {MiB} bytes" in str(error)
    assert peak < 3 * MiB


def test_an_answer_that_trickles_in_is_cut_at_the_read_timeout(fake: FakeOllama) -> None:
    fake.respond_with(
        "GET", "/api/version", body=b" " * 500, headers=_JSON, chunk_size=1, delay=0.02
    )
    started = time.monotonic()
    with pytest.raises(OllamaConnectionError, match=r"within 0\.3s") as info:
        _client(fake.url, timeout=(2.0, 0.3)).version()
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 2


def test_a_body_shorter_than_its_content_length_is_a_broken_connection(
    fake: FakeOllama,
) -> None:
    headers = {**_JSON, "Content-Length": "100"}
    fake.respond_with("GET", "/api/version", body=b'{"version":', headers=headers, close=True)
    with pytest.raises(OllamaConnectionError, match="before the answer") as info:
        _client(fake.url).version()
    assert info.value.kind == "reset"


# --- compression -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("X-GZIP", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, no zlib header
        ("gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),
        ("identity", lambda data: data),
        ("gzip", lambda data: gzip.compress(data[:11]) + gzip.compress(data[11:])),
    ],
)
def test_compressed_answers_are_decoded(
    fake: FakeOllama, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    headers = {**_JSON, "Content-Encoding": coding}
    fake.respond_with("GET", "/api/version", body=encode(b'{"version":"0.12.11"}'), headers=headers)
    assert _client(fake.url).version() == "0.12.11"


def test_a_compressed_stream_is_decoded(fake: FakeOllama) -> None:
    body = gzip.compress(b'{"status":"pulling manifest"}\n{"status":"success"}\n')
    headers = {**_NDJSON, "Content-Encoding": "gzip"}
    fake.respond_with("POST", "/api/pull", body=body, headers=headers, chunk_size=10)
    statuses = [event.status for event in _client(fake.url).pull("tinyllama")]
    assert statuses == ["pulling manifest", "success"]


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
    fake: FakeOllama, coding: str, body: bytes, message: str
) -> None:
    fake.respond_with(
        "GET", "/api/version", body=body, headers={**_JSON, "Content-Encoding": coding}
    )
    with pytest.raises(ProtocolError, match=message):
        _client(fake.url).version()


# --- redirects ---------------------------------------------------------------------------------


def test_credentials_do_not_follow_a_redirect_to_another_server(fake: FakeOllama) -> None:
    with FakeOllama(version="9.9.9") as other:
        location = f"{other.url}/api/version"
        fake.respond_with("GET", "/api/version", status=307, headers={"Location": location})
        client = _client(fake.url, headers={"Authorization": "Bearer secret", "X-Trace": "1"})
        assert client.version() == "9.9.9"
        (moved,) = other.requests
    (asked,) = fake.requests
    assert asked.headers["Authorization"] == "Bearer secret"
    assert "Authorization" not in moved.headers
    # Every header the caller added may be a credential (OLLAMA_READY_HEADERS): none leaves.
    assert "X-Trace" not in moved.headers
    assert moved.headers["User-Agent"].startswith("ollama-ready/")


def test_a_redirect_loop_is_a_protocol_error(fake: FakeOllama) -> None:
    location = f"{fake.url}/api/version"
    fake.respond_with("GET", "/api/version", status=302, headers={"Location": location}, times=None)
    with pytest.raises(ProtocolError, match="redirected"):
        _client(fake.url).version()


# --- beneath HTTP: raw sockets -----------------------------------------------------------------


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
