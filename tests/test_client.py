"""OllamaClient against FakeOllama: every call, its request on the wire, and its errors."""

from __future__ import annotations

import hashlib
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ollama_ready.client import (
    LOAD_READ_TIMEOUT,
    ModelDetails,
    ModelInfo,
    OllamaClient,
    RunningModel,
    validate_keep_alive,
)
from ollama_ready.config import Settings
from ollama_ready.errors import (
    ConfigError,
    HostNotAllowed,
    InvalidHost,
    InvalidModelName,
    ModelNotPresent,
    OllamaConnectionError,
    ResponseError,
    ServerBusy,
)
from ollama_ready.progress import PullEvent
from ollama_ready.testing import FakeModel, FakeOllama


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    """A FakeOllama with ``tinyllama`` present and the default catalogue to pull from."""
    with FakeOllama(models=["tinyllama"], tick=0.01) as fake:
        yield fake


@pytest.fixture
def client(server: FakeOllama) -> Iterator[OllamaClient]:
    """A client of ``server``."""
    with OllamaClient(server.url, timeout=(2.0, 5.0)) as ollama:
        yield ollama


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _bodies(server: FakeOllama, path: str) -> list[Any]:
    return [request.body for request in server.requests if request.path == path]


# --- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "base_url"),
    [
        ("http://127.0.0.1:11434/", "http://127.0.0.1:11434"),
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0:1234", "http://127.0.0.1:1234"),
        ("https://ollama.example.com/proxy/", "https://ollama.example.com:443/proxy"),
    ],
)
def test_the_base_url_follows_ollamas_host_rules(given: str, base_url: str) -> None:
    assert OllamaClient(given).base_url == base_url


@pytest.mark.parametrize("given", ["ftp://example.com", "http://exa mple.com"])
def test_an_invalid_host_fails_before_any_request(given: str) -> None:
    with pytest.raises(InvalidHost):
        OllamaClient(given)


@pytest.mark.parametrize(
    "timeout", [-1.0, math.nan, math.inf, (1.0,), (1.0, 2.0, 3.0), "5", True, (1.0, None)]
)
def test_an_invalid_timeout_is_a_config_error(timeout: Any) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        OllamaClient("http://127.0.0.1:1", timeout=timeout)


@pytest.mark.parametrize("limit", [0, -5, 1.5, True])
def test_an_invalid_limit_is_a_config_error(limit: Any) -> None:
    with pytest.raises(ConfigError, match="max_line_bytes"):
        OllamaClient("http://127.0.0.1:1", max_line_bytes=limit)


def test_repr_shows_no_header_values() -> None:
    client = OllamaClient("http://127.0.0.1:1", headers={"Authorization": "Bearer sk-secret"})
    assert "sk-secret" not in repr(client)
    assert "127.0.0.1:1" in repr(client)


def test_from_settings_carries_host_credentials_headers_and_timeouts(server: FakeOllama) -> None:
    environ = {
        "OLLAMA_HOST": server.url,
        "OLLAMA_API_KEY": "sk-1",
        "OLLAMA_READY_HEADERS": "X-Team: ml",
        "OLLAMA_READY_READ_TIMEOUT": "0.2",
    }
    client = OllamaClient.from_settings(Settings.from_env(environ))
    assert client.base_url == server.url
    assert client.host_source == "OLLAMA_HOST"
    assert client.version() == "0.12.11"
    headers = server.requests[-1].headers
    assert headers["Authorization"] == "Bearer sk-1"
    assert headers["X-Team"] == "ml"
    assert headers["User-Agent"].startswith("ollama-ready/")
    server.hang_connections(2)
    with pytest.raises(OllamaConnectionError, match=r"within 0\.2s"):
        client.version()


def test_an_injected_session_is_used_and_left_open(server: FakeOllama) -> None:
    seen: list[str] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, **_: seen.append(response.url))
    with OllamaClient(server.url, session=session) as client:
        client.version()
    assert seen == [f"{server.url}/api/version"]
    assert session.get(f"{server.url}/api/version", timeout=5).ok
    session.close()


# --- server and models -------------------------------------------------------------------------


def test_ping_sends_head_slash_and_returns_the_status(
    server: FakeOllama, client: OllamaClient
) -> None:
    assert client.ping() == 200
    assert client.ping(method="GET", path="/api/version") == 200
    assert [(r.method, r.path) for r in server.requests] == [("HEAD", "/"), ("GET", "/api/version")]
    with pytest.raises(ConfigError, match="must start with '/'"):
        client.ping(path="api/version")


def test_version(client: OllamaClient) -> None:
    assert client.version() == "0.12.11"


def test_list_models_returns_typed_models(server: FakeOllama, client: OllamaClient) -> None:
    model = server.model("tinyllama")
    assert model is not None
    (info,) = client.list_models()
    assert isinstance(info, ModelInfo)
    assert info.name == info.model == "tinyllama:latest"
    assert info.digest == model.manifest_digest
    assert len(info.digest) == 64
    assert info.size == model.size
    assert info.modified_at.endswith("Z")
    assert info.details["format"] == "gguf"


def test_list_models_of_an_empty_server() -> None:
    with FakeOllama() as empty:
        assert OllamaClient(empty.url).list_models() == ()


def test_show_returns_the_details_of_the_name_asked(
    server: FakeOllama, client: OllamaClient
) -> None:
    details = client.show("TinyLlama", verbose=True)
    assert isinstance(details, ModelDetails)
    assert details.model == "TinyLlama"
    assert details.capabilities == ("completion",)
    assert details.details["family"] == "llama"
    assert "llama.block_count" in details.model_info
    assert details.modelfile.startswith("# Modelfile")
    assert details.raw["template"] == details.template
    assert _bodies(server, "/api/show") == [{"model": "TinyLlama", "verbose": True}]


def test_show_of_a_missing_model_is_model_not_present(client: OllamaClient) -> None:
    with pytest.raises(ModelNotPresent, match="model 'nope' not found") as info:
        client.show("nope")
    assert info.value.model == "nope"
    assert info.value.host == client.base_url
    assert info.value.hint is not None


def test_ps_load_and_unload(server: FakeOllama, client: OllamaClient) -> None:
    assert client.ps() == ()
    client.load("tinyllama", keep_alive="10m")
    (running,) = client.ps()
    assert isinstance(running, RunningModel)
    assert running.name == "tinyllama:latest"
    assert running.size > 0
    assert running.size_vram == 0
    assert running.expires_at is not None
    assert running.context_length is not None
    client.unload("tinyllama")
    assert client.ps() == ()
    assert _bodies(server, "/api/generate") == [
        {"model": "tinyllama", "keep_alive": "10m"},
        {"model": "tinyllama", "keep_alive": 0},
    ]


def test_a_model_fully_on_the_gpu_reports_its_vram() -> None:
    with FakeOllama(models=["tinyllama"], vram_fraction=1.0) as fake:
        client = OllamaClient(fake.url)
        client.load("tinyllama")
        (running,) = client.ps()
    assert running.size_vram == running.size > 0


@pytest.mark.parametrize("call", ["load", "unload"])
def test_load_or_unload_of_a_missing_model_is_model_not_present(
    client: OllamaClient, call: str
) -> None:
    with pytest.raises(ModelNotPresent, match="nope"):
        getattr(client, call)("nope")


def test_load_waits_longer_than_the_read_timeout_by_default() -> None:
    assert LOAD_READ_TIMEOUT >= 300
    with FakeOllama(models=["tinyllama"], load_seconds=0.5) as fake:
        client = OllamaClient(fake.url, timeout=(2.0, 0.2))
        client.load("tinyllama")
        client.unload("tinyllama")
        with pytest.raises(OllamaConnectionError, match=r"no answer within 0\.2s") as info:
            client.load("tinyllama", timeout=(2.0, 0.2))
    assert info.value.kind == "timeout"


@pytest.mark.parametrize(
    ("keep_alive", "sent"),
    [
        ("5m", "5m"),
        (" 1h30m ", "1h30m"),
        ("-1m", "-1m"),
        ("0", "0"),
        ("1.5h", "1.5h"),
        ("300ms", "300ms"),
        ("2562047h", "2562047h"),
        (0, 0),
        (-1, -1),
        (2.5, 2.5),
    ],
)
def test_keep_alive_is_sent_as_ollama_reads_it(
    server: FakeOllama, client: OllamaClient, keep_alive: str | float, sent: str | float
) -> None:
    client.load("tinyllama", keep_alive=keep_alive)
    assert _bodies(server, "/api/generate")[-1]["keep_alive"] == sent


@pytest.mark.parametrize(
    ("keep_alive", "message"),
    [
        ("-1", "needs a unit"),
        ("300", "needs a unit"),
        ("5 m", "not a Go duration"),
        ("", "not a Go duration"),
        ("1d", "not a Go duration"),
        ("m", "not a Go duration"),
        ("2562048h", "not a Go duration"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (True, "seconds or a duration"),
    ],
)
def test_an_invalid_keep_alive_fails_before_any_request(
    server: FakeOllama, client: OllamaClient, keep_alive: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        client.load("tinyllama", keep_alive=keep_alive)
    assert server.count() == 0


def test_validate_keep_alive_explains_the_unit_rule() -> None:
    with pytest.raises(ConfigError) as info:
        validate_keep_alive("-1")
    assert "'-1s'" in str(info.value)
    assert info.value.hint is not None
    assert "forever" in info.value.hint


# --- invalid input never reaches the server ----------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.show("bad name!"),
        lambda c: c.pull("bad name!"),
        lambda c: c.create("bad name!", from_="tinyllama"),
        lambda c: c.delete("bad name!"),
        lambda c: c.copy("tinyllama", "bad name!"),
        lambda c: c.load("bad name!"),
        lambda c: c.unload("ns.x/model"),
    ],
)
def test_an_invalid_model_name_fails_before_any_request(
    server: FakeOllama, client: OllamaClient, call: Any
) -> None:
    with pytest.raises(InvalidModelName):
        call(client)
    assert server.count() == 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda url: OllamaClient(url, headers={"X-Bad": "a\r\nInjected: 1"}).version(),
            "in header value",
        ),
        (
            lambda url: list(OllamaClient(url).create("m", from_="x", parameters={"t": math.nan})),
            "not JSON compliant",
        ),
    ],
)
def test_a_request_that_cannot_be_built_is_a_config_error(
    server: FakeOllama, build: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build(server.url)
    assert server.count() == 0


# --- pull --------------------------------------------------------------------------------------


def test_pull_yields_events_from_manifest_to_success(
    server: FakeOllama, client: OllamaClient
) -> None:
    events = list(client.pull("qwen2.5:0.5b"))
    assert all(isinstance(event, PullEvent) for event in events)
    assert events[0] == PullEvent("pulling manifest")
    assert [e.status for e in events[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    layers = [e for e in events if e.digest]
    assert layers
    assert all(e.total is not None and e.completed is not None for e in layers)
    assert server.has_model("qwen2.5:0.5b")
    assert _bodies(server, "/api/pull") == [{"model": "qwen2.5:0.5b", "stream": True}]


def test_pull_insecure_says_so(server: FakeOllama, client: OllamaClient) -> None:
    list(client.pull("tinyllama", insecure=True))
    assert _bodies(server, "/api/pull") == [
        {"model": "tinyllama", "stream": True, "insecure": True}
    ]


def test_pull_sends_nothing_until_iterated(server: FakeOllama, client: OllamaClient) -> None:
    events = client.pull("tinyllama")
    assert server.count() == 0
    events.close()
    assert server.count() == 0


def test_a_missing_model_fails_with_the_servers_error_line(client: OllamaClient) -> None:
    with pytest.raises(ResponseError) as info:
        list(client.pull("no-such-model"))
    assert info.value.status == 200
    assert info.value.server_message == "pull model manifest: file does not exist"
    assert info.value.model == "no-such-model"


def test_an_error_mid_stream_comes_after_the_progress(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.error_mid_stream("max retries exceeded: EOF", at_fraction=0.5)
    seen: list[PullEvent] = []
    with pytest.raises(ResponseError) as info:
        seen.extend(client.pull("qwen2.5:0.5b"))
    assert info.value.status == 200
    assert info.value.server_message == "max retries exceeded: EOF"
    assert any(event.digest for event in seen)


def test_an_http_error_before_the_stream_keeps_status_and_message(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.fail_next(status=500, message="boom", path="/api/pull")
    with pytest.raises(ResponseError) as info:
        next(client.pull("tinyllama"))
    assert info.value.status == 500
    assert info.value.server_message == "boom"
    assert "HTTP 500" in str(info.value)


def test_a_reset_during_a_pull_is_kind_reset(server: FakeOllama, client: OllamaClient) -> None:
    server.reset_at(0.5)
    with pytest.raises(OllamaConnectionError) as info:
        list(client.pull("qwen2.5:0.5b"))
    assert info.value.kind == "reset"


def test_a_silent_stall_hits_the_read_timeout(server: FakeOllama) -> None:
    server.stall(5, mode="silent", at_fraction=0.3)
    client = OllamaClient(server.url, timeout=(2.0, 0.3))
    with pytest.raises(OllamaConnectionError, match=r"no answer within 0\.3s") as info:
        list(client.pull("qwen2.5:0.5b"))
    assert info.value.kind == "timeout"


# --- blobs and create --------------------------------------------------------------------------


def _blob(tmp_path: Path, content: bytes) -> tuple[str, Path]:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    return f"sha256:{hashlib.sha256(content).hexdigest()}", path


def test_push_blob_then_has_blob(server: FakeOllama, client: OllamaClient, tmp_path: Path) -> None:
    digest, path = _blob(tmp_path, b"GGUF" + bytes(1000))
    assert client.has_blob(digest) is False
    assert client.push_blob(digest, path) is True
    assert client.has_blob(digest) is True
    assert client.push_blob(digest, str(path)) is False
    assert server.has_blob(digest)
    uploads = [r for r in server.requests if r.method == "POST"]
    assert [r.path for r in uploads] == [f"/api/blobs/{digest}"] * 2


def test_push_blob_with_the_wrong_digest_keeps_the_servers_message(
    server: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    claimed = "sha256:" + "1" * 64
    actual, path = _blob(tmp_path, b"GGUF")
    message = f'digest mismatch, expected \\"{claimed}\\", got \\"{actual}\\"'
    # The real server's answer, recorded in real-ollama/a-create-tiny.txt.
    server.respond_with(
        "POST",
        f"/api/blobs/{claimed}",
        status=400,
        body='{"error":"' + message + '"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    with pytest.raises(ResponseError) as info:
        client.push_blob(claimed, path)
    assert info.value.status == 400
    assert info.value.server_message == f'digest mismatch, expected "{claimed}", got "{actual}"'


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 64, "0" * 64, ""])
def test_a_malformed_digest_fails_before_any_request(
    server: FakeOllama, client: OllamaClient, tmp_path: Path, digest: str
) -> None:
    _, path = _blob(tmp_path, b"GGUF")
    with pytest.raises(ConfigError, match="not a blob digest"):
        client.has_blob(digest)
    with pytest.raises(ConfigError, match="not a blob digest"):
        client.push_blob(digest, path)
    with pytest.raises(ConfigError, match=r"files\['model.gguf'\] .* is not a blob digest"):
        client.create("mine", files={"model.gguf": digest})
    assert server.count() == 0


def test_push_blob_of_a_missing_file_sends_nothing(
    server: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        client.push_blob("sha256:" + "a" * 64, tmp_path / "absent.gguf")
    assert server.count() == 0


def test_create_from_files(server: FakeOllama, client: OllamaClient, tmp_path: Path) -> None:
    digest, path = _blob(tmp_path, b"GGUF" + bytes(64))
    client.push_blob(digest, path)
    events = list(
        client.create(
            "mine",
            files={"model.gguf": digest},
            template="{{ .Prompt }}",
            parameters={"num_ctx": 256},
        )
    )
    assert events[0].status == "parsing GGUF"
    assert events[-1].status == "success"
    assert server.has_model("mine")
    assert _bodies(server, "/api/create") == [
        {
            "model": "mine",
            "stream": True,
            "files": {"model.gguf": digest},
            "template": "{{ .Prompt }}",
            "parameters": {"num_ctx": 256},
        }
    ]


def test_create_sends_the_current_fields(server: FakeOllama, client: OllamaClient) -> None:
    events = client.create(
        "mine",
        from_="tinyllama",
        system="be brief",
        template="{{ .Prompt }}",
        license=("MIT", "Apache-2.0"),
        parameters={"stop": ["</s>"]},
        messages=[{"role": "user", "content": "hi"}],
        adapters={"lora.gguf": "sha256-" + "B" * 64},
        quantize="q4_K_M",
    )
    for _ in events:
        pass
    (body,) = _bodies(server, "/api/create")
    assert body == {
        "model": "mine",
        "stream": True,
        "from": "tinyllama",
        "system": "be brief",
        "template": "{{ .Prompt }}",
        "license": ["MIT", "Apache-2.0"],
        "parameters": {"stop": ["</s>"]},
        "messages": [{"role": "user", "content": "hi"}],
        "adapters": {"lora.gguf": "sha256:" + "b" * 64},
        "quantize": "q4_K_M",
    }


def test_create_with_a_blob_the_server_lacks_fails_with_its_error_line(
    client: OllamaClient,
) -> None:
    with pytest.raises(ResponseError, match="no such file or directory") as info:
        list(client.create("mine", files={"model.gguf": "sha256:" + "2" * 64}))
    assert info.value.status == 200


# --- delete and copy ---------------------------------------------------------------------------


def test_delete(server: FakeOllama, client: OllamaClient) -> None:
    client.delete("tinyllama")
    assert not server.has_model("tinyllama")
    assert _bodies(server, "/api/delete") == [{"model": "tinyllama"}]
    with pytest.raises(ModelNotPresent, match="tinyllama"):
        client.delete("tinyllama")


def test_copy(server: FakeOllama, client: OllamaClient) -> None:
    client.copy("tinyllama", "team/tiny:v1")
    assert server.has_model("team/tiny:v1")
    assert _bodies(server, "/api/copy") == [{"source": "tinyllama", "destination": "team/tiny:v1"}]
    with pytest.raises(ModelNotPresent, match="nope"):
        client.copy("nope", "other")


# --- connection failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("argument", "the host was given as an argument"),
        ("OLLAMA_HOST", "the host came from OLLAMA_HOST"),
        ("default", "the host is the default, because OLLAMA_HOST is not set"),
    ],
)
def test_refused_names_the_host_and_where_it_came_from(source: str, phrase: str) -> None:
    url = f"http://127.0.0.1:{_dead_port()}"
    with pytest.raises(OllamaConnectionError) as info:
        OllamaClient(url, host_source=source).version()
    error = info.value
    assert error.kind == "refused"
    assert f"Could not connect to Ollama at {url}: connection refused ({phrase})" == str(error)
    assert error.host == url
    assert error.hint is not None
    assert "ollama serve" in error.hint
    assert isinstance(error.__cause__, requests.ConnectionError)


def test_a_closed_port_is_refused_and_then_served_again(server: FakeOllama) -> None:
    client = OllamaClient(server.url)
    server.refuse_connections(0.3)
    with pytest.raises(OllamaConnectionError) as info:
        client.ping()
    assert info.value.kind == "refused"
    server.clear_faults()
    assert client.ping() == 200


def test_an_open_port_that_never_answers_is_a_timeout(server: FakeOllama) -> None:
    server.hang_connections(2)
    with pytest.raises(OllamaConnectionError) as info:
        OllamaClient(server.url, timeout=(1.0, 0.2)).ping()
    assert info.value.kind == "timeout"
    assert "connected but sent no answer within 0.2s" in str(info.value)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_loopback_bypasses_environment_proxies(
    server: FakeOllama, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, f"http://127.0.0.1:{_dead_port()}")
    assert OllamaClient(server.url).version() == "0.12.11"
    with pytest.raises(OllamaConnectionError, match="proxy") as info:
        OllamaClient(server.url, bypass_proxy=False).version()
    assert info.value.kind == "other"


# --- HTTP errors -------------------------------------------------------------------------------


def test_the_host_header_guard_is_explained() -> None:
    with FakeOllama(check_host=True) as guarded:
        client = OllamaClient(guarded.url, headers={"Host": "ollama.example.com"})
        with pytest.raises(HostNotAllowed) as info:
            client.version()
        assert OllamaClient(guarded.url).version() == "0.12.11"
    error = info.value
    assert error.status == 403
    assert "'ollama.example.com'" in str(error)
    assert "host-header guard" in str(error)
    assert error.hint is not None
    assert "OLLAMA_HOST=0.0.0.0" in error.hint
    assert "OLLAMA_ORIGINS" in error.hint


def test_a_403_with_a_message_is_not_the_host_guard(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.respond_with("GET", "/api/tags", status=403, body=b'{"error":"forbidden by policy"}')
    with pytest.raises(ResponseError) as info:
        client.list_models()
    assert not isinstance(info.value, HostNotAllowed)
    assert info.value.server_message == "forbidden by policy"


def test_503_is_server_busy_with_the_servers_message(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.fail_next(status=503)
    with pytest.raises(ServerBusy) as info:
        client.version()
    assert info.value.status == 503
    assert info.value.server_message.startswith("server busy, please try again.")


def test_a_plain_text_404_means_the_endpoint_is_missing(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.respond_with("POST", "/api/show", status=404, body=b"404 page not found")
    with pytest.raises(ResponseError) as info:
        client.show("tinyllama")
    assert not isinstance(info.value, ModelNotPresent)
    assert info.value.server_message == "404 page not found"
    assert info.value.hint is not None
    assert "too old" in info.value.hint


def test_other_statuses_keep_the_servers_text(server: FakeOllama, client: OllamaClient) -> None:
    server.respond_with("GET", "/api/ps", status=500, body=b"  internal\n  failure ")
    with pytest.raises(ResponseError) as info:
        client.ps()
    assert info.value.status == 500
    assert info.value.server_message == "internal failure"
    assert str(info.value) == (
        f"Ollama at {server.url} answered GET /api/ps with HTTP 500: internal failure"
    )


def test_a_present_model_from_a_custom_catalogue(tmp_path: Path) -> None:
    model = FakeModel.synthetic("team/coder:7b", size=5_000)
    with FakeOllama(models=[model]) as fake:
        client = OllamaClient(fake.url)
        (info,) = client.list_models()
        assert info.name == "team/coder:7b"
        assert client.show("team/coder:7b").model == "team/coder:7b"
