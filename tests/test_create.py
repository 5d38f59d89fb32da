"""create_model: hash, upload what is missing, /api/create; idempotent, bounded, streamed."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ollama_ready.client import OllamaClient
from ollama_ready.clock import Deadline
from ollama_ready.create import CreateResult, create_model, file_digest
from ollama_ready.errors import (
    ConfigError,
    DeadlineExceeded,
    DigestMismatch,
    InvalidModelName,
    ModelfileError,
    OllamaConnectionError,
    ProtocolError,
    ResponseError,
)
from ollama_ready.modelfile import Modelfile
from ollama_ready.names import ModelName
from ollama_ready.progress import ProgressSnapshot, PullEvent
from ollama_ready.testing import FakeClock, FakeModel, FakeOllama

GGUF_HEADER = b"GGUF\x03\x00\x00\x00"


def write_gguf(path: Path, size: int = 4096, *, seed: int = 0) -> Path:
    path.write_bytes(GGUF_HEADER + bytes([seed % 256]) * (size - len(GGUF_HEADER)))
    return path


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# --- a protocol double with the server's blob and create semantics ------------------------------


@dataclass(frozen=True)
class Listed:
    name: str
    digest: str
    size: int


class ServerDouble:
    """Implements :class:`ollama_ready.create.CreateClient` over an in-memory blob store.

    It hashes what it is sent, like Ollama, and its models' digests depend on the create
    request, so identical requests give identical models.
    """

    base_url = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.blobs: dict[str, int] = {}
        self.models: dict[str, Listed] = {}
        self.calls: list[tuple[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.hooks: dict[str, Callable[[], None]] = {}
        self.statuses: list[str] | None = None
        self.stream_error: BaseException | None = None
        self.closed_streams = 0

    def _hook(self, method: str) -> None:
        hook = self.hooks.get(method)
        if hook is not None:
            hook()

    def has_blob(self, digest: str, *, timeout: Any = None) -> bool:
        self.calls.append(("has_blob", digest))
        self._hook("has_blob")
        return digest in self.blobs

    def push_blob(self, digest: str, path: str | os.PathLike[str], *, timeout: Any = None) -> bool:
        self.calls.append(("push_blob", digest))
        self._hook("push_blob")
        got, size = file_digest(path)
        if got != digest:
            message = f'digest mismatch, expected "{digest}", got "{got}"'
            raise ResponseError(
                f"Ollama refused the blob: {message}", status=400, server_message=message
            )
        created = digest not in self.blobs
        self.blobs[digest] = size
        return created

    def list_models(self, *, timeout: Any = None) -> Sequence[Listed]:
        self.calls.append(("list_models", None))
        return tuple(self.models.values())

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
        timeout: Any = None,
    ) -> Iterator[PullEvent]:
        body = {
            key: value
            for key, value in {
                "model": name,
                "from": from_,
                "files": None if files is None else dict(files),
                "adapters": None if adapters is None else dict(adapters),
                "template": template,
                "system": system,
                "parameters": parameters,
                "license": license,
                "messages": messages,
                "quantize": quantize,
            }.items()
            if value is not None
        }
        self.calls.append(("create", name))
        self.requests.append(body)
        return self._stream(name, body)

    def _stream(self, name: str, body: dict[str, Any]) -> Iterator[PullEvent]:
        try:
            self._hook("create")
            if self.statuses is not None:
                for status in self.statuses:
                    yield PullEvent(status)
                    self._hook("event")
                return
            yield PullEvent("parsing GGUF")
            for digest in [*body.get("files", {}).values(), *body.get("adapters", {}).values()]:
                if digest not in self.blobs:
                    message = f"open blobs/{digest.replace(':', '-')}: no such file or directory"
                    raise ResponseError(f"error: {message}", status=200, server_message=message)
                yield PullEvent(f"using existing layer {digest}")
                self._hook("event")
            if self.stream_error is not None:
                raise self.stream_error
            yield PullEvent("writing manifest")
            content = json.dumps({k: v for k, v in body.items() if k != "model"}, sort_keys=True)
            key = ModelName.parse(name)
            self.models[key.full] = Listed(
                name=key.display,
                digest=hashlib.sha256(content.encode()).hexdigest(),
                size=sum(self.blobs.get(d, 0) for d in body.get("files", {}).values()),
            )
            yield PullEvent("success")
        finally:
            self.closed_streams += 1

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


@pytest.fixture
def server() -> ServerDouble:
    return ServerDouble()


# --- file_digest ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5000])
def test_file_digest_matches_hashlib_across_chunk_boundaries(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    assert file_digest(path, chunk_size=1024) == (sha256_of(path), size)


def test_file_digest_stops_when_the_deadline_is_cancelled(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "f", 10_000)
    deadline = Deadline(60, clock=FakeClock())
    deadline.cancel()
    with pytest.raises(
        DeadlineExceeded,
        match=r"^the deadline was cancelled while hashing .*/f \(1.0 KB read in 0.0s\)$",
    ):
        file_digest(path, chunk_size=1024, deadline=deadline)


# --- the create flow -----------------------------------------------------------------------------


def test_a_gguf_is_uploaded_once_and_created(server: ServerDouble, tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "tiny.gguf")
    digest = sha256_of(gguf)

    result = create_model(server, "tiny", gguf=gguf)

    assert server.methods() == ["has_blob", "push_blob", "list_models", "create", "list_models"]
    assert server.requests == [{"model": "tiny", "files": {"tiny.gguf": digest}}]
    assert result.name == "tiny"
    assert result.created is True
    assert result.uploaded == (digest,)
    assert result.present == ()
    assert result.bytes_uploaded == 4096
    assert result.files == {"tiny.gguf": digest}
    assert result.base_model is None
    assert result.digest == server.models["registry.ollama.ai/library/tiny:latest"].digest
    assert result.size == 4096
    assert result.statuses == (
        "parsing GGUF",
        f"using existing layer {digest}",
        "writing manifest",
        "success",
    )
    assert server.closed_streams == 1


def test_a_second_create_uploads_nothing_and_changes_nothing(
    server: ServerDouble, tmp_path: Path
) -> None:
    gguf = write_gguf(tmp_path / "tiny.gguf")
    first = create_model(server, "tiny", gguf=gguf)
    server.calls.clear()

    second = create_model(server, "tiny:latest", gguf=gguf)

    assert "push_blob" not in server.methods()
    assert second.uploaded == ()
    assert second.present == (sha256_of(gguf),)
    assert second.bytes_uploaded == 0
    assert second.created is False
    assert second.digest == first.digest


def test_a_changed_file_is_uploaded_and_recreates_the_model(
    server: ServerDouble, tmp_path: Path
) -> None:
    gguf = write_gguf(tmp_path / "tiny.gguf")
    first = create_model(server, "tiny", gguf=gguf)
    write_gguf(gguf, seed=7)

    second = create_model(server, "tiny", gguf=gguf)

    assert second.uploaded == (sha256_of(gguf),)
    assert second.created is True
    assert second.digest != first.digest


def test_a_modelfile_sends_every_field(server: ServerDouble, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    weights = write_gguf(models / "weights.gguf")
    lora = write_gguf(models / "lora.gguf", 512, seed=3)
    (models / "Modelfile").write_text(
        "FROM ./weights.gguf\nADAPTER lora.gguf\nTEMPLATE {{ .Prompt }}\nSYSTEM be brief\n"
        "PARAMETER temperature 0.1\nPARAMETER stop </s>\nPARAMETER stop <|im_end|>\n"
        "LICENSE MIT\nMESSAGE user hi\nMESSAGE assistant hello\n"
    )

    result = create_model(server, "custom-model", modelfile=models / "Modelfile", quantize="q4_K_M")

    assert server.requests == [
        {
            "model": "custom-model",
            "files": {"weights.gguf": sha256_of(weights)},
            "adapters": {"lora.gguf": sha256_of(lora)},
            "template": "{{ .Prompt }}",
            "system": "be brief",
            "parameters": {"temperature": 0.1, "stop": ["</s>", "<|im_end|>"]},
            "license": ["MIT"],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ],
            "quantize": "q4_K_M",
        }
    ]
    assert result.uploaded == (sha256_of(weights), sha256_of(lora))
    assert result.adapters == {"lora.gguf": sha256_of(lora)}
    assert result.bytes_uploaded == 4096 + 512


def test_from_an_existing_model_uploads_nothing(server: ServerDouble) -> None:
    modelfile = Modelfile.parse("FROM llama3.2:1b\nSYSTEM You are a pirate.\n")

    result = create_model(server, "pirate", modelfile=modelfile)

    assert server.requests == [
        {"model": "pirate", "from": "llama3.2:1b", "system": "You are a pirate."}
    ]
    assert "has_blob" not in server.methods()
    assert result.base_model == "llama3.2:1b"
    assert result.files == {}


def test_a_model_directory_uploads_each_file_by_base_name(
    server: ServerDouble, tmp_path: Path
) -> None:
    weights = tmp_path / "hf"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"st" * 100)
    (weights / "config.json").write_text("{}")
    (weights / "tokenizer.json").write_text('{"x": 1}')
    (weights / "sub").mkdir()
    (weights / "sub" / "config.json").write_text('{"nested": true}')

    result = create_model(server, "converted", modelfile=Modelfile.parse(f"FROM {weights}\n"))

    assert set(server.requests[0]["files"]) == {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
    }
    assert len(result.uploaded) == 3
    assert result.warnings == (
        f"{weights / 'sub' / 'config.json'} left out: /api/create names files by base name and "
        f"{weights / 'config.json'} already uses 'config.json'",
    )


def test_identical_content_under_two_names_is_checked_once(
    server: ServerDouble, tmp_path: Path
) -> None:
    write_gguf(tmp_path / "a.gguf")
    write_gguf(tmp_path / "same-as-a.gguf")
    modelfile = Modelfile.parse("FROM a.gguf\nADAPTER same-as-a.gguf\n", base_dir=tmp_path)

    result = create_model(server, "a", modelfile=modelfile)

    digest = sha256_of(tmp_path / "a.gguf")
    assert server.methods().count("has_blob") == 1
    assert server.methods().count("push_blob") == 1
    assert result.uploaded == (digest,)
    assert result.files == {"a.gguf": digest}
    assert result.adapters == {"same-as-a.gguf": digest}


def test_modelfile_warnings_are_kept_in_the_result(server: ServerDouble, tmp_path: Path) -> None:
    write_gguf(tmp_path / "a.gguf")
    modelfile = Modelfile.parse("FROM a.gguf\nPARAMETER mirostat 1\n", base_dir=tmp_path)
    result = create_model(server, "a", modelfile=modelfile)
    assert result.warnings == (
        "<string>:2: PARAMETER mirostat is no longer used by Ollama; ignored",
    )


def test_the_result_is_frozen(server: ServerDouble, tmp_path: Path) -> None:
    result = create_model(server, "tiny", gguf=write_gguf(tmp_path / "t.gguf"))
    assert isinstance(result, CreateResult)
    with pytest.raises(AttributeError):
        result.created = False  # type: ignore[misc]


# --- bad input fails before any request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "create_model needs exactly one of modelfile= and gguf="),
        (
            {"modelfile": "M", "gguf": "x.gguf"},
            "create_model needs exactly one of modelfile= and gguf=, not both",
        ),
    ],
)
def test_exactly_one_source_is_required(
    server: ServerDouble, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(server, "x", **kwargs)
    assert server.calls == []


def test_bad_gguf_paths_are_named(server: ServerDouble, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        create_model(server, "x", gguf=tmp_path / "missing.gguf")
    assert str(caught.value) == f"GGUF file not found: {tmp_path / 'missing.gguf'}"

    with pytest.raises(ConfigError) as caught:
        create_model(server, "x", gguf=tmp_path)
    assert str(caught.value) == (
        f"GGUF path {tmp_path} is a directory; for a model directory pass a Modelfile "
        "whose FROM names it"
    )

    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ConfigError) as caught:
        create_model(server, "x", gguf=text)
    assert str(caught.value) == f"{text} is not a GGUF file (it does not start with 'GGUF')"

    pointer = tmp_path / "lfs.gguf"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\n")
    with pytest.raises(ConfigError, match=r"it is a Git LFS pointer: run `git lfs pull`$"):
        create_model(server, "x", gguf=pointer)
    assert server.calls == []


def test_an_invalid_model_name_fails_first(server: ServerDouble, tmp_path: Path) -> None:
    with pytest.raises(InvalidModelName):
        create_model(server, "bad name", gguf=write_gguf(tmp_path / "t.gguf"))
    assert server.calls == []


def test_a_missing_file_in_the_modelfile_names_the_path(
    server: ServerDouble, tmp_path: Path
) -> None:
    (tmp_path / "Modelfile").write_text("FROM ./models/custom.gguf\n")
    with pytest.raises(ModelfileError) as caught:
        create_model(server, "custom-model", modelfile=tmp_path / "Modelfile")
    assert str(caught.value) == (
        f"{tmp_path / 'Modelfile'}:1: FROM ./models/custom.gguf: no such file: "
        f"{tmp_path / 'models' / 'custom.gguf'}"
    )
    assert server.calls == []


# --- failures from the server ------------------------------------------------------------------


def test_an_error_line_raises_with_model_and_phase(server: ServerDouble, tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "t.gguf")
    server.stream_error = ResponseError(
        "Ollama reported an error", status=200, server_message="unsupported architecture"
    )
    snapshots: list[ProgressSnapshot] = []

    with pytest.raises(ResponseError) as caught:
        create_model(server, "t", gguf=gguf, reporter=snapshots.append)

    assert caught.value.model == "t"
    assert caught.value.phase == "create"
    assert caught.value.host == server.base_url
    assert server.closed_streams == 1
    assert snapshots[-1].phase == "failed"
    assert snapshots[-1].message == "Ollama reported an error"


def test_a_stream_without_success_is_a_protocol_error(server: ServerDouble, tmp_path: Path) -> None:
    server.statuses = ["parsing GGUF", "writing manifest"]
    with pytest.raises(ProtocolError) as caught:
        create_model(server, "t", gguf=write_gguf(tmp_path / "t.gguf"))
    assert str(caught.value) == (
        "the /api/create stream for t ended without 'success' (last status: 'writing manifest')"
    )


def test_a_file_that_changes_during_upload_is_a_digest_mismatch(
    server: ServerDouble, tmp_path: Path
) -> None:
    gguf = write_gguf(tmp_path / "t.gguf")

    def rewrite() -> None:
        write_gguf(gguf, seed=9)

    server.hooks["push_blob"] = rewrite

    with pytest.raises(DigestMismatch) as caught:
        create_model(server, "t", gguf=gguf)

    assert str(caught.value).startswith(f"uploading {gguf}: the server computed a different sha256")
    assert caught.value.hint == (
        "the file changed while it was read; make sure nothing writes to it"
    )
    assert isinstance(caught.value.__cause__, ResponseError)
    assert "create" not in server.methods()


# --- the deadline ------------------------------------------------------------------------------


def test_the_deadline_is_checked_between_hashing_and_uploading(
    server: ServerDouble, tmp_path: Path
) -> None:
    clock = FakeClock()
    deadline = Deadline(10, clock=clock)
    server.hooks["has_blob"] = lambda: clock.advance(11)

    with pytest.raises(DeadlineExceeded) as caught:
        create_model(server, "t", gguf=write_gguf(tmp_path / "t.gguf"), deadline=deadline)

    assert server.methods() == ["has_blob"]
    assert str(caught.value) == (
        f"creating t: the deadline ran out before uploading {tmp_path / 't.gguf'} after 11.0s"
    )
    assert (caught.value.model, caught.value.phase) == ("t", "create")
    assert caught.value.host == server.base_url


def test_the_deadline_stops_a_second_file(server: ServerDouble, tmp_path: Path) -> None:
    clock = FakeClock()
    write_gguf(tmp_path / "a.gguf")
    write_gguf(tmp_path / "lora.gguf", seed=1)
    modelfile = Modelfile.parse("FROM a.gguf\nADAPTER lora.gguf\n", base_dir=tmp_path)
    server.hooks["push_blob"] = lambda: clock.advance(30)

    with pytest.raises(DeadlineExceeded, match=r"before hashing .*lora\.gguf after 30\.0s$"):
        create_model(server, "a", modelfile=modelfile, deadline=Deadline(20, clock=clock))

    assert server.methods() == ["has_blob", "push_blob"]


def test_the_deadline_is_checked_between_stream_lines(server: ServerDouble, tmp_path: Path) -> None:
    clock = FakeClock()
    server.hooks["event"] = lambda: clock.advance(5)

    with pytest.raises(DeadlineExceeded) as caught:
        create_model(
            server, "t", gguf=write_gguf(tmp_path / "t.gguf"), deadline=Deadline(3, clock=clock)
        )

    # Checked after each line: the second line is the first one read past the deadline.
    assert str(caught.value) == (
        "creating t: the deadline ran out during /api/create (last status 'writing manifest') "
        "after 5.0s"
    )
    assert server.closed_streams == 1
    assert server.models == {}


def test_a_read_timeout_at_the_deadline_is_reported_as_the_deadline(
    server: ServerDouble, tmp_path: Path
) -> None:
    clock = FakeClock()

    def silent_server() -> None:
        clock.advance(8)
        raise OllamaConnectionError("no answer within 7.0s", kind="timeout")

    server.hooks["create"] = silent_server

    with pytest.raises(
        DeadlineExceeded,
        match=r"^creating t: the deadline ran out waiting for /api/create after 8\.0s$",
    ):
        create_model(
            server, "t", gguf=write_gguf(tmp_path / "t.gguf"), deadline=Deadline(7, clock=clock)
        )


def test_a_cancelled_deadline_says_so(server: ServerDouble, tmp_path: Path) -> None:
    deadline = Deadline(None, clock=FakeClock())
    server.hooks["has_blob"] = deadline.cancel

    with pytest.raises(
        DeadlineExceeded,
        match=r"^creating t: the deadline was cancelled before uploading .*t\.gguf after 0\.0s$",
    ):
        create_model(server, "t", gguf=write_gguf(tmp_path / "t.gguf"), deadline=deadline)


# --- progress ------------------------------------------------------------------------------------


def test_the_reporter_sees_every_step(server: ServerDouble, tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "t.gguf")
    digest = sha256_of(gguf)
    snapshots: list[ProgressSnapshot] = []

    create_model(server, "t", gguf=gguf, reporter=snapshots.append)
    create_model(server, "t", gguf=gguf, reporter=snapshots.append)

    steps = [(s.phase, s.status) for s in snapshots]
    run = [
        ("verifying", "hashing t.gguf (4.1 KB)"),
        ("writing", "uploading t.gguf (4.1 KB)"),
        ("writing", "uploaded t.gguf"),
        ("writing", "parsing GGUF"),
        ("writing", f"using existing layer {digest}"),
        ("writing", "writing manifest"),
        ("writing", "success"),
        ("done", "success"),
    ]
    again = [run[0], ("writing", "t.gguf is already on the server"), *run[3:]]
    assert steps == run + again
    first_done, second_done = snapshots[len(run) - 1], snapshots[-1]
    assert first_done.message == ("created t (4.1 KB uploaded, 0 of 1 files already on the server)")
    assert (first_done.downloaded, first_done.cached, first_done.total) == (4096, 0, 4096)
    assert second_done.message == (
        "already up to date: t (0 B uploaded, 1 of 1 files already on the server)"
    )
    assert (second_done.downloaded, second_done.cached, second_done.completed) == (0, 4096, 4096)


# --- end to end against FakeOllama -------------------------------------------------------------


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=(FakeModel.synthetic("llama3.2:1b"),), registry=()) as fake:
        yield fake


@pytest.fixture
def client(ollama: FakeOllama) -> Iterator[OllamaClient]:
    with OllamaClient(ollama.url) as real_client:
        yield real_client


def blob_path(digest: str) -> str:
    return f"/api/blobs/{digest}"


def test_the_seed_recipe_through_the_api(
    ollama: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    gguf = write_gguf(models / "custom.gguf", 300_000)
    digest = sha256_of(gguf)
    (models / "Modelfile").write_text(
        '# pre-downloaded weights\nFROM ./custom.gguf\nTEMPLATE """{{ .Prompt }}"""\n'
        "PARAMETER num_ctx 4096\nPARAMETER stop <|end|>\n"
    )

    result = create_model(client, "custom-model", modelfile=models / "Modelfile")

    assert ollama.has_model("custom-model")
    assert ollama.has_blob(digest)
    assert result.created is True
    assert result.uploaded == (digest,)
    assert result.bytes_uploaded == 300_000
    assert result.statuses[0] == "parsing GGUF"
    assert result.statuses[-2:] == ("writing manifest", "success")
    listed = {info.name: info for info in client.list_models()}["custom-model:latest"]
    assert (result.digest, result.size) == (listed.digest, listed.size)
    assert ollama.count("HEAD", blob_path(digest)) == 1
    assert ollama.count("POST", blob_path(digest)) == 1
    (create_request,) = [r for r in ollama.requests if r.path == "/api/create"]
    assert create_request.body == {
        "model": "custom-model",
        "stream": True,
        "files": {"custom.gguf": digest},
        "template": "{{ .Prompt }}",
        "parameters": {"num_ctx": 4096, "stop": ["<|end|>"]},
    }
    assert client.show("custom-model").template == "{{ .Prompt }}"


def test_creating_again_uploads_nothing(
    ollama: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    gguf = write_gguf(tmp_path / "custom.gguf", 100_000)
    first = create_model(client, "custom-model", gguf=gguf)
    ollama.clear_requests()

    second = create_model(client, "custom-model", gguf=gguf)

    digest = sha256_of(gguf)
    assert [(r.method, r.path) for r in ollama.requests] == [
        ("HEAD", blob_path(digest)),
        ("GET", "/api/tags"),
        ("POST", "/api/create"),
        ("GET", "/api/tags"),
    ]
    assert second.uploaded == ()
    assert second.present == (digest,)
    assert second.created is False
    assert second.digest == first.digest
    assert f"using existing layer {digest}" in second.statuses


def test_from_a_model_on_the_server(ollama: FakeOllama, client: OllamaClient) -> None:
    modelfile = Modelfile.parse("FROM llama3.2:1b\nSYSTEM You are a pirate.\n")

    result = create_model(client, "pirate", modelfile=modelfile)

    assert ollama.has_model("pirate")
    assert ollama.count("HEAD") == 0
    assert result.base_model == "llama3.2:1b"
    assert client.show("pirate").raw["system"] == "You are a pirate."


def test_a_200_mb_gguf_is_created_in_constant_memory(
    ollama: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    size = 200 * 1000 * 1000
    gguf = tmp_path / "big.gguf"
    with gguf.open("wb") as handle:
        handle.write(GGUF_HEADER)
        handle.truncate(size)  # sparse: the test itself stays small on disk and in memory

    tracemalloc.start()
    try:
        first = create_model(client, "big", gguf=gguf)
        _, peak_first = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        second = create_model(client, "big", gguf=gguf)
        _, peak_second = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert first.bytes_uploaded == size
    assert ollama.has_blob(first.uploaded[0])
    assert second.uploaded == ()
    assert second.bytes_uploaded == 0
    assert ollama.count("POST", blob_path(first.uploaded[0])) == 1
    # The Python heap of this process (client and fake server together) never held the file.
    assert peak_first < 20 * 1000 * 1000, f"peak {peak_first / 1e6:.1f} MB"
    assert peak_second < 20 * 1000 * 1000, f"peak {peak_second / 1e6:.1f} MB"


def test_an_error_line_from_the_server_raises(
    ollama: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    gguf = write_gguf(tmp_path / "t.gguf")
    digest = sha256_of(gguf)
    # The server claims a blob it does not have, as after a prune between HEAD and create.
    ollama.respond_with("HEAD", blob_path(digest), status=200)

    with pytest.raises(ResponseError) as caught:
        create_model(client, "t", gguf=gguf)

    assert caught.value.status == 200
    assert caught.value.server_message.endswith(
        f"/blobs/{digest.replace(':', '-')}: no such file or directory"
    )
    assert (caught.value.model, caught.value.phase) == ("t", "create")
    assert caught.value.host == ollama.url
    assert not ollama.has_model("t")


def test_a_digest_mismatch_from_the_server(
    ollama: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    gguf = write_gguf(tmp_path / "t.gguf")
    digest = sha256_of(gguf)
    message = f'digest mismatch, expected "{digest}", got "sha256:{"1" * 64}"'
    ollama.respond_with(
        "POST",
        blob_path(digest),
        status=400,
        body=json.dumps({"error": message}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )

    with pytest.raises(DigestMismatch) as caught:
        create_model(client, "t", gguf=gguf)

    assert message in str(caught.value)
    assert caught.value.host == ollama.url
    assert ollama.count("POST", "/api/create") == 0


def test_the_real_deadline_bounds_a_silent_server(
    ollama: FakeOllama, client: OllamaClient, tmp_path: Path
) -> None:
    gguf = write_gguf(tmp_path / "t.gguf")
    ollama.respond_with("POST", "/api/create", status=200, delay=5.0, chunk_size=1, body=b"{}")
    deadline = Deadline(0.5)

    with pytest.raises(DeadlineExceeded, match="the deadline ran out waiting for /api/create"):
        create_model(client, "t", gguf=gguf, deadline=deadline)

    assert deadline.elapsed() < 0.5 + 0.2
