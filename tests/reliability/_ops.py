"""The operations of the fault matrix, each run against a FakeOllama and observed the same way.

An operation returns an :class:`Observed`: the outcome (``ok`` or the error class), the CLI's
exit code, the probes and pull retries the library reported, the requests the client sent (its
DEBUG request log, which also sees connections that were refused) and the wall time.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Protocol, TypeVar

from ollama_ready.client import OllamaClient
from ollama_ready.clock import Deadline
from ollama_ready.ensure import ensure_model
from ollama_ready.errors import OllamaReadyError
from ollama_ready.progress import ProgressSnapshot
from ollama_ready.pull import RetryPolicy, pull_model
from ollama_ready.readiness import Poll, check, wait_until_ready
from ollama_ready.testing import FakeModel, FakeOllama

_T = TypeVar("_T")

__all__ = [
    "BANDWIDTH",
    "MODEL",
    "MODEL_NAME",
    "OPERATIONS",
    "PULL",
    "RETRY",
    "SHOW",
    "STALL_TIMEOUT",
    "TAGS",
    "TICK",
    "VERSION",
    "CliRun",
    "Key",
    "Observed",
    "Operation",
    "Run",
    "client_log",
    "run_cli",
]

Key = tuple[str, str]

VERSION: Key = ("GET", "/api/version")
SHOW: Key = ("POST", "/api/show")
PULL: Key = ("POST", "/api/pull")
TAGS: Key = ("GET", "/api/tags")

MODEL_NAME = "tiny:1b"
MODEL = FakeModel.synthetic(MODEL_NAME, size=2_000_000, layers=2)
TICK = 0.005
BANDWIDTH = 20_000_000.0  # the 2 MB model in 0.1 s
STALL_TIMEOUT = 0.3
#: A fixed 0.1 s delay: long enough for FakeOllama to notice an abandoned stream (a re-issued
#: pull then resumes instead of joining the frozen download), short enough for a fast suite.
RETRY = RetryPolicy(max_tries=6, base=0.1, max_interval=0.1, jitter=None)
WAIT = Poll(interval=0.02, jitter=0.0, path="/api/version", method="GET")
CLI_GRACE = 20.0  # seconds a CLI run may take beyond its deadline before the test kills it

_LOG_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>\S+): "
    r"(?P<message>.*)$"
)
_RETRY_MESSAGE = re.compile(r"^pull of .+: attempt \d+ of \d+ failed \(.*; retrying in ")


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """The parameters of one cell: its deadline and the stall timeout of pulls."""

    deadline: float
    stall_timeout: float = STALL_TIMEOUT


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What one operation did, seen from outside."""

    outcome: str
    error: BaseException | None = None
    exit_code: int | None = None
    probes: int = 0
    pull_retries: int = 0
    client_requests: Counter[Key] = field(default_factory=Counter)
    wall: float = 0.0
    exit_wall: float | None = None
    """For a process: until it was gone, its interpreter's shutdown included."""
    stdout: str = ""
    stderr: str = ""

    @property
    def retries(self) -> int:
        """Probes beyond the first, plus the pull's retries."""
        return max(0, self.probes - 1) + self.pull_retries


class Operation(Protocol):
    """One column of the matrix."""

    name: str
    pulls: bool
    """Whether the operation pulls (stream, registry and bandwidth faults reach it)."""

    def prepare(self, server: FakeOllama) -> None:
        """Set up the server before the fault is armed."""
        ...

    def __call__(self, server: FakeOllama, run: Run, started: threading.Event) -> Observed:
        """Run the operation once and observe it; set ``started`` at its first request."""
        ...


# --- observation helpers -----------------------------------------------------------------------


class _ClientLog(logging.Handler):
    """Count the requests ``ollama_ready.client`` logs at DEBUG before sending each one."""

    def __init__(self, base_url: str, started: threading.Event | None) -> None:
        super().__init__(logging.DEBUG)
        self.base_url = base_url
        self.started = started
        self.requests: Counter[Key] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        method, _, url = record.getMessage().partition(" ")
        if url.startswith(self.base_url + "/"):
            self.requests[(method, url[len(self.base_url) :])] += 1
            if self.started is not None:
                self.started.set()


@contextmanager
def client_log(base_url: str, started: threading.Event | None = None) -> Iterator[Counter[Key]]:
    """Yield a live count of the requests the client sends to ``base_url``.

    ``started`` is set when the first request is about to be sent.
    """
    logger = logging.getLogger("ollama_ready.client")
    handler = _ClientLog(base_url, started)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.requests
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _Retries:
    """A progress reporter that counts the retries a pull announces."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        if snapshot.phase == "retrying":
            with self._lock:
                self.count += 1


def _outcome(error: BaseException | None) -> str:
    return "ok" if error is None else type(error).__name__


def _timed(call: Callable[[], _T]) -> tuple[_T | None, OllamaReadyError | None, float]:
    """Run ``call``; return its result, or the error of ours it raised, and its wall time."""
    begun = time.monotonic()
    try:
        result = call()
    except OllamaReadyError as exc:
        return None, exc, time.monotonic() - begun
    return result, None, time.monotonic() - begun


# --- the operations ------------------------------------------------------------------------------


class _Wait:
    name = "wait"
    pulls = False

    def prepare(self, server: FakeOllama) -> None:
        del server

    def __call__(self, server: FakeOllama, run: Run, started: threading.Event) -> Observed:
        with client_log(server.url, started) as sent:
            report, error, wall = _timed(
                lambda: wait_until_ready(server.url, strategy=WAIT, timeout=run.deadline)
            )
            if report is not None:
                assert report.attempts == sent[VERSION], (report, sent)
        return Observed(
            outcome=_outcome(error),
            error=error,
            probes=sent[VERSION],
            client_requests=Counter(sent),
            wall=wall,
        )


class _Check:
    name = "check"
    pulls = False

    def prepare(self, server: FakeOllama) -> None:
        server.add_model(MODEL)

    def __call__(self, server: FakeOllama, run: Run, started: threading.Event) -> Observed:
        with client_log(server.url, started) as sent:
            _, error, wall = _timed(
                lambda: check(server.url, level="model", models=(MODEL_NAME,), timeout=run.deadline)
            )
        return Observed(
            outcome=_outcome(error),
            error=error,
            probes=sent[VERSION],
            client_requests=Counter(sent),
            wall=wall,
        )


class _Pull:
    name = "pull"
    pulls = True

    def prepare(self, server: FakeOllama) -> None:
        del server

    def __call__(self, server: FakeOllama, run: Run, started: threading.Event) -> Observed:
        retries = _Retries()
        with client_log(server.url, started) as sent, OllamaClient(server.url) as client:
            result, error, wall = _timed(
                lambda: pull_model(
                    client,
                    MODEL_NAME,
                    retry=RETRY,
                    stall_timeout=run.stall_timeout,
                    deadline=Deadline(run.deadline),
                    reporter=retries,
                )
            )
            if result is not None:
                assert result.attempts == sent[PULL], (result, sent)
        return Observed(
            outcome=_outcome(error),
            error=error,
            pull_retries=retries.count,
            client_requests=Counter(sent),
            wall=wall,
        )


class _Ensure:
    name = "ensure"
    pulls = True

    def prepare(self, server: FakeOllama) -> None:
        del server

    def __call__(self, server: FakeOllama, run: Run, started: threading.Event) -> Observed:
        retries = _Retries()
        with client_log(server.url, started) as sent:
            _, error, wall = _timed(
                lambda: ensure_model(
                    MODEL_NAME,
                    host=server.url,
                    timeout=run.deadline,
                    stall_timeout=run.stall_timeout,
                    progress=retries,
                )
            )
        return Observed(
            outcome=_outcome(error),
            error=error,
            probes=sent[VERSION],
            pull_retries=retries.count,
            client_requests=Counter(sent),
            wall=wall,
        )


class _Cli:
    """``ollama-ready ensure --json -v`` in a subprocess; its ``-v`` log is the request log."""

    name = "CLI"
    pulls = True

    def prepare(self, server: FakeOllama) -> None:
        del server

    def __call__(self, server: FakeOllama, run: Run, started: threading.Event) -> Observed:
        argv = [
            *("ensure", MODEL_NAME, "--host", server.url, "--timeout", str(run.deadline)),
            *("--stall-timeout", str(run.stall_timeout), "--json", "--progress", "none", "-v"),
        ]

        def watch(line: str) -> None:
            if " DEBUG ollama_ready.client: " in line and server.url in line:
                started.set()

        done = run_cli(argv, timeout=run.deadline + CLI_GRACE, on_stderr=watch)
        sent: Counter[Key] = Counter()
        first: float | None = None
        retries = 0
        for line in done.stderr.splitlines():
            match = _LOG_LINE.match(line)
            if match is None:
                continue
            if match["logger"] == "ollama_ready.client" and match["level"] == "DEBUG":
                method, _, url = match["message"].partition(" ")
                if url.startswith(server.url + "/"):
                    sent[(method, url[len(server.url) :])] += 1
                    first = first if first is not None else _epoch(match["stamp"])
            elif match["logger"] == "ollama_ready.pull" and _RETRY_MESSAGE.match(match["message"]):
                retries += 1
        assert first is not None, f"the CLI logged no request:\n{done.stderr}"
        return Observed(
            outcome=_cli_outcome(done),
            exit_code=done.returncode,
            probes=sent[VERSION],
            pull_retries=retries,
            client_requests=sent,
            wall=done.reported - first,
            exit_wall=done.ended - first,
            stdout=done.stdout,
            stderr=done.stderr,
        )


def _cli_outcome(done: CliRun) -> str:
    """``ok``, or the error type the CLI reports in its ``--json`` error object."""
    if done.returncode == 0:
        return "ok"
    try:
        reported = json.loads(done.stdout)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return f"exit {done.returncode} without a JSON error"
    return str(reported)


@dataclass(frozen=True, slots=True, kw_only=True)
class CliRun:
    """A finished CLI process: exit status, output, and when (epoch seconds) it ended.

    ``reported`` is when its last line of output arrived (the outcome is known then);
    ``ended`` when the process was gone (after the interpreter's own shutdown).
    """

    returncode: int
    stdout: str
    stderr: str
    reported: float
    ended: float
    duration: float
    max_rss_kib: int
    """The peak resident memory of the process (its ``VmHWM``, sampled every 5 ms)."""


def run_cli(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    on_stderr: Callable[[str], None] | None = None,
) -> CliRun:
    """Run ``python -m ollama_ready *argv``; kill it and fail if it outlives ``timeout``.

    ``on_stderr`` sees each line of stderr as it is written.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "ollama_ready", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    out: list[tuple[float, str]] = []
    err: list[tuple[float, str]] = []
    readers = [
        threading.Thread(target=_drain, args=(process.stdout, out, None), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, err, on_stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    peak = 0
    until = time.monotonic() + timeout
    while process.poll() is None:
        peak = max(peak, _peak_rss_kib(process.pid))
        if time.monotonic() > until:
            process.kill()
            process.wait()
            for reader in readers:
                reader.join(5)
            raise AssertionError(
                f"the CLI hung: still running after {timeout:g} s\n{_text(err)[-4000:]}"
            )
        time.sleep(0.005)
    ended = time.time()
    for reader in readers:
        reader.join(5)
    return CliRun(
        returncode=process.returncode,
        stdout=_text(out),
        stderr=_text(err),
        reported=max((at for at, _ in out + err), default=ended),
        ended=ended,
        duration=time.monotonic() - started,
        max_rss_kib=peak,
    )


def _peak_rss_kib(pid: int) -> int:
    """Return ``VmHWM`` of a running process: the peak of its own address space since exec.

    (``ru_maxrss`` would also count the parent's pages the child had before ``exec``.)
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _drain(
    stream: IO[str], into: list[tuple[float, str]], on_line: Callable[[str], None] | None
) -> None:
    with stream:
        for line in stream:
            into.append((time.time(), line))
            if on_line is not None:
                on_line(line)


def _text(lines: list[tuple[float, str]]) -> str:
    return "".join(line for _, line in lines)


def _epoch(stamp: str) -> float:
    # logging's asctime: local time with milliseconds, from time.time().
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


OPERATIONS: tuple[Operation, ...] = (_Wait(), _Check(), _Pull(), _Ensure(), _Cli())
