"""Start ``ollama serve`` when nothing answers on a loopback host, then wait for it.

:class:`Serve` is a readiness strategy; the report it returns carries a :class:`ServerHandle`
that stops the server it started (and is a context manager).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from ollama_ready._probe import FailureKind, Observation, Target, probe
from ollama_ready.config import is_loopback_url
from ollama_ready.errors import NotReadyError, OllamaReadyError
from ollama_ready.readiness import (
    DEFAULT_STRATEGY,
    PROBE_CONNECT_TIMEOUT,
    ReadyReport,
    Strategy,
)

if TYPE_CHECKING:
    from ollama_ready.client import OllamaClient
    from ollama_ready.clock import Deadline

__all__ = ["Serve", "ServerHandle"]

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
ANSWER_TIMEOUT = 1.0
LOG_TAIL_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024


class ServerHandle:
    """A server :class:`Serve` found or started; :meth:`stop` stops it if it was started.

    Use it as a context manager to stop the server on exit. A handle for a server that was
    already running (``started`` is false) stops nothing.
    """

    __slots__ = ("_lock", "_log_offset", "_process", "host", "log_file", "stop_timeout")

    def __init__(
        self,
        host: str,
        *,
        process: subprocess.Popen[bytes] | None = None,
        log_file: Path | None = None,
        log_offset: int = 0,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.host = host
        self.log_file = log_file
        self.stop_timeout = stop_timeout
        self._process = process
        self._log_offset = log_offset
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether :class:`Serve` started this server (rather than finding one running)."""
        return self._process is not None

    @property
    def pid(self) -> int | None:
        """The process id of the server that was started, if any."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the started server process is still running."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the started server, once it has exited."""
        return None if self._process is None else self._process.poll()

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop the started server and its process group; return its exit status.

        It gets SIGTERM first and SIGKILL after ``timeout`` seconds (default ``stop_timeout``).
        Stopping twice, or stopping a server that was not started here, does nothing.
        """
        process = self._process
        if process is None:
            return None
        with self._lock:
            if process.poll() is not None:
                # The leader is gone; its runners may not be.
                self._signal_group(signal.SIGTERM)
                return process.returncode
            logger.info("stopping ollama serve (pid %d) at %s", process.pid, self.host)
            self._signal_group(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                logger.warning("ollama serve (pid %d) ignored SIGTERM; killing it", process.pid)
                self._signal_group(_SIGKILL)
                process.wait()
        return process.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines this server wrote to its log ("" if none)."""
        if self.log_file is None:
            return ""
        try:
            with self.log_file.open("rb") as log:
                end = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset, end - _LOG_TAIL_BYTES))
                data = log.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self._process is None:
            return f"ServerHandle(host={self.host!r}, started=False)"
        state = "running" if self.running else f"exited {self._process.returncode}"
        return (
            f"ServerHandle(host={self.host!r}, pid={self._process.pid}, {state}, "
            f"log_file={str(self.log_file)!r})"
        )

    def _signal_group(self, signum: int) -> None:
        process = self._process
        assert process is not None
        if sys.platform == "win32":
            if signum == signal.SIGTERM:
                process.terminate()
            else:
                process.kill()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)  # start_new_session: the group id is the pid

    def _exited_error(self) -> NotReadyError | None:
        process = self._process
        if process is None or process.poll() is None:
            return None
        tail = self.log_tail()
        return NotReadyError(
            f"ollama serve (pid {process.pid}) exited with status {process.returncode} during "
            f"start-up{_format_tail(tail, self.log_file)}",
            last_failure=f"server process exited with status {process.returncode}",
            host=self.host,
            phase="serve",
            hint=_hint_for_log(tail),
        )


_SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)


@dataclass(frozen=True, slots=True, kw_only=True)
class Serve:
    """Start ``ollama serve`` if nothing answers on a loopback host, then wait with ``then``.

    The server runs in its own process group with its output in ``log_file`` (a new temporary
    file when ``None``), and an environment of this process's variables plus ``env``, with
    ``OLLAMA_HOST`` set to the address being waited on unless ``env`` sets it. If a server
    already answers, or the host is not loopback, nothing is started.

    The report's ``server`` is a :class:`ServerHandle`: stop the server with it, or use it as
    a context manager. If the binary is missing, or the server exits or is not ready in time,
    the error carries the last lines of its log and the server is stopped.

    Its ``then`` is the strategy that waits for the server, so chain further steps with
    ``Sequence(Serve(), ...)`` rather than a ``.then()`` call.
    """

    binary: str = "ollama"
    env: Mapping[str, str] | None = field(default=None, hash=False)
    then: Strategy = DEFAULT_STRATEGY
    log_file: str | os.PathLike[str] | None = None
    stop_timeout: float = STOP_TIMEOUT

    def __post_init__(self) -> None:
        if not self.binary:
            raise ValueError("binary must name the ollama executable")
        if not callable(self.then):
            raise TypeError(f"then must be a strategy, got {self.then!r}")
        if self.env is not None:
            object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        if not self.stop_timeout > 0:
            raise ValueError(f"stop_timeout must be positive, got {self.stop_timeout!r}")

    def __call__(self, client: OllamaClient, deadline: Deadline, /) -> ReadyReport:
        """Find or start the server, then wait for it with ``then``."""
        clock = deadline.clock
        started = clock.monotonic()
        host = client.base_url
        if _something_answers(client, deadline):
            logger.info("a server already answers at %s; not starting one", host)
            handle = ServerHandle(host)
            report = self.then(client, deadline)
        elif not is_loopback_url(host):
            logger.warning("nothing answers at %s, which is not loopback: not starting one", host)
            handle = ServerHandle(host)
            report = self.then(client, deadline)
        else:
            handle = self._spawn(host)
            report = self._wait_for(handle, client, deadline)
        return replace(
            report,
            attempts=report.attempts + 1,
            waited=clock.monotonic() - started,
            strategy=repr(self),
            server=handle,
        )

    def _wait_for(
        self, handle: ServerHandle, client: OllamaClient, deadline: Deadline
    ) -> ReadyReport:
        watched = cast("OllamaClient", _WatchedClient(client, handle))
        try:
            return self.then(watched, deadline)
        except NotReadyError as exc:
            handle.stop()
            if exc.phase == "serve":
                raise
            raise NotReadyError(
                f"{exc.message}{_format_tail(handle.log_tail(), handle.log_file)}",
                last_failure=exc.last_failure,
                host=exc.host,
                phase=exc.phase,
                hint=exc.hint,
            ) from exc
        except BaseException:
            handle.stop()
            raise

    def _spawn(self, host: str) -> ServerHandle:
        environment = self._child_environment(host)
        executable = shutil.which(self.binary, path=environment.get("PATH"))
        if executable is None:
            where = "" if os.sep in self.binary else " on PATH"
            raise NotReadyError(
                f"cannot start a server for {host}: the ollama binary {self.binary!r} was not "
                f"found{where}",
                last_failure="connection refused: nothing listens, and ollama is not installed",
                host=host,
                phase="serve",
                hint="install Ollama (https://ollama.com/download) or pass "
                "Serve(binary='/path/to/ollama')",
            )
        log_path, log = self._open_log(host)
        offset = log.tell()
        try:
            process = subprocess.Popen(
                [executable, "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                **_new_process_group(),
            )
        except OSError as exc:
            raise NotReadyError(
                f"cannot start {executable} serve for {host}: {exc}",
                last_failure=f"could not start the server: {exc}",
                host=host,
                phase="serve",
                hint="check that the ollama binary is executable and matches this machine",
            ) from exc
        finally:
            log.close()
        logger.info(
            "started %s serve (pid %d) for %s; log: %s", executable, process.pid, host, log_path
        )
        return ServerHandle(
            host,
            process=process,
            log_file=log_path,
            log_offset=offset,
            stop_timeout=self.stop_timeout,
        )

    def _child_environment(self, host: str) -> dict[str, str]:
        # The child inherits this process's environment, as any subprocess does.
        environment = dict(os.environ)
        if self.env is not None:
            environment.update(self.env)
            if "OLLAMA_HOST" in self.env:
                return environment
        environment["OLLAMA_HOST"] = urlsplit(host).netloc
        return environment

    def _open_log(self, host: str) -> tuple[Path, IO[bytes]]:
        try:
            if self.log_file is None:
                fd, name = tempfile.mkstemp(prefix="ollama-serve-", suffix=".log")
                return Path(name), os.fdopen(fd, "ab")
            path = Path(self.log_file)
            return path, path.open("ab")
        except OSError as exc:
            raise NotReadyError(
                f"cannot start a server for {host}: its log file cannot be opened: {exc}",
                last_failure=f"could not open the server log: {exc}",
                host=host,
                phase="serve",
                hint="pass Serve(log_file=...) a path in a writable directory",
            ) from exc


class _WatchedClient:
    """The client, failing fast once the server process it waits for has exited."""

    __slots__ = ("_client", "_handle")

    def __init__(self, client: OllamaClient, handle: ServerHandle) -> None:
        self._client = client
        self._handle = handle

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        return self._watch(attribute)

    def _watch(self, method: Callable[..., Any]) -> Callable[..., Any]:
        handle = self._handle

        @functools.wraps(method)
        def watched(*args: Any, **kwargs: Any) -> Any:
            exited = handle._exited_error()
            if exited is not None:
                raise exited
            try:
                return method(*args, **kwargs)
            except OllamaReadyError as exc:
                exited = handle._exited_error()
                if exited is not None:
                    raise exited from exc
                raise

        return watched


def _something_answers(client: OllamaClient, deadline: Deadline) -> bool:
    """Whether anything listens at the client's host: only a refused connection says no."""
    try:
        outcome = probe(
            client,
            Target(),
            deadline.sub(ANSWER_TIMEOUT),
            connect_timeout=PROBE_CONNECT_TIMEOUT,
            read_timeout=ANSWER_TIMEOUT,
        )
    except OllamaReadyError:
        return True  # it answered, with something no wait can fix: let ``then`` report it
    return isinstance(outcome, Observation) or outcome.kind is not FailureKind.REFUSED


def _new_process_group() -> dict[str, Any]:
    if sys.platform == "win32":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    return {"start_new_session": True}


def _format_tail(tail: str, log_file: Path | None) -> str:
    if not tail:
        return f" (its log {log_file} is empty)" if log_file is not None else ""
    indented = "\n".join(f"    {line}" for line in tail.splitlines())
    return f"; last lines of its log {log_file}:\n{indented}"


_LOG_HINTS = (
    ("address already in use", "another process holds the port: stop it or set OLLAMA_HOST"),
    ("permission denied", "the server cannot read or write a file it needs; check OLLAMA_MODELS"),
    ("no space left", "free disk space where OLLAMA_MODELS points"),
)


def _hint_for_log(tail: str) -> str:
    lowered = tail.lower()
    for needle, hint in _LOG_HINTS:
        if needle in lowered:
            return hint
    return "run `ollama serve` by hand to see why it stops"
