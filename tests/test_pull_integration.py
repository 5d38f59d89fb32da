"""The pull engine against FakeOllama on loopback: every fault gives its documented outcome."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import pytest

from ollama_ready.client import OllamaClient
from ollama_ready.clock import Deadline
from ollama_ready.errors import (
    DeadlineExceeded,
    InsecureRegistry,
    InvalidModelName,
    ModelNotFound,
    OllamaReadyError,
    PullRetriesExhausted,
    ResponseError,
)
from ollama_ready.progress import LinesReporter, ProgressSnapshot
from ollama_ready.pull import PullResult, RetryPolicy, classify_error, pull_model, pull_models
from ollama_ready.testing import FakeModel, FakeOllama

SIZE = 4_000_000
FAST = RetryPolicy(base=0.02, max_interval=0.1)
# After an abandoned stream, give the server time to notice the closed connection; else the
# re-issued pull joins the same frozen download (as on a real server, which dedupes by digest).
SETTLE = RetryPolicy(base=0.2, max_interval=0.2, jitter=None)
# Enough tries, spaced enough, to outlast a port that refuses for 0.2 s.
PATIENT = RetryPolicy(max_tries=20, base=0.05, max_interval=0.1, jitter=None)
TINY = FakeModel.synthetic("tiny:1b", size=SIZE, layers=2)
OTHERS = tuple(FakeModel.synthetic(f"other{i}:1b", size=SIZE, layers=2) for i in range(3))

TRANSIENT = [
    "max retries exceeded: EOF",
    'max retries exceeded: Get "http://127.0.0.2:5080/data": dial tcp 127.0.0.2:5080: '
    "connect: connection refused",
    'pull model manifest: Get "https://registry.ollama.ai/v2/library/tiny/manifests/1b": '
    "context deadline exceeded",
    'Get "https://registry.ollama.ai/v2/": net/http: TLS handshake timeout',
    "read tcp 10.0.0.2:51234->1.2.3.4:443: read: connection reset by peer",
    "unexpected EOF",
    'Head "http://127.0.0.1:5000/v2/library/big/blobs/sha256:909d": dial tcp 127.0.0.1:5000: '
    "connect: connection refused",
    "pull model manifest: 502: Bad Gateway",
    "digest mismatch, file must be downloaded again",
    "an error nobody has seen before",
]
PERMANENT = [
    "pull model manifest: file does not exist",
    "pull model manifest: 412: \n\nThe model you are attempting to pull requires a newer "
    "version of Ollama.",
    "write /root/.ollama/models/blobs/sha256-x-partial: no space left on device",
    "unauthorized: access denied",
    'pull model manifest: Get "https://127.0.0.1:5000/v2/library/tiny/manifests/latest": '
    "http: server gave HTTP response to HTTPS client",
    "this model requires MLX support, but the MLX runtime is not available",
]


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(registry=(TINY, *OTHERS), tick=0.005, bandwidth=40_000_000) as fake:
        yield fake


@pytest.fixture
def client(server: FakeOllama) -> Iterator[OllamaClient]:
    with OllamaClient(server.url) as ollama:
        yield ollama


class Recorder:
    """Collect the snapshots of a pull."""

    def __init__(self) -> None:
        self.snapshots: list[ProgressSnapshot] = []

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        self.snapshots.append(snapshot)

    def first_line_of_attempt(self, attempt: int) -> ProgressSnapshot:
        return next(s for s in self.snapshots if s.attempt == attempt and s.phase == "downloading")

    def downloaded_before_attempt(self, attempt: int) -> int:
        return max(s.downloaded for s in self.snapshots if s.attempt < attempt)


def pulls(server: FakeOllama) -> int:
    return server.count("POST", "/api/pull")


def test_pull_then_present_without_the_registry(server: FakeOllama, client: OllamaClient) -> None:
    result = pull_model(client, "tiny:1b", retry=FAST)
    assert result.pulled
    assert result.model == "registry.ollama.ai/library/tiny:1b"
    assert result.size == TINY.size
    assert result.digest == TINY.manifest_digest
    assert result.bytes_downloaded + result.bytes_present == TINY.size
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/api/show"),
        ("POST", "/api/pull"),
        ("GET", "/api/tags"),
    ]
    server.clear_requests()
    server.registry_unreachable(True)  # a present model must not need the registry
    again = pull_model(client, "TINY:1b", retry=FAST)
    assert not again.pulled
    assert again.digest == TINY.manifest_digest
    assert pulls(server) == 0


def test_invalid_names_send_nothing(server: FakeOllama, client: OllamaClient) -> None:
    with pytest.raises(InvalidModelName):
        pull_model(client, "not a valid name!!")
    assert server.requests == []


@pytest.mark.parametrize("message", TRANSIENT)
def test_transient_errors_mid_stream_succeed_after_one_retry(
    server: FakeOllama, client: OllamaClient, message: str
) -> None:
    assert classify_error(message).transient
    server.error_mid_stream(message, at_fraction=0.5)
    result = pull_model(client, "tiny:1b", retry=FAST)
    assert result.attempts == 2
    assert pulls(server) == 2
    assert server.has_model("tiny:1b")


@pytest.mark.parametrize("message", PERMANENT)
def test_permanent_errors_mid_stream_are_requested_once(
    server: FakeOllama, client: OllamaClient, message: str
) -> None:
    rule = classify_error(message)
    assert not rule.transient
    server.error_mid_stream(message, at_fraction=0.0)
    with pytest.raises(rule.error) as caught:
        pull_model(client, "tiny:1b", retry=FAST)
    assert pulls(server) == 1
    assert caught.value.hint
    assert caught.value.host == server.url


def test_a_model_the_registry_lacks(server: FakeOllama, client: OllamaClient) -> None:
    with pytest.raises(ModelNotFound, match=r"registry\.ollama\.ai has no model library/nosuch"):
        pull_model(client, "nosuch:7b", retry=FAST)
    assert pulls(server) == 1


def test_insecure_is_sent_and_suggested(server: FakeOllama, client: OllamaClient) -> None:
    server.error_mid_stream(
        "pull model manifest: http: server gave HTTP response to HTTPS client", at_fraction=0.0
    )
    with pytest.raises(InsecureRegistry) as caught:
        pull_model(client, "tiny:1b")
    assert caught.value.hint is not None
    assert "insecure=True" in caught.value.hint
    pull_model(client, "tiny:1b", insecure=True)
    bodies = [r.body for r in server.requests if r.path == "/api/pull"]
    assert isinstance(bodies[-1], dict)
    assert bodies[-1]["insecure"] is True


def test_a_reset_resumes_instead_of_starting_over(server: FakeOllama, client: OllamaClient) -> None:
    server.reset_at(0.5)
    recorder = Recorder()
    result = pull_model(client, "tiny:1b", retry=FAST, reporter=recorder)
    assert result.attempts == 2
    resumed = recorder.first_line_of_attempt(2)
    assert resumed.layer is not None
    assert resumed.layer.completed > 0  # the server kept the bytes of the first attempt
    after_reset = result.bytes_downloaded - recorder.downloaded_before_attempt(2)
    assert 0 < after_reset < TINY.size


def test_a_stall_with_repeated_lines_is_abandoned_and_reissued(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.stall(30.0, "repeat", at_fraction=0.3)
    recorder = Recorder()
    started = time.monotonic()
    result = pull_model(client, "tiny:1b", retry=SETTLE, stall_timeout=0.3, reporter=recorder)
    assert time.monotonic() - started < 5
    assert result.attempts == 2
    retry = next(s for s in recorder.snapshots if s.phase == "retrying")
    assert retry.message is not None
    assert "stalled" in retry.message
    stuck = [s for s in recorder.snapshots if s.attempt == 1 and s.phase == "downloading"]
    assert len(stuck) > 10  # lines kept coming; the stall was about bytes, not lines


def test_a_silent_stream_is_caught_by_the_read_timeout(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.stall(30.0, "silent", at_fraction=0.3)
    started = time.monotonic()
    result = pull_model(client, "tiny:1b", retry=SETTLE, stall_timeout=0.3)
    assert time.monotonic() - started < 5
    assert result.attempts == 2


@pytest.mark.parametrize("keep_partials", [True, False])
def test_a_server_restart_mid_pull(
    server: FakeOllama, client: OllamaClient, keep_partials: bool
) -> None:
    restarted = threading.Event()

    def restart_midway(snapshot: ProgressSnapshot) -> None:
        recorder(snapshot)
        if not restarted.is_set() and (snapshot.fraction or 0) > 0.3:
            restarted.set()
            server.restart(keep_partials=keep_partials, down_for=0.2)

    recorder = Recorder()
    result = pull_model(client, "tiny:1b", retry=PATIENT, reporter=restart_midway)
    assert restarted.is_set()
    assert result.pulled
    assert result.attempts >= 2
    first = max(s.attempt for s in recorder.snapshots)
    resumed = recorder.first_line_of_attempt(first)
    assert resumed.layer is not None
    if keep_partials:
        assert resumed.layer.completed > 0
    assert server.has_model("tiny:1b")


def test_refused_connections_and_busy_answers_are_retried(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.refuse_connections(0.2)
    server.fail_next(2, status=503, path="/api/pull")
    result = pull_model(client, "tiny:1b", retry=PATIENT)
    assert result.attempts == 3  # two 503s, then the pull


def test_an_unreachable_registry_exhausts_the_tries(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.registry_unreachable(True, kind="dns")
    with pytest.raises(PullRetriesExhausted, match="registry-dns") as caught:
        pull_model(client, "tiny:1b", retry=RetryPolicy(max_tries=2, base=0.01))
    assert pulls(server) == 2
    assert isinstance(caught.value.__cause__, ResponseError)
    assert "no such host" in caught.value.__cause__.server_message
    assert caught.value.hint is not None
    assert "registry.ollama.ai" in caught.value.hint


def test_the_deadline_closes_the_stream_and_the_server_keeps_the_partial(
    server: FakeOllama, client: OllamaClient
) -> None:
    server.set_bandwidth(2_000_000)  # the pull would need 2 s
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="keeps the partial data"):
        pull_model(client, "tiny:1b", deadline=Deadline(0.5))
    assert time.monotonic() - started < 1.5
    blob = TINY.blobs[0]
    time.sleep(0.2)  # the server notices the closed connection and stops the download
    kept = server.partial_bytes(blob.digest)
    time.sleep(0.3)
    assert server.partial_bytes(blob.digest) == kept
    assert 0 < kept < blob.size
    server.set_bandwidth(None)
    recorder = Recorder()
    pull_model(client, "tiny:1b", reporter=recorder)
    resumed = recorder.first_line_of_attempt(1)
    assert resumed.layer is not None
    assert resumed.layer.completed >= kept


def test_32_threads_share_one_pull(server: FakeOllama, client: OllamaClient) -> None:
    server.set_bandwidth(10_000_000)
    results: list[PullResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(32)

    def ensure() -> None:
        start.wait()
        try:
            results.append(pull_model(client, "tiny:1b", retry=FAST))
        except OllamaReadyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(results) == 32
    assert pulls(server) == 1
    assert sum(result.pulled for result in results) >= 1
    assert {result.digest for result in results} == {TINY.manifest_digest}


def test_pull_models_reports_each_outcome(server: FakeOllama, client: OllamaClient) -> None:
    out = io.StringIO()
    names = ["other0:1b", "nosuch:1b", "other1:1b", "other2:1b"]
    outcomes = pull_models(client, names, concurrency=4, retry=FAST, reporter=LinesReporter(out))
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert isinstance(outcomes[1].error, ModelNotFound)
    assert all(server.has_model(name) for name in ("other0:1b", "other1:1b", "other2:1b"))
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    for name in ("other0:1b", "other1:1b", "other2:1b"):
        assert any(line.startswith(f"{name}: success: ") for line in lines)
    assert any(line.startswith("nosuch:1b: failed: ModelNotFound") for line in lines)
