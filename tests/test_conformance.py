"""Conformance: the official ``ollama`` Python client parses every FakeOllama response.

The official client's pydantic models are an independent check of the shapes FakeOllama sends:
if a field had the wrong type or the wrong name, these calls would fail or come back empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import ollama
import pytest

from ollama_ready.testing import FakeModel, FakeOllama

TINY = FakeModel.synthetic("tiny", size=262_455, layers=3, parameter_size="126K")
REGISTRY = (TINY, FakeModel.synthetic("127.0.0.1:5000/test/tiny-b:v1", size=300_000))


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    """A fast FakeOllama that can pull two small models."""
    with FakeOllama(registry=REGISTRY, tick=0.005, vram_fraction=0.5) as fake:
        yield fake


@pytest.fixture
def client(server: FakeOllama) -> Iterator[ollama.Client]:
    """The official client, pointed at the fake server."""
    official = ollama.Client(host=server.url, timeout=10)
    yield official
    official._client.close()


def test_version_over_the_official_clients_transport(server: FakeOllama) -> None:
    # ollama-python has no version call; its httpx transport still reads the body as JSON.
    with httpx.Client(base_url=server.url) as raw:
        assert raw.get("/api/version").json() == {"version": "0.12.11"}


def test_pull_stream_parses_into_progress_responses(client: ollama.Client) -> None:
    events = list(client.pull("tiny", stream=True))
    assert all(isinstance(event, ollama.ProgressResponse) for event in events)
    assert events[0].status == "pulling manifest"
    assert [e.status for e in events[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    blobs = [e for e in events if e.digest]
    assert [e.digest for e in blobs] == [blob.digest for blob in TINY.blobs]
    assert all(e.total == e.completed for e in blobs)
    assert client.pull("tiny").status == "success"


def test_pull_errors_become_response_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.pull("missing", stream=True))
    assert streamed.value.error == "pull model manifest: file does not exist"
    assert streamed.value.status_code == -1
    with pytest.raises(ollama.ResponseError) as whole:
        client.pull("missing")
    assert (whole.value.error, whole.value.status_code) == (
        "pull model manifest: file does not exist",
        500,
    )
    with pytest.raises(ollama.ResponseError) as invalid:
        client.pull("not a valid name!!")
    assert (invalid.value.error, invalid.value.status_code) == ("invalid model name", 400)


def test_list_show_and_names(server: FakeOllama, client: ollama.Client) -> None:
    server.add_model(TINY)
    server.add_model(REGISTRY[1])
    listed = client.list().models
    assert [m.model for m in listed] == ["127.0.0.1:5000/test/tiny-b:v1", "tiny:latest"]
    tiny = listed[1]
    assert isinstance(tiny.modified_at, datetime)
    assert tiny.size == TINY.size
    assert tiny.digest == TINY.manifest_digest
    assert tiny.details is not None
    assert tiny.details.parameter_size == "126K"

    shown = client.show("tiny")
    assert isinstance(shown.modified_at, datetime)
    assert shown.template == "{{ .Prompt }}"
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.capabilities == ["completion"]
    assert shown.parameters == "num_ctx                        4096"
    assert shown.details is not None
    assert shown.details.family == "llama"
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("ghost")
    assert (missing.value.error, missing.value.status_code) == ("model 'ghost' not found", 404)


def test_load_ps_and_unload(server: FakeOllama, client: ollama.Client) -> None:
    server.add_model(TINY)
    loaded = client.generate(model="tiny")
    assert (loaded.done, loaded.done_reason, loaded.response) == (True, "load", "")
    running = client.ps().models
    assert [m.model for m in running] == ["tiny:latest"]
    entry = running[0]
    assert isinstance(entry.expires_at, datetime)
    assert entry.size is not None
    assert entry.size_vram == int(entry.size * 0.5)
    assert entry.context_length == 4096
    assert entry.digest == TINY.manifest_digest
    unloaded = client.generate(model="tiny", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert client.ps().models == []


def test_generate_and_chat_replies_parse(server: FakeOllama, client: ollama.Client) -> None:
    server.add_model(TINY)
    parts = list(client.generate(model="tiny", prompt="hello", stream=True))
    assert parts[-1].done
    assert "".join(part.response or "" for part in parts)
    chat = client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert chat.message.role == "assistant"
    assert chat.done_reason == "stop"
    with pytest.raises(ollama.ResponseError) as missing:
        client.generate(model="nonexistent")
    assert (missing.value.error, missing.value.status_code) == (
        "model 'nonexistent' not found",
        404,
    )


def test_create_from_uploaded_blobs(
    server: FakeOllama, client: ollama.Client, tmp_path: Path
) -> None:
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 512)
    digest = client.create_blob(weights)
    assert digest == f"sha256:{hashlib.sha256(weights.read_bytes()).hexdigest()}"
    assert server.has_blob(digest)
    events = list(
        client.create(
            model="tiny-api",
            files={"tiny.gguf": digest},
            template="{{ .Prompt }}",
            parameters={"num_ctx": 256},
            stream=True,
        )
    )
    assert [e.status for e in events][:2] == ["parsing GGUF", f"using existing layer {digest}"]
    assert events[-1].status == "success"
    again = client.create(model="tiny-api2", files={"tiny.gguf": digest})
    assert again.status == "success"
    assert client.show("tiny-api").parameters == "num_ctx                        256"


def test_copy_and_delete(server: FakeOllama, client: ollama.Client) -> None:
    server.add_model(TINY)
    assert client.copy("tiny", "tiny-copy").status == "success"
    assert server.has_model("tiny-copy")
    assert client.delete("tiny-copy").status == "success"
    assert not server.has_model("tiny-copy")
    with pytest.raises(ollama.ResponseError) as missing:
        client.delete("tiny-copy")
    assert missing.value.status_code == 404


def test_faults_reach_the_official_client(server: FakeOllama, client: ollama.Client) -> None:
    server.error_mid_stream("max retries exceeded: EOF", at_fraction=0.5)
    with pytest.raises(ollama.ResponseError) as mid:
        list(client.pull("tiny", stream=True))
    assert mid.value.error == "max retries exceeded: EOF"
    server.fail_next(1)
    with pytest.raises(ollama.ResponseError) as busy:
        client.list()
    assert busy.value.status_code == 503
    server.refuse_connections(5)
    with pytest.raises(ConnectionError):
        client.list()
