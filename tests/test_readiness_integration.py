"""Readiness strategies against FakeOllama's start-up faults, in real time on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ollama_ready.client import OllamaClient
from ollama_ready.clock import Deadline
from ollama_ready.errors import (
    ConfigError,
    HostNotAllowed,
    ModelNotPresent,
    NotReadyError,
    PlacementError,
    ServerTooOld,
)
from ollama_ready.readiness import (
    FailureKind,
    Healthcheck,
    Poll,
    ReadyLevel,
    Sleep,
    check,
    wait_until_ready,
)
from ollama_ready.testing import FakeOllama

# Loose bounds: the machine running the tests may be busy. The benchmark measures the lag.
SLACK = 0.5


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.2:1b"]) as server:
        yield server


def test_refused_for_a_while(fake: FakeOllama) -> None:
    fake.refuse_connections(1.5)
    started = time.monotonic()
    report = wait_until_ready(fake.url, timeout=10)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 1.5 + SLACK
    assert report.level is ReadyLevel.SERVER
    assert report.last_failure is not None
    assert report.last_failure.kind is FailureKind.REFUSED
    assert 1.4 * 15 <= report.attempts <= 1.5 * 25 + 2  # fast, but no hammering
    assert fake.count("HEAD", "/") == 1  # refused probes never reached HTTP


def test_bound_but_not_serving(fake: FakeOllama) -> None:
    fake.hang_connections(2)
    started = time.monotonic()
    report = wait_until_ready(fake.url, timeout=10)
    elapsed = time.monotonic() - started
    assert 1.95 <= elapsed < 2 + SLACK
    assert report.attempts == 1  # one connected probe simply waited for its answer
    assert report.last_failure is None
    assert fake.count("HEAD", "/") == 1


def test_busy_three_times(fake: FakeOllama) -> None:
    fake.fail_next(3, status=503)
    report = wait_until_ready(fake.url, timeout=10)
    assert report.attempts == 4
    assert report.last_failure is not None
    assert report.last_failure.kind is FailureKind.HTTP_STATUS
    assert report.last_failure.status == 503
    assert "is busy (HTTP 503 to HEAD /)" in report.last_failure.detail
    assert fake.count("HEAD", "/") == 4


def test_never_comes_up_refused(fake: FakeOllama) -> None:
    fake.refuse_connections(60)
    started = time.monotonic()
    with pytest.raises(NotReadyError) as caught:
        wait_until_ready(fake.url, timeout=1)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + SLACK  # at the deadline, not before, not much after
    error = caught.value
    assert error.host == fake.url
    assert error.last_failure is not None
    assert error.last_failure.startswith("connection refused")
    assert f"{fake.url} not ready after 1.0" in str(error)


def test_never_comes_up_bound(fake: FakeOllama) -> None:
    fake.hang_connections(60)
    started = time.monotonic()
    with pytest.raises(NotReadyError) as caught:
        wait_until_ready(fake.url, timeout=1)
    assert 1.0 <= time.monotonic() - started < 1.0 + SLACK
    assert caught.value.last_failure is not None
    assert caught.value.last_failure.startswith("connected but no answer")


def test_version_too_old() -> None:
    check = Healthcheck(version=">=0.11", interval=0.05, retries=2)
    with FakeOllama(version="0.5.7") as old, pytest.raises(NotReadyError) as caught:
        wait_until_ready(old.url, strategy=check, timeout=10)
    assert caught.value.last_failure == (
        "wrong version: server version 0.5.7 does not satisfy >=0.11"
    )
    assert "unhealthy after 2 consecutive failed checks" in str(caught.value)
    with FakeOllama(version="0.12.11") as new:
        assert wait_until_ready(new.url, strategy=check, timeout=10).version == "0.12.11"


def test_polling_the_version_endpoint_reports_the_version(fake: FakeOllama) -> None:
    report = wait_until_ready(fake.url, strategy="poll:path=/api/version,method=GET")
    assert report.version == "0.12.11"
    assert fake.count("GET", "/api/version") == 1


def test_model_levels_against_the_fake_server() -> None:
    with (
        FakeOllama(models=["llama3.2:1b"], vram_fraction=0.5) as server,
        OllamaClient(server.url) as client,
    ):
        present = Healthcheck(model="llama3.2:1b", interval=0.05, retries=1)
        assert present(client, Deadline(10)).level is ReadyLevel.MODEL_PRESENT
        missing = Healthcheck(model="qwen2.5:0.5b", interval=0.05, retries=1)
        with pytest.raises(NotReadyError, match="model missing"):
            missing(client, Deadline(10))
        on_gpu = Healthcheck(
            level=ReadyLevel.MODEL_ON_GPU, model="llama3.2:1b", interval=0.05, retries=1
        )
        with pytest.raises(NotReadyError, match="model not loaded"):
            on_gpu(client, Deadline(10))
        client.load("llama3.2:1b")
        with pytest.raises(NotReadyError, match=r"model not on GPU: .*\(50% GPU\)"):
            on_gpu(client, Deadline(10))
        server.vram_fraction = 1.0
        client.load("llama3.2:1b")
        assert on_gpu(client, Deadline(10)).level is ReadyLevel.MODEL_ON_GPU


def test_sleep_that_guessed_too_short(fake: FakeOllama) -> None:
    fake.refuse_connections(1.0)
    with pytest.raises(NotReadyError, match=r"still not ready after sleeping 0\.3 s"):
        wait_until_ready(fake.url, strategy=Sleep(0.3), timeout=10)


def test_a_sequence_takes_one_deadline_in_real_time(fake: FakeOllama) -> None:
    fake.refuse_connections(10)
    started = time.monotonic()
    with pytest.raises(NotReadyError):
        wait_until_ready(fake.url, strategy=Sleep(0.5, verify=False).then(Poll()), timeout=1)
    assert 1.0 <= time.monotonic() - started < 1.0 + SLACK  # not 0.5 + 1


def test_the_host_header_guard_fails_fast() -> None:
    with FakeOllama(check_host=True) as guarded:
        client = OllamaClient(guarded.url, headers={"Host": "evil.example"})
        started = time.monotonic()
        with client, pytest.raises(NotReadyError) as caught:
            Poll()(client, Deadline(30))
    assert time.monotonic() - started < 5
    assert isinstance(caught.value.__cause__, HostNotAllowed)
    assert caught.value.last_failure is not None
    assert caught.value.last_failure.startswith("HTTP status: HTTP 403")


def test_cancelling_the_deadline_stops_a_poll(fake: FakeOllama) -> None:
    fake.refuse_connections(60)
    deadline = Deadline(60)
    timer = threading.Timer(0.3, deadline.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with OllamaClient(fake.url) as client, pytest.raises(NotReadyError):
            Poll(interval=0.5, jitter=0)(client, deadline)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 0.3 + SLACK


# --- check: one probe, the error of its kind --------------------------------------------------


def test_check_the_server(fake: FakeOllama) -> None:
    report = check(fake.url)
    assert report.level is ReadyLevel.SERVER
    assert report.attempts == 1
    assert report.strategy == "check"
    assert check(fake.url, level="version").version == "0.12.11"


def test_check_does_not_wait(fake: FakeOllama) -> None:
    fake.refuse_connections(60)
    started = time.monotonic()
    with pytest.raises(NotReadyError, match="connection refused") as caught:
        check(fake.url, timeout=30)
    assert time.monotonic() - started < SLACK
    assert caught.value.phase == "check"


def test_check_raises_the_error_of_each_kind(
    fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ServerTooOld, match=r"does not satisfy >=0\.13"):
        check(fake.url, min_server_version=">=0.13")
    with pytest.raises(ModelNotPresent, match=r"qwen2\.5:0\.5b") as missing:
        check(fake.url, level="model", models=["qwen2.5:0.5b"])
    assert missing.value.model == "qwen2.5:0.5b"
    with pytest.raises(NotReadyError, match="model not loaded"):
        check(fake.url, level="loaded", models=["llama3.2:1b"])
    with OllamaClient(fake.url) as client:
        client.load("llama3.2:1b")
    with pytest.raises(PlacementError, match="0% GPU"):
        check(fake.url, level=ReadyLevel.MODEL_ON_GPU, models=["llama3.2:1b"])
    assert check(fake.url, level="loaded", models=["llama3.2:1b"]).level is ReadyLevel.MODEL_LOADED
    monkeypatch.setenv("OLLAMA_READY_MODELS", "llama3.2:1b")
    assert check(fake.url, level="model").level is ReadyLevel.MODEL_PRESENT


def test_check_needs_a_model_for_model_levels(fake: FakeOllama) -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        check(fake.url, level="model")
    with pytest.raises(ConfigError, match="unknown readiness level"):
        check(fake.url, level="ready")
    with pytest.raises(ConfigError, match="'newest'"):
        check(fake.url, min_server_version="newest")
    assert fake.count() == 0  # all found before any request


def test_wait_until_ready_ends_with_an_enclosing_deadline(fake: FakeOllama) -> None:
    fake.refuse_connections(60)
    enclosing = Deadline(60)
    threading.Timer(0.3, enclosing.cancel).start()
    started = time.monotonic()
    with pytest.raises(NotReadyError):
        wait_until_ready(fake.url, timeout=30, deadline=enclosing)
    assert time.monotonic() - started < 0.3 + SLACK
