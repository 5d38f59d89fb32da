"""FakeOllama: the recorded protocol of a real Ollama, and every fault mode, over real sockets.

Expected texts and shapes come from the recordings in ``docs/real-ollama/`` of the shared docs.
The tests talk to the server with plain ``requests`` and raw sockets, never our own client.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ollama_ready.testing import FakeBlob, FakeModel, FakeOllama, RecordedRequest

TICK = 0.005
TINY = FakeModel.synthetic("tiny", size=262_455, layers=3, parameter_size="126K")
BIG = FakeModel.synthetic("big", size=2_000_000, layers=3)
ELSEWHERE = FakeModel.synthetic("127.0.0.1:5000/test/tiny-b:v1", size=300_000, layers=4)
REGISTRY = (TINY, BIG, ELSEWHERE)
BUSY = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    """A started server with a small registry and fast ticks."""
    with FakeOllama(registry=REGISTRY, tick=TICK) as fake:
        yield fake


def post(server: FakeOllama, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, timeout=10, **kwargs)


def pull(server: FakeOllama, model: str, **extra: Any) -> list[dict[str, Any]]:
    response = post(server, "/api/pull", {"model": model, **extra})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def statuses(lines: list[dict[str, Any]]) -> list[str]:
    return [line.get("status", "ERROR") for line in lines]


def blob_lines(lines: list[dict[str, Any]], blob: FakeBlob) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("digest") == blob.digest]


def raw_request(server: FakeOllama, request: bytes, *, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    sock.sendall(request)
    return sock


def pull_request(model: str, port: int) -> bytes:
    body = json.dumps({"model": model}).encode()
    head = (
        f"POST /api/pull HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    )
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_into(sock: socket.socket, received: bytearray) -> None:
    while chunk := sock.recv(65536):
        received += chunk


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# -- basic endpoints -------------------------------------------------------------------------------


def test_root_answers_ollama_is_running(server: FakeOllama) -> None:
    response = requests.get(server.url, timeout=5)
    assert response.status_code == 200
    assert response.text == "Ollama is running"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Length"] == "17"
    assert "Server" not in response.headers
    head = requests.head(server.url, timeout=5)
    assert head.status_code == 200
    assert head.content == b""


def test_version_and_empty_lists_match_the_recording(server: FakeOllama) -> None:
    version = requests.get(f"{server.url}/api/version", timeout=5)
    assert version.content == b'{"version":"0.12.11"}'
    assert version.headers["Content-Type"] == "application/json; charset=utf-8"
    for path in ("/api/tags", "/api/ps"):
        assert requests.get(f"{server.url}{path}", timeout=5).content == b'{"models":[]}'


def test_unknown_routes_and_methods_are_gins_404(server: FakeOllama) -> None:
    for response in (
        requests.get(f"{server.url}/api/nothing", timeout=5),
        requests.get(f"{server.url}/api/pull", timeout=5),
    ):
        assert response.status_code == 404
        assert response.text == "404 page not found"
        assert response.headers["Content-Type"] == "text/plain"


def test_tags_shape_digest_and_names(server: FakeOllama) -> None:
    server.add_model(TINY)
    server.add_model(ELSEWHERE)
    models = requests.get(f"{server.url}/api/tags", timeout=5).json()["models"]
    assert [m["name"] for m in models] == ["127.0.0.1:5000/test/tiny-b:v1", "tiny:latest"]
    entry = models[1]
    assert list(entry) == ["name", "model", "modified_at", "size", "digest", "details"]
    assert entry["model"] == "tiny:latest"
    assert entry["size"] == TINY.size == 262_455
    assert entry["digest"] == TINY.manifest_digest == hashlib.sha256(TINY.manifest).hexdigest()
    assert entry["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "126K",
        "quantization_level": "Q4_K_M",
    }
    assert entry["modified_at"].endswith("Z")


def test_show_success_and_errors(server: FakeOllama) -> None:
    server.add_model(BIG)
    shown = post(server, "/api/show", {"model": "BIG"})
    assert shown.status_code == 200
    body = shown.json()
    assert {"modelfile", "parameters", "template", "details", "model_info", "capabilities"} <= set(
        body
    )
    assert body["modified_at"].endswith("Z")
    info = body["model_info"]
    assert info["general.architecture"] == "llama"
    for key in ("block_count", "embedding_length", "attention.head_count", "context_length"):
        assert isinstance(info[f"llama.{key}"], int)
    assert isinstance(info["general.parameter_count"], int)
    assert body["parameters"] == "num_ctx                        4096"
    assert "# FROM big:latest" in body["modelfile"]

    missing = post(server, "/api/show", {"model": "nonexistent-model"})
    assert (missing.status_code, missing.content) == (
        404,
        b'{"error":"model \'nonexistent-model\' not found"}',
    )
    assert (post(server, "/api/show", {}).status_code, post(server, "/api/show", {}).text) == (
        400,
        '{"error":"model is required"}',
    )
    empty = requests.post(f"{server.url}/api/show", timeout=5)
    assert (empty.status_code, empty.text) == (400, '{"error":"missing request body"}')


def test_large_json_bodies_are_chunked_like_go(server: FakeOllama) -> None:
    server.add_model(BIG)
    shown = post(server, "/api/show", {"model": "big"})
    assert shown.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in shown.headers


def test_go_json_escapes_html_characters(server: FakeOllama) -> None:
    server.add_model(FakeModel.synthetic("chat", template="<|user|>{{ .Prompt }}"))
    shown = post(server, "/api/show", {"model": "chat"})
    assert "\\u003c|user|\\u003e" in shown.text
    assert shown.json()["template"] == "<|user|>{{ .Prompt }}"


def test_host_guard_answers_403_with_an_empty_body() -> None:
    with FakeOllama(check_host=True) as guarded:
        foreign = requests.get(guarded.url, headers={"Host": "evil.example.com"}, timeout=5)
        assert (foreign.status_code, foreign.content) == (403, b"")
        for host in ("localhost:11434", "127.0.0.1", "192.168.1.5", "box.local", "[::1]:80"):
            assert requests.get(guarded.url, headers={"Host": host}, timeout=5).status_code == 200


# -- pull ------------------------------------------------------------------------------------------


def test_pull_stream_has_the_recorded_order(server: FakeOllama) -> None:
    response = post(server, "/api/pull", {"model": "tiny"})
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert response.headers["Transfer-Encoding"] == "chunked"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"status": "pulling manifest"}
    assert statuses(lines)[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    digests = [line["digest"] for line in lines if "digest" in line]
    assert list(dict.fromkeys(digests)) == [blob.digest for blob in TINY.blobs]
    for line in lines[1:-3]:
        blob = next(b for b in TINY.blobs if b.digest == line["digest"])
        assert list(line) == ["status", "digest", "total", "completed"]
        assert line["status"] == f"pulling {blob.digest[7:19]}"
        assert line["total"] == blob.size
    assert server.has_model("tiny:latest")
    assert TINY.blobs[-1].media_type == "application/vnd.docker.container.image.v1+json"


def test_template_and_params_layers_hash_their_real_content() -> None:
    # The real recording's tiny model has these exact layers: same content, same digests.
    digests = {blob.digest[7:19] for blob in TINY.layers}
    assert {"b507b9c2f6ca"} <= digests
    params = FakeModel.synthetic("p", parameters={"num_ctx": 256}).layers[2]
    assert params.digest[7:19] == "85011998c600"
    assert params.size == 16


def test_progress_lines_repeat_every_tick_until_the_blob_is_done() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, blob_min_seconds=0.06) as fake:
        lines = pull(fake, "tiny")
    weights = blob_lines(lines, TINY.blobs[0])
    assert len(weights) >= 5
    assert all(line == weights[0] for line in weights)
    assert weights[0]["completed"] == TINY.blobs[0].size


def test_unlimited_bandwidth_gives_one_line_per_blob(server: FakeOllama) -> None:
    lines = pull(server, "tiny")
    assert len(lines) == 1 + len(TINY.blobs) + 3


def test_a_cached_pull_sends_one_full_line_per_blob(server: FakeOllama) -> None:
    pull(server, "tiny")
    started = time.monotonic()
    lines = pull(server, "tiny")
    assert time.monotonic() - started < 1.0
    assert len(lines) == 8
    for line, blob in zip(lines[1:5], TINY.blobs, strict=True):
        assert line["total"] == line["completed"] == blob.size


def test_zero_completed_is_omitted(server: FakeOllama) -> None:
    server.stall(0.05, at_fraction=0.0)
    lines = pull(server, "big")
    first = blob_lines(lines, BIG.blobs[0])[0]
    assert "completed" not in first
    assert first["total"] == BIG.blobs[0].size


def test_bandwidth_paces_the_download() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, bandwidth=5_000_000) as fake:
        started = time.monotonic()
        lines = pull(fake, "big")
        elapsed = time.monotonic() - started
    assert elapsed >= BIG.size / 5_000_000 * 0.8
    completed = [line.get("completed", 0) for line in blob_lines(lines, BIG.blobs[0])]
    assert completed == sorted(completed)
    assert len(set(completed)) > 5


def test_blob_min_seconds_holds_each_uncached_blob() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, blob_min_seconds=0.05) as fake:
        started = time.monotonic()
        pull(fake, "tiny")
        assert time.monotonic() - started >= 0.05 * len(TINY.blobs)


def test_realistic_preset() -> None:
    fake = FakeOllama.realistic(registry=REGISTRY)
    assert (fake.tick, fake.blob_min_seconds) == (0.06, 1.0)
    assert fake.bandwidth == 10_000_000


def test_pull_errors_before_the_stream(server: FakeOllama) -> None:
    invalid = post(server, "/api/pull", {"model": "not a valid name!!"})
    assert (invalid.status_code, invalid.content) == (400, b'{"error":"invalid model name"}')
    empty = requests.post(f"{server.url}/api/pull", timeout=5)
    assert (empty.status_code, empty.content) == (400, b'{"error":"missing request body"}')
    garbage = requests.post(f"{server.url}/api/pull", data=b"{nope", timeout=5)
    assert garbage.status_code == 400
    assert "invalid character" in garbage.json()["error"]


def test_a_missing_model_fails_after_pulling_manifest(server: FakeOllama) -> None:
    assert pull(server, "doesnotexist") == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    failed = post(server, "/api/pull", {"model": "tiny:nosuchtag", "stream": False})
    assert failed.status_code == 500
    assert failed.headers["Content-Type"] == "application/json"
    assert failed.content == b'{"error":"pull model manifest: file does not exist"}'


def test_stream_false_returns_only_success(server: FakeOllama) -> None:
    done = post(server, "/api/pull", {"model": "tiny", "stream": False})
    assert (done.status_code, done.content) == (200, b'{"status":"success"}')
    assert done.headers["Content-Type"] == "application/json"


def test_names_resolve_case_insensitively_with_defaults(server: FakeOllama) -> None:
    assert statuses(pull(server, "registry.ollama.ai/library/TINY:Latest"))[-1] == "success"
    assert server.has_model("tiny")
    assert server.has_model("Tiny:latest")


def test_registry_unreachable_fails_even_cached_pulls(server: FakeOllama) -> None:
    server.add_model(TINY)
    server.registry_unreachable(kind="dns")
    expected = (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/tiny/manifests/latest":'
        " dial tcp: lookup registry.ollama.ai on 127.0.0.53:53: no such host"
    )
    assert pull(server, "tiny") == [{"status": "pulling manifest"}, {"error": expected}]
    server.registry_unreachable(kind="dial")
    lines = pull(server, "127.0.0.1:5000/test/tiny-b:v1", insecure=True)
    assert lines[-1]["error"] == (
        'pull model manifest: Get "http://127.0.0.1:5000/v2/test/tiny-b/manifests/v1":'
        " dial tcp 127.0.0.1:5000: connect: connection refused"
    )
    offline = post(server, "/api/pull", {"model": "tiny", "stream": False})
    assert offline.status_code == 500
    server.registry_unreachable(False)
    assert statuses(pull(server, "tiny"))[-1] == "success"


def test_a_repull_of_a_changed_model_removes_unused_layers(server: FakeOllama) -> None:
    pull(server, "tiny")
    server.add_registry_model(FakeModel.synthetic("tiny", size=300_000, layers=3))
    lines = pull(server, "tiny")
    assert statuses(lines)[-2:] == ["removing unused layers", "success"]
    assert not server.has_blob(TINY.blobs[0].digest)
    assert server.has_blob(TINY.blobs[1].digest)  # the same template layer is kept


# -- shared downloads ------------------------------------------------------------------------------


def test_concurrent_pulls_share_one_download() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, bandwidth=4_000_000) as fake:
        results: dict[str, list[dict[str, Any]]] = {}

        def run(key: str) -> None:
            results[key] = pull(fake, "big")

        first = threading.Thread(target=run, args=("first",))
        first.start()
        time.sleep(0.2)
        started = time.monotonic()
        run("second")
        second_elapsed = time.monotonic() - started
        first.join(10)
    weights = BIG.blobs[0]
    joined_at = blob_lines(results["second"], weights)[0]["completed"]
    assert joined_at >= 0.5 * 4_000_000 * 0.2  # it saw the shared progress at once
    assert second_elapsed < weights.size / 4_000_000 * 0.9  # and did not download again
    assert statuses(results["first"])[-1] == statuses(results["second"])[-1] == "success"


def test_the_last_client_leaving_stops_the_download_and_a_repull_resumes() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, bandwidth=2_000_000) as fake:
        weights = BIG.blobs[0]
        with requests.post(
            f"{fake.url}/api/pull", json={"model": "big"}, stream=True, timeout=10
        ) as response:
            lines = response.iter_lines()
            for _ in range(30):
                next(lines)
        time.sleep(0.15)
        paused = fake.partial_bytes(weights.digest)
        time.sleep(0.15)
        assert fake.partial_bytes(weights.digest) == paused > 0
        fake.set_bandwidth(None)
        resumed = pull(fake, "big")
    assert blob_lines(resumed, weights)[0]["completed"] >= paused
    assert statuses(resumed)[-1] == "success"


def test_one_client_leaving_does_not_stop_a_shared_download() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, bandwidth=4_000_000) as fake:
        weights = BIG.blobs[0]
        staying: list[dict[str, Any]] = []
        thread = threading.Thread(target=lambda: staying.extend(pull(fake, "big")))
        thread.start()
        with requests.post(
            f"{fake.url}/api/pull", json={"model": "big"}, stream=True, timeout=10
        ) as leaving:
            next(leaving.iter_lines())
        thread.join(10)
    assert statuses(staying)[-1] == "success"
    assert fake.has_blob(weights.digest)


# -- delete, copy, blobs, create -------------------------------------------------------------------


def test_delete_answers_200_empty_or_404(server: FakeOllama) -> None:
    server.add_model(TINY)
    server.add_model(TINY.renamed("tiny-copy"))
    deleted = requests.delete(f"{server.url}/api/delete", json={"model": "tiny"}, timeout=5)
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert deleted.headers["Content-Length"] == "0"
    assert server.has_blob(TINY.blobs[0].digest)  # still used by tiny-copy
    missing = requests.delete(f"{server.url}/api/delete", json={"model": "tiny"}, timeout=5)
    assert (missing.status_code, missing.text) == (404, '{"error":"model \'tiny\' not found"}')
    server.remove_model("tiny-copy")
    assert not server.has_blob(TINY.blobs[0].digest)


def test_copy(server: FakeOllama) -> None:
    server.add_model(TINY)
    copied = post(server, "/api/copy", {"source": "tiny", "destination": "mine/tiny:v2"})
    assert (copied.status_code, copied.content) == (200, b"")
    assert server.has_model("mine/tiny:v2")
    missing = post(server, "/api/copy", {"source": "ghost", "destination": "x"})
    assert (missing.status_code, missing.text) == (404, '{"error":"model \\"ghost\\" not found"}')


def test_blob_head_and_upload(server: FakeOllama) -> None:
    content = b"GGUF" + bytes(range(256)) * 64
    digest = f"sha256:{hashlib.sha256(content).hexdigest()}"
    url = f"{server.url}/api/blobs/{digest}"
    head = requests.head(url, timeout=5)
    assert head.status_code == 404
    assert head.headers["Content-Length"] == str(
        len(f'{{"error":"blob \\"{digest}\\" not found"}}')
    )
    assert requests.post(url, data=content, timeout=5).status_code == 201
    assert requests.head(url, timeout=5).status_code == 200
    again = requests.post(url, data=content, timeout=5)
    assert (again.status_code, again.content) == (200, b"")
    assert server.has_blob(digest)


def test_blob_upload_streams_chunked_bodies_and_checks_the_digest(server: FakeOllama) -> None:
    parts = [b"x" * 100_000 for _ in range(20)]
    actual = hashlib.sha256(b"".join(parts)).hexdigest()
    wrong = "sha256:" + "1" * 64
    mismatch = requests.post(f"{server.url}/api/blobs/{wrong}", data=iter(parts), timeout=5)
    assert mismatch.status_code == 400
    assert mismatch.json() == {
        "error": f'digest mismatch, expected "{wrong}", got "sha256:{actual}"'
    }
    created = requests.post(f"{server.url}/api/blobs/sha256:{actual}", data=iter(parts), timeout=5)
    assert created.status_code == 201
    bad = requests.head(f"{server.url}/api/blobs/sha256:xyz", timeout=5)
    assert bad.status_code == 400


def test_create_from_uploaded_files(server: FakeOllama) -> None:
    content = b"GGUF tiny weights"
    digest = f"sha256:{hashlib.sha256(content).hexdigest()}"
    requests.post(f"{server.url}/api/blobs/{digest}", data=content, timeout=5)
    request = {
        "model": "tiny-api",
        "files": {"tiny.gguf": digest},
        "template": "{{ .Prompt }}",
        "parameters": {"num_ctx": 256},
    }
    response = post(server, "/api/create", request)
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert [json.loads(line) for line in response.text.splitlines()] == [
        {"status": "parsing GGUF"},
        {"status": f"using existing layer {digest}"},
        {"status": "creating new layer sha256:" + TINY.blobs[1].hex},
        {
            "status": "creating new layer "
            "sha256:85011998c600549934d2b696d7f0cb5078192b56f6c954f6987bf9228870017e"
        },
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    assert server.has_model("tiny-api")
    quiet = post(server, "/api/create", {**request, "model": "tiny-api2", "stream": False})
    assert (quiet.status_code, quiet.content) == (200, b'{"status":"success"}')
    assert quiet.headers["Content-Type"] == "application/json"


def test_create_with_a_missing_blob_fails_after_parsing(server: FakeOllama) -> None:
    missing = "sha256:" + "2" * 64
    response = post(server, "/api/create", {"model": "x", "files": {"a.gguf": missing}})
    assert response.status_code == 200
    assert [json.loads(line) for line in response.text.splitlines()] == [
        {"status": "parsing GGUF"},
        {"error": f"open /root/.ollama/models/blobs/sha256-{'2' * 64}: no such file or directory"},
    ]
    neither = post(server, "/api/create", {"model": "x"})
    assert (neither.status_code, neither.json()) == (
        400,
        {"error": "neither 'from' or 'files' was specified"},
    )


def test_create_from_an_existing_model_reuses_its_layers(server: FakeOllama) -> None:
    server.add_model(TINY)
    response = post(
        server, "/api/create", {"model": "tiny-b", "from": "tiny", "system": "Be brief."}
    )
    lines = [json.loads(line)["status"] for line in response.text.splitlines()]
    assert lines[:2] == [f"using existing layer {TINY.blobs[0].digest}"] * 1 + [
        f"using existing layer {TINY.blobs[1].digest}"
    ]
    assert any(line.startswith("creating new layer") for line in lines)
    assert lines[-2:] == ["writing manifest", "success"]
    assert post(server, "/api/show", {"model": "tiny-b"}).json()["system"] == "Be brief."


def test_create_from_a_model_not_present_pulls_it_first(server: FakeOllama) -> None:
    response = post(server, "/api/create", {"model": "derived", "from": "tiny"})
    lines = [json.loads(line)["status"] for line in response.text.splitlines()]
    assert lines[0] == "pulling manifest"
    assert lines[-1] == "success"
    assert server.has_model("tiny")
    assert server.has_model("derived")


# -- generate, ps ----------------------------------------------------------------------------------


def test_load_ps_and_unload(server: FakeOllama) -> None:
    server.add_model(TINY)
    loaded = post(server, "/api/generate", {"model": "tiny"})
    body = loaded.json()
    assert list(body) == ["model", "created_at", "response", "done", "done_reason"]
    assert (body["model"], body["response"], body["done"], body["done_reason"]) == (
        "tiny",
        "",
        True,
        "load",
    )
    running = requests.get(f"{server.url}/api/ps", timeout=5).json()["models"]
    assert [m["name"] for m in running] == ["tiny:latest"]
    entry = running[0]
    assert list(entry) == [
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    ]
    assert entry["size_vram"] == 0
    assert entry["size"] > TINY.size
    assert entry["digest"] == TINY.manifest_digest
    assert entry["context_length"] == 4096
    unloaded = post(server, "/api/generate", {"model": "tiny", "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    assert requests.get(f"{server.url}/api/ps", timeout=5).json() == {"models": []}


@pytest.mark.parametrize(("fraction", "override"), [(1.0, None), (0.5, None), (0.0, 1.0)])
def test_vram_fraction_sets_the_placement(fraction: float, override: float | None) -> None:
    model = FakeModel.synthetic("m", vram_fraction=override)
    with FakeOllama(models=[model], vram_fraction=fraction) as fake:
        post(fake, "/api/generate", {"model": "m", "options": {"num_ctx": 2048}})
        entry = requests.get(f"{fake.url}/api/ps", timeout=5).json()["models"][0]
    share = override if override is not None else fraction
    assert entry["size_vram"] == int(entry["size"] * share)
    assert entry["context_length"] == 2048


def test_keep_alive_forever_and_bad_values(server: FakeOllama) -> None:
    server.add_model(TINY)
    post(server, "/api/generate", {"model": "tiny", "keep_alive": -1})
    expires = requests.get(f"{server.url}/api/ps", timeout=5).json()["models"][0]["expires_at"]
    assert int(expires[:4]) > time.gmtime().tm_year + 100
    bad = post(server, "/api/generate", {"model": "tiny", "keep_alive": "-1"})
    assert (bad.status_code, bad.json()) == (400, {"error": 'time: invalid duration "-1"'})
    assert post(server, "/api/generate", {"model": "tiny", "keep_alive": "1h30m"}).ok
    sub_second = post(server, "/api/generate", {"model": "tiny", "keep_alive": "500ms"})
    assert sub_second.json()["done_reason"] == "unload"


def test_generate_for_a_missing_model_is_404(server: FakeOllama) -> None:
    missing = post(server, "/api/generate", {"model": "nonexistent"})
    assert (missing.status_code, missing.content) == (
        404,
        b'{"error":"model \'nonexistent\' not found"}',
    )


def test_generate_with_a_prompt_streams_a_reply(server: FakeOllama) -> None:
    server.add_model(TINY)
    lines = [
        json.loads(line)
        for line in post(
            server, "/api/generate", {"model": "tiny", "prompt": "hi"}
        ).text.splitlines()
    ]
    assert all(line["done"] is False for line in lines[:-1])
    assert lines[-1]["done_reason"] == "stop"
    chat = post(
        server, "/api/chat", {"model": "tiny", "messages": [{"role": "user"}], "stream": False}
    )
    assert chat.json()["message"]["role"] == "assistant"


# -- request log -----------------------------------------------------------------------------------


def test_requests_are_recorded(server: FakeOllama) -> None:
    requests.get(f"{server.url}/api/tags", timeout=5)
    post(server, "/api/show", {"model": "x"})
    recorded = server.requests
    assert [(r.method, r.path) for r in recorded] == [("GET", "/api/tags"), ("POST", "/api/show")]
    assert isinstance(recorded[1], RecordedRequest)
    assert recorded[1].body == {"model": "x"}
    assert recorded[1].headers["Content-Type"] == "application/json"
    assert recorded[0].at <= recorded[1].at
    assert server.count("POST", "/api/show") == 1
    assert server.count() == 2
    server.clear_requests()
    assert server.requests == []


# -- faults: the port ------------------------------------------------------------------------------


def test_refuse_connections_closes_the_port_then_reopens_it(server: FakeOllama) -> None:
    port = server.port
    server.refuse_connections(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    time.sleep(0.45)
    assert server.port == port
    assert requests.get(server.url, timeout=5).text == "Ollama is running"


def test_refusal_takes_effect_before_refuse_connections_returns(server: FakeOllama) -> None:
    # The acceptor is blocked in select() on the listening socket; closing it must still
    # stop the listening at once, or connects land in a dying backlog and get reset.
    for _ in range(25):
        server.refuse_connections(30)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        server.clear_faults()
        assert requests.get(server.url, timeout=5).ok


def test_hang_connections_accepts_but_answers_only_after_the_hang(server: FakeOllama) -> None:
    server.hang_connections(0.4)
    started = time.monotonic()
    sock = raw_request(
        server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=0.15
    )
    with pytest.raises(TimeoutError):
        sock.recv(1024)
    sock.settimeout(5)
    answer = read_all(sock)
    sock.close()
    assert time.monotonic() - started >= 0.35
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b"Ollama is running")


def test_a_hang_also_holds_requests_on_open_connections(server: FakeOllama) -> None:
    with requests.Session() as session:
        assert session.get(server.url, timeout=5).ok
        server.hang_connections(0.3)
        with pytest.raises(requests.Timeout):
            session.get(server.url, timeout=0.1)
        time.sleep(0.3)
        assert session.get(server.url, timeout=5).ok


def test_fail_next_answers_the_next_requests_with_an_error(server: FakeOllama) -> None:
    server.fail_next(2)
    for _ in range(2):
        busy = requests.get(f"{server.url}/api/version", timeout=5)
        assert (busy.status_code, busy.json()) == (503, {"error": BUSY})
    assert requests.get(f"{server.url}/api/version", timeout=5).ok
    server.fail_next(1, status=500, message="boom", path="/api/pull")
    assert requests.get(f"{server.url}/api/version", timeout=5).ok
    failed = post(server, "/api/pull", {"model": "tiny"})
    assert (failed.status_code, failed.json()) == (500, {"error": "boom"})


# -- faults: the pull stream -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    ["max retries exceeded: EOF", "write /models/blobs: no space left on device"],
)
def test_error_mid_stream_ends_a_200_stream(server: FakeOllama, message: str) -> None:
    server.error_mid_stream(message, at_fraction=0.5)
    lines = pull(server, "big")
    assert lines[-1] == {"error": message}
    assert lines[-2]["completed"] == int(0.5 * BIG.size)
    assert not server.has_model("big")
    assert server.partial_bytes(BIG.blobs[0].digest) == int(0.5 * BIG.size)
    assert statuses(pull(server, "big"))[-1] == "success"  # only once


def test_error_at_zero_follows_pulling_manifest_and_stream_false_is_500(server: FakeOllama) -> None:
    server.error_mid_stream("pull model manifest: file does not exist", at_fraction=0.0, times=2)
    assert pull(server, "tiny") == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    quiet = post(server, "/api/pull", {"model": "tiny", "stream": False})
    assert quiet.status_code == 500


def test_reset_at_sends_a_tcp_reset_and_keeps_the_partial(server: FakeOllama) -> None:
    server.reset_at(0.4)
    sock = raw_request(server, pull_request("big", server.port))
    received = bytearray()
    with pytest.raises(ConnectionResetError):
        read_into(sock, received)
    sock.close()
    assert received.startswith(b"HTTP/1.1 200 OK")
    weights = BIG.blobs[0].digest
    time.sleep(0.05)
    assert server.partial_bytes(weights) == int(0.4 * BIG.size)
    resumed = pull(server, "big")
    assert blob_lines(resumed, BIG.blobs[0])[0]["completed"] >= int(0.4 * BIG.size)


def test_a_repeating_stall_resends_the_same_line_then_continues(server: FakeOllama) -> None:
    server.stall(0.2, mode="repeat", at_fraction=0.3)
    started = time.monotonic()
    lines = pull(server, "big")
    assert time.monotonic() - started >= 0.2
    frozen = [line for line in lines if line.get("completed") == int(0.3 * BIG.size)]
    assert len(frozen) >= 10
    assert statuses(lines)[-1] == "success"


def test_a_silent_stall_sends_nothing_but_keeps_the_connection(server: FakeOllama) -> None:
    server.stall(0.4, mode="silent", at_fraction=0.3)
    sock = raw_request(server, pull_request("big", server.port), timeout=5)
    received = b""
    while b'"completed":%d' % int(0.3 * BIG.size) not in received:
        received += sock.recv(65536)
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(65536)
    sock.settimeout(5)
    while not received.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed during a silent stall"
        received += chunk
    sock.close()
    assert b'{"status":"success"}' in received


def test_set_bandwidth_changes_speed_mid_pull() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, bandwidth=1_000) as fake:
        thread = threading.Thread(target=pull, args=(fake, "big"))
        thread.start()
        time.sleep(0.1)
        assert fake.partial_bytes(BIG.blobs[0].digest) < 10_000
        fake.set_bandwidth(None)
        thread.join(5)
        assert fake.has_model("big")


def test_restart_drops_connections_and_forgets_progress() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, bandwidth=2_000_000, models=[TINY]) as fake:
        post(fake, "/api/generate", {"model": "tiny"})
        weights = BIG.blobs[0].digest
        with requests.post(
            f"{fake.url}/api/pull", json={"model": "big"}, stream=True, timeout=10
        ) as response:
            lines = response.iter_lines()
            for _ in range(20):
                next(lines)
            fake.restart(down_for=0.2)
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                for _ in lines:
                    pass
        with pytest.raises(requests.ConnectionError):
            requests.get(fake.url, timeout=1)
        time.sleep(0.3)
        assert requests.get(fake.url, timeout=5).ok
        assert fake.partial_bytes(weights) == 0
        assert requests.get(f"{fake.url}/api/ps", timeout=5).json() == {"models": []}


def test_restart_can_keep_partials() -> None:
    with FakeOllama(registry=REGISTRY, tick=TICK, bandwidth=2_000_000) as fake:
        with requests.post(
            f"{fake.url}/api/pull", json={"model": "big"}, stream=True, timeout=10
        ) as response:
            lines = response.iter_lines()
            for _ in range(20):
                next(lines)
            fake.restart(keep_partials=True)
        kept = fake.partial_bytes(BIG.blobs[0].digest)
        assert kept > 0
        fake.set_bandwidth(None)
        resumed = pull(fake, "big")
        assert blob_lines(resumed, BIG.blobs[0])[0]["completed"] >= kept


# -- faults: raw responses -------------------------------------------------------------------------


def test_respond_with_an_html_proxy_page(server: FakeOllama) -> None:
    page = "<html><body>Proxy error</body></html>"
    server.respond_with(
        "GET", "/api/version", status=502, body=page, headers={"Content-Type": "text/html"}
    )
    answer = requests.get(f"{server.url}/api/version", timeout=5)
    assert (answer.status_code, answer.text, answer.headers["Content-Type"]) == (
        502,
        page,
        "text/html",
    )
    assert requests.get(f"{server.url}/api/version", timeout=5).json() == {"version": "0.12.11"}


def test_respond_with_a_gzip_bomb_and_a_redirect(server: FakeOllama) -> None:
    bomb = gzip.compress(b"0" * 2_000_000)
    server.respond_with("GET", "/api/tags", body=bomb, headers={"Content-Encoding": "gzip"})
    with requests.get(f"{server.url}/api/tags", stream=True, timeout=5) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert len(response.raw.read(decode_content=False)) == len(bomb)
    server.respond_with(
        "GET", "/api/ps", status=307, headers={"Location": "/api/version"}, times=None
    )
    followed = requests.get(f"{server.url}/api/ps", timeout=5)
    assert followed.json() == {"version": "0.12.11"}
    assert requests.get(f"{server.url}/api/ps", allow_redirects=False, timeout=5).status_code == 307
    server.clear_faults()
    assert requests.get(f"{server.url}/api/ps", timeout=5).json() == {"models": []}


def test_respond_with_a_trickle_and_a_huge_line(server: FakeOllama) -> None:
    server.respond_with("POST", "/api/pull", body=b"x" * 40 + b"\n", chunk_size=10, delay=0.05)
    started = time.monotonic()
    trickled = post(server, "/api/pull", {"model": "tiny"})
    assert trickled.content == b"x" * 40 + b"\n"
    assert time.monotonic() - started >= 0.15
    huge = b'{"status":"' + b"a" * 3_000_000 + b'"}\n'
    server.respond_with(
        "POST", "/api/pull", body=huge, headers={"Content-Type": "application/x-ndjson"}
    )
    assert len(post(server, "/api/pull", {"model": "tiny"}).content) == len(huge)


def test_clear_faults_switches_everything_off(server: FakeOllama) -> None:
    server.fail_next(5)
    server.error_mid_stream("boom", times=None)
    server.registry_unreachable()
    server.hang_connections(30)
    server.clear_faults()
    assert requests.get(f"{server.url}/api/version", timeout=2).ok
    assert statuses(pull(server, "tiny"))[-1] == "success"


# -- life cycle ------------------------------------------------------------------------------------


def test_a_server_can_start_later_and_refuse_first() -> None:
    fake = FakeOllama(registry=REGISTRY)
    with pytest.raises(RuntimeError):
        _ = fake.url
    started = time.monotonic()
    fake.start(refuse_for=0.3)
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(fake.url, timeout=1)
        while_refused = fake.listening_since
        assert while_refused is None
        time.sleep(0.4)
        assert requests.get(fake.url, timeout=5).ok
        opened = fake.listening_since
        assert opened is not None
        assert started + 0.3 <= opened <= time.monotonic()
    finally:
        fake.stop()
    stopped = fake.listening_since
    assert stopped is None
    with pytest.raises(requests.ConnectionError):
        requests.get(fake.url, timeout=1)


def test_a_refused_port_reopens_with_a_new_listening_time() -> None:
    with FakeOllama(registry=REGISTRY) as fake:
        first = fake.listening_since
        assert first is not None
        fake.refuse_connections(0.2)
        while_refused = fake.listening_since
        assert while_refused is None
        time.sleep(0.3)
        assert requests.get(fake.url, timeout=5).ok
        again = fake.listening_since
        assert again is not None
        assert again >= first + 0.2


def test_ready_after_keeps_the_port_open_but_silent() -> None:
    with FakeOllama(registry=REGISTRY, ready_after=0.3) as fake:
        socket.create_connection(("127.0.0.1", fake.port), timeout=1).close()
        with pytest.raises(requests.Timeout):
            requests.get(fake.url, timeout=0.1)
        time.sleep(0.3)
        assert requests.get(fake.url, timeout=5).ok


def test_stop_does_not_hang_on_busy_connections() -> None:
    fake = FakeOllama(registry=REGISTRY, tick=TICK).start()
    fake.stall(60, mode="silent", at_fraction=0.1)
    sock = raw_request(fake, pull_request("big", fake.port))
    sock.recv(1024)
    idle = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 2.0
    sock.close()
    idle.close()


def test_the_module_runs_standalone_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ollama_ready.testing", "--port", "0", "--model", "tinyllama"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        assert requests.get(f"{url}/api/tags", timeout=5).json()["models"][0]["name"] == (
            "tinyllama:latest"
        )
        process.terminate()
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()


def test_synthetic_models_are_deterministic_and_sized() -> None:
    again = FakeModel.synthetic("tiny", size=262_455, layers=3, parameter_size="126K")
    assert again == TINY
    assert TINY.size == 262_455
    assert TINY.name == "registry.ollama.ai/library/tiny:latest"
    assert len(TINY.blobs) == 4
    assert TINY.config is TINY.blobs[-1]
    assert len(FakeModel.synthetic("x", layers=1).blobs) == 2
    with pytest.raises(ValueError, match="at least one layer"):
        FakeModel.synthetic("x", layers=0)
    default = {m.display for m in FakeOllama()._registry.values()}
    assert {"llama3.2:1b", "gpt-oss:20b", "qwen2.5:0.5b", "tinyllama:latest"} <= default
