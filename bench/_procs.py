"""Processes the scenarios start: a FakeOllama in its own process, clients, timed commands."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from bench._context import REPO_ROOT, clean_environment

__all__ = ["BenchError", "ServerProcess", "run_json", "time_command"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class BenchError(RuntimeError):
    """A scenario could not measure what it was asked to."""


class ServerProcess:
    """A FakeOllama served by ``python -m bench._server`` in a child process.

    Use it as a context manager; :attr:`url` is known once it is entered.
    """

    def __init__(self, spec: Mapping[str, Any], *, python: str = sys.executable) -> None:
        self._command = [python, "-m", "bench._server", json.dumps(dict(spec))]
        self._process: subprocess.Popen[str] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        if self._url is None:
            raise BenchError("the server process is not running")
        return self._url

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=clean_environment(),
        )
        try:
            self._url = str(self._reply()["url"])
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def requests(self) -> list[tuple[str, str]]:
        """Return the server's request log as ``(method, path)`` pairs, oldest first."""
        return [(str(m), str(p)) for m, p in self._ask("requests")["requests"]]

    def clear_requests(self) -> None:
        """Make the server forget its request log."""
        self._ask("clear")

    def _ask(self, command: str) -> dict[str, Any]:
        process = self._running()
        stdin = process.stdin
        if stdin is None:
            raise BenchError("the server process has no stdin")
        stdin.write(command + "\n")
        stdin.flush()
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        stdout = self._running().stdout
        if stdout is None:
            raise BenchError("the server process has no stdout")
        line = _read_line(stdout, _START_TIMEOUT)
        if not line:
            raise BenchError(f"the server process ended (exit status {self._running().poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise BenchError(f"the server process says: {reply['error']}")
        return reply

    def _running(self) -> subprocess.Popen[str]:
        if self._process is None:
            raise BenchError("the server process was not started")
        return self._process

    def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        self._url = None
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _read_line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise BenchError(f"no answer from the server process within {timeout:g} s")
    return stream.readline()


def run_json(
    command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run ``command`` and return the JSON object on the last line of its output.

    Raises:
        BenchError: it failed, timed out, or printed no JSON object last.
    """
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else clean_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{_show(command)} did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        raise BenchError(
            f"{_show(command)} exited with status {done.returncode}: {_tail(done.stderr)}"
        )
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise BenchError(f"{_show(command)} printed no JSON result: {_tail(done.stdout)}")
    return result


def time_command(
    command: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> float:
    """Run ``command`` with its output discarded and return its wall time in seconds.

    Raises:
        BenchError: it failed or timed out.
    """
    started = time.perf_counter()
    try:
        done = subprocess.run(
            list(command),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else clean_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{_show(command)} did not finish within {timeout:g} s") from exc
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(
            f"{_show(command)} exited with status {done.returncode}: {_tail(done.stderr)}"
        )
    return elapsed


def _show(command: Sequence[str]) -> str:
    text = " ".join(command)
    return text if len(text) <= 120 else text[:117] + "..."


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"
