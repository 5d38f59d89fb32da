"""Serve: start ``ollama serve`` (a fake executable running FakeOllama) when nothing answers."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from ollama_ready.client import OllamaClient, Timeout
from ollama_ready.clock import Deadline
from ollama_ready.errors import NotReadyError, OllamaConnectionError
from ollama_ready.readiness import (
    Poll,
    ReadyLevel,
    ReadyReport,
    Serve,
    ServerHandle,
    Sleep,
    wait_until_ready,
)
from ollama_ready.testing import FakeClock, FakeOllama

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

FIXTURE = Path(__file__).parent / "fixtures" / "fake_ollama.py"
FAST_POLL = Poll(interval=0.02)


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    """An executable named ``ollama`` whose ``serve`` runs FakeOllama."""
    directory = tmp_path / "bin"
    directory.mkdir()
    binary = directory / "ollama"
    binary.write_text(f"#!{sys.executable}\n{FIXTURE.read_text()}")
    binary.chmod(0o755)
    return binary


@pytest.fixture
def port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def client(port: int) -> Iterator[OllamaClient]:
    with OllamaClient(f"http://127.0.0.1:{port}") as client:
        yield client


def _refused(client: OllamaClient) -> bool:
    try:
        client.ping(timeout=1)
    except OllamaConnectionError as exc:
        return exc.kind == "refused"
    return False


def _exit_status(handle: ServerHandle) -> int | None:
    # A function, so that the type checker does not carry "running" over from before stop().
    return None if handle.running else handle.returncode


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # an orphan's zombie waits for init, but it is dead


def _wait_for_line(path: Path, pattern: str, timeout: float = 10) -> re.Match[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = re.search(pattern, path.read_text() if path.exists() else "")
        if found is not None:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{pattern!r} never appeared in {path}")


def test_serve_starts_the_server_and_stops_it(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    serve = Serve(binary=str(fake_binary), then=FAST_POLL, log_file=log)
    report = serve(client, Deadline(30))
    assert report.server is not None
    with report.server as server:
        assert server.started
        assert server.running
        assert server.log_file == log
        assert report.level is ReadyLevel.SERVER
        assert report.attempts >= 2  # the first look, then the wait
        assert report.last_failure is not None
        assert report.last_failure.kind.name == "REFUSED"
        assert client.version() == "0.12.11"
        assert "listening on" in server.log_tail()
        assert f"pid {server.pid}" in log.read_text()
    assert _exit_status(server) == 0  # FakeOllama's main stops cleanly on SIGTERM
    assert server.stop() == 0  # stopping twice is harmless
    assert _refused(client)


def test_serve_finds_the_binary_on_the_childs_path(
    fake_binary: Path, client: OllamaClient, port: int
) -> None:
    path = f"{fake_binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    serve = Serve(env={"PATH": path}, then=FAST_POLL)
    report = wait_until_ready(f"127.0.0.1:{port}", strategy=serve, timeout=30)
    assert report.server is not None
    with report.server as server:
        assert server.started
        assert server.log_file is not None
        assert server.log_file.name.startswith("ollama-serve-")
    server.log_file.unlink()


def test_serve_waits_through_the_start_up_phases(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    env = {"FAKE_OLLAMA_DELAY": "0.4", "FAKE_OLLAMA_READY_AFTER": "0.6"}
    serve = Serve(binary=str(fake_binary), env=env, then=FAST_POLL, log_file=tmp_path / "x.log")
    started = time.monotonic()
    report = serve(client, Deadline(30))
    assert report.server is not None
    with report.server:
        assert time.monotonic() - started >= 1.0
        assert report.waited >= 1.0
        assert report.level is ReadyLevel.SERVER


def test_serve_starts_nothing_when_a_server_answers(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ollama"
    with FakeOllama() as fake, OllamaClient(fake.url) as client:
        report = Serve(binary=str(missing), then=FAST_POLL)(client, Deadline(10))
        assert report.server is not None
        assert not report.server.started
        assert report.server.stop() is None
        assert report.level is ReadyLevel.SERVER
        assert fake.count("HEAD", "/") == 2  # the first look, then the wait


def test_a_missing_binary_is_a_clear_error(client: OllamaClient, tmp_path: Path) -> None:
    with pytest.raises(NotReadyError, match=r"binary '.*no-such-ollama' was not found$") as caught:
        Serve(binary=str(tmp_path / "no-such-ollama"))(client, Deadline(10))
    assert caught.value.phase == "serve"
    assert caught.value.hint is not None
    assert "install Ollama" in caught.value.hint

    serve = Serve(binary="no-such-ollama", env={"PATH": str(tmp_path)})
    with pytest.raises(NotReadyError, match="'no-such-ollama' was not found on PATH"):
        serve(client, Deadline(10))


def test_a_log_file_that_cannot_be_opened_is_a_clear_error(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    serve = Serve(binary=str(fake_binary), log_file=tmp_path / "missing-dir" / "serve.log")
    with pytest.raises(NotReadyError, match="log file cannot be opened") as caught:
        serve(client, Deadline(10))
    assert caught.value.phase == "serve"
    assert _refused(client)  # nothing was started


def test_a_binary_that_cannot_run_is_a_clear_error(client: OllamaClient, tmp_path: Path) -> None:
    binary = tmp_path / "ollama"
    binary.write_bytes(b"\x7fELF-not-really")
    binary.chmod(0o755)
    with pytest.raises(NotReadyError, match=r"cannot start .*ollama serve") as caught:
        Serve(binary=str(binary))(client, Deadline(10))
    assert caught.value.phase == "serve"


def test_a_server_that_dies_during_start_up_fails_fast_with_its_log(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    log.write_text("a line from an earlier run\n")
    serve = Serve(binary=str(fake_binary), env={"FAKE_OLLAMA_EXIT": "3"}, log_file=log)
    started = time.monotonic()
    with pytest.raises(NotReadyError, match="exited with status 3 during start-up") as caught:
        serve(client, Deadline(60))
    assert time.monotonic() - started < 15  # noticed when it exited, not at the deadline
    message = str(caught.value)
    assert "bind: address already in use" in message
    assert "earlier run" not in message  # only this run's lines
    assert str(log) in message
    assert caught.value.phase == "serve"
    assert caught.value.hint is not None
    assert "holds the port" in caught.value.hint
    assert "earlier run" in log.read_text()  # appended, not truncated


def test_not_ready_in_time_stops_the_server_and_shows_its_log(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    serve = Serve(
        binary=str(fake_binary), env={"FAKE_OLLAMA_READY_AFTER": "60"}, then=FAST_POLL, log_file=log
    )
    with pytest.raises(NotReadyError, match="connected but no answer") as caught:
        serve(client, Deadline(3))
    assert "last lines of its log" in str(caught.value)
    assert "listening on" in str(caught.value)
    pid = int(_wait_for_line(log, r"pid (\d+) serving")[1])
    assert _gone(pid)


def test_stop_ends_the_whole_process_group(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    serve = Serve(
        binary=str(fake_binary), env={"FAKE_OLLAMA_RUNNER": "1"}, then=FAST_POLL, log_file=log
    )
    report = serve(client, Deadline(30))
    assert report.server is not None
    runner = int(_wait_for_line(log, r"runner pid (\d+)")[1])
    assert not _gone(runner)
    report.server.stop()
    end = time.monotonic() + 5
    while not _gone(runner) and time.monotonic() < end:
        time.sleep(0.02)
    assert _gone(runner)


def test_a_server_that_ignores_sigterm_is_killed(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    serve = Serve(
        binary=str(fake_binary),
        env={"FAKE_OLLAMA_IGNORE_TERM": "1"},
        then=FAST_POLL,
        log_file=tmp_path / "serve.log",
        stop_timeout=0.5,
    )
    report = serve(client, Deadline(30))
    assert report.server is not None
    assert report.server.stop() == -signal.SIGKILL
    assert _refused(client)


def test_an_interrupted_wait_stops_the_server(
    fake_binary: Path, client: OllamaClient, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"

    def interrupted(client: OllamaClient, deadline: Deadline) -> ReadyReport:
        _wait_for_line(log, r"pid \d+ serving")
        raise KeyboardInterrupt

    serve = Serve(binary=str(fake_binary), then=interrupted, log_file=log)
    with pytest.raises(KeyboardInterrupt):
        serve(client, Deadline(30))
    pid = int(_wait_for_line(log, r"pid (\d+) serving")[1])
    assert _gone(pid)


# --- decisions, without processes ------------------------------------------------------------


class _RefusingClient:
    """Nothing listens at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.pings = 0

    def ping(self, *, timeout: Timeout | None = None, path: str = "/", method: str = "HEAD") -> int:
        self.pings += 1
        raise OllamaConnectionError(f"connection refused by {self.base_url}", kind="refused")


def test_nothing_is_started_for_a_remote_host(tmp_path: Path) -> None:
    remote = _RefusingClient("http://gpu-box.internal:11434")
    clock = FakeClock()
    serve = Serve(binary=str(tmp_path / "missing"), then=Sleep(1, verify=False))
    report = serve(cast(OllamaClient, remote), Deadline(10, clock=clock))
    assert report.server is not None
    assert not report.server.started
    assert remote.pings == 1  # one look; then the inner strategy, no missing-binary error
    assert clock.sleeps == [1]
    assert report.level is None


def test_a_handle_for_a_found_server_stops_nothing() -> None:
    handle = ServerHandle("http://127.0.0.1:11434")
    with handle:
        assert not handle.started
        assert handle.pid is None
        assert not handle.running
    assert handle.returncode is None
    assert handle.log_tail() == ""
    assert repr(handle) == "ServerHandle(host='http://127.0.0.1:11434', started=False)"


def test_serve_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="binary"):
        Serve(binary="")
    with pytest.raises(ValueError, match="stop_timeout"):
        Serve(stop_timeout=0)
    with pytest.raises(TypeError, match="then must be a strategy"):
        Serve(then=3)  # type: ignore[arg-type]


def test_serve_is_a_frozen_value() -> None:
    env = {"A": "1"}
    serve = Serve(env=env)
    env["A"] = "2"
    assert serve.env == {"A": "1"}
    assert serve == Serve(env={"A": "1"})
    assert hash(serve) == hash(Serve(env={"B": "2"}))
