"""The installed ``ollama-ready`` console script as a subprocess against FakeOllama.

These exercise what only a real process shows: exit statuses, output to pipes (never a
terminal), and SIGINT/SIGTERM in each phase of ``ensure``.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from ollama_ready.names import ModelName
from ollama_ready.testing import FakeOllama
from ollama_ready.testing._ollama_catalogue import default_registry

SCRIPT = Path(sys.executable).with_name("ollama-ready")
PRESENT = "llama3.2:1b"
PULLABLE = "qwen2.5:0.5b"
EXIT_WITHIN = 1.0  # seconds from the signal to the end of the process (issue 7)

# Python keeps an inherited SIG_IGN for SIGINT (a background job's), and so does the command;
# this trampoline gives the command a default SIGINT whatever the test runner's is.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: install the package first (pip install -e .)")


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=[PRESENT], tick=0.02) as fake:
        yield fake


class Process:
    """The command running with its stdout and stderr read as they come."""

    def __init__(self, *args: str, default_sigint: bool = False) -> None:
        command = [str(SCRIPT), *args]
        if default_sigint:
            command = [sys.executable, "-c", _DEFAULT_SIGINT, *command]
        self.popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=_drain, args=(self.popen.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(self.popen.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def wait_for_stderr(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if time.monotonic() > deadline or self.popen.poll() is not None:
                raise AssertionError(f"{text!r} never appeared on stderr:\n{self.stderr}")
            time.sleep(0.01)

    def finish(self, timeout: float = 30.0) -> int:
        try:
            code = self.popen.wait(timeout)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
        for reader in self._readers:
            reader.join(5)
        return code

    def interrupt(self, signum: int) -> tuple[int, float]:
        """Send ``signum``; return the exit status and the seconds the process took to end."""
        sent = time.monotonic()
        self.popen.send_signal(signum)
        code = self.finish(timeout=10)
        return code, time.monotonic() - sent

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)


def _drain(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)


def run(*args: str) -> tuple[int, str, str]:
    process = Process(*args)
    code = process.finish()
    return code, process.stdout, process.stderr


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _weights_digest(name: str) -> str:
    (model,) = (m for m in default_registry() if ModelName.parse(name).matches(m.name))
    return model.blobs[0].digest


def _download_stops(server: FakeOllama, digest: str) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        before = server.partial_bytes(digest)
        time.sleep(0.2)
        if 0 < before == server.partial_bytes(digest):
            return True
    return False


# --------------------------------------------------------------------------- output and codes


def test_cached_ensure(server: FakeOllama) -> None:
    code, out, err = run("ensure", PRESENT, "--host", server.url)
    assert code == 0
    assert out.startswith(f"ready: {PRESENT} on {server.url}")
    assert err == f"{PRESENT}: already present, not pulled\n"


def test_progress_to_a_pipe_is_plain_lines(server: FakeOllama) -> None:
    server.set_bandwidth(2_000_000_000)
    code, out, err = run("ensure", PULLABLE, "--host", server.url)  # --progress auto
    assert code == 0
    assert f"ready: {PULLABLE}" in out
    lines = err.splitlines()
    assert lines[0] == f"{PULLABLE}: pulling manifest"
    assert any(line.startswith(f"{PULLABLE}: pulling ") and "%" in line for line in lines)
    assert lines[-1].startswith(f"{PULLABLE}: success")
    assert "\x1b" not in err
    assert "\r" not in err


def test_json_on_stdout_stays_parseable_with_progress_on_stderr(server: FakeOllama) -> None:
    server.set_bandwidth(2_000_000_000)
    code, out, err = run("ensure", PULLABLE, "--host", server.url, "--progress", "lines", "--json")
    assert code == 0
    assert json.loads(out)[0]["pulled"] is True
    assert f"{PULLABLE}: success" in err


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("ensure", "nosuch:model"), 4),
        (("ensure", "--require-gpu", PRESENT), 7),
        (("check", "--level", "loaded", "--model", PRESENT), 3),
        (("ensure", "--timeout", "never", PRESENT), 2),
    ],
)
def test_exit_status(server: FakeOllama, args: tuple[str, ...], code: int) -> None:
    status, out, err = run(*args, "--host", server.url)
    assert status == code
    assert out == ""
    assert "Traceback" not in err
    assert "error: " in err


def test_a_dead_server_exits_3() -> None:
    code, _, err = run("check", "--host", _dead_url())
    assert code == 3
    assert err.startswith("error: ")
    assert "\nhint: " in err


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ollama_ready", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("ollama-ready ")


def test_a_reader_that_goes_away_ends_the_command_quietly(server: FakeOllama) -> None:
    popen = subprocess.Popen(
        [str(SCRIPT), "list", "--host", server.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert popen.stdout is not None
    popen.stdout.close()  # as `ollama-ready list | head -0` does
    _, err = popen.communicate(timeout=30)
    assert popen.returncode == 1
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("signum", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_signal_during_a_pull_exits_at_once_and_the_download_stops(
    server: FakeOllama, signum: int, expected: int
) -> None:
    server.set_bandwidth(20_000_000)  # 20 s for the weights: only the signal ends the pull
    process = Process(
        "ensure", PULLABLE, "--host", server.url, "--progress", "lines", default_sigint=True
    )
    process.wait_for_stderr(f"{PULLABLE}: pulling {_weights_digest(PULLABLE)[7:19]}")

    code, took = process.interrupt(signum)

    assert code == expected
    assert took < EXIT_WITHIN
    assert process.stdout == ""
    err = process.stderr
    assert f"interrupted ({signal.Signals(signum).name})" in err
    assert f"the pull of {PULLABLE} was " in err
    assert "resumes" in err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert _download_stops(server, _weights_digest(PULLABLE))


@pytest.mark.parametrize(
    ("signum", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_signal_while_waiting_for_a_hung_server(signum: int, expected: int) -> None:
    with FakeOllama(models=[PRESENT]) as hung:
        hung.hang_connections(30)  # port open, nothing answered: every probe blocks
        process = Process("ensure", PRESENT, "--host", hung.url, "-v", default_sigint=True)
        process.wait_for_stderr("GET " + hung.url + "/api/version")
        time.sleep(0.1)

        code, took = process.interrupt(signum)

    assert code == expected
    assert took < EXIT_WITHIN
    assert "no pull or load of ours was in progress" in process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.parametrize(
    ("signum", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_signal_during_a_load(signum: int, expected: int) -> None:
    with FakeOllama(models=[PRESENT], load_seconds=30) as slow:
        process = Process("ensure", PRESENT, "--host", slow.url, "--load", default_sigint=True)
        deadline = time.monotonic() + 10
        while slow.count("POST", "/api/generate") == 0:
            assert time.monotonic() < deadline, process.stderr
            time.sleep(0.01)

        code, took = process.interrupt(signum)

    assert code == expected
    assert took < EXIT_WITHIN
    assert "a model load the server already started completes there" in process.stderr
    assert "Traceback" not in process.stderr
