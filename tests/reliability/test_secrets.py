"""Credentials never show: a canary API key and header value, searched for in everything we emit.

``OLLAMA_API_KEY`` and ``OLLAMA_READY_HEADERS`` carry canary tokens. Every surface where text
leaves the library is captured whole (logs at DEBUG including urllib3's, reprs, results, error
messages with their tracebacks, the CLI's stdout and stderr with ``--json`` and ``-vv``, the
doctor report in every format) and searched for both tokens. Each test also asserts that the
server received both credentials, so a capture that missed the traffic cannot pass.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from ollama_ready.client import OllamaClient
from ollama_ready.config import Settings
from ollama_ready.doctor import doctor
from ollama_ready.ensure import ensure_model
from ollama_ready.errors import ConfigError, OllamaReadyError
from ollama_ready.progress import make_reporter
from ollama_ready.pull import pull_model
from ollama_ready.readiness import check, wait_until_ready
from ollama_ready.testing import FakeModel, FakeOllama

from ._ops import MODEL, MODEL_NAME, RETRY, TICK, run_cli
from .conftest import Recorder

pytestmark = pytest.mark.timeout(10)  # tests that take longer set their own

API_KEY = "canary-api-key-7c1d0e52b9"
HEADER = "canary-header-3fa86b04d1"
CANARIES = (API_KEY, HEADER)
ENVIRON = {
    "OLLAMA_API_KEY": API_KEY,
    "OLLAMA_READY_HEADERS": f"X-Api-Token: {HEADER}; X-Trace: visible",
}
OTHER = FakeModel.synthetic("other:1b", size=1_000_000, layers=1)


@dataclass
class Capture:
    """Named pieces of emitted text, searched for the canaries at the end."""

    texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, surface: str, *texts: str) -> None:
        """Keep ``texts`` under ``surface``."""
        self.texts.setdefault(surface, []).extend(texts)

    def error(self, surface: str, call: Callable[[], object]) -> OllamaReadyError:
        """Run ``call``, which must fail, and keep everything its error shows."""
        with pytest.raises(OllamaReadyError) as caught:
            call()
        error = caught.value
        self.add(
            surface,
            str(error),
            repr(error),
            error.describe(),
            "".join(traceback.format_exception(error)),
            repr(vars(error)),
        )
        return error

    def verify(self, reliability: Recorder | None) -> None:
        """Record each surface (if asked); fail naming every surface where a canary showed."""
        leaks = []
        for surface, texts in self.texts.items():
            whole = "\n".join(texts)
            hits = sum(whole.count(canary) for canary in CANARIES)
            if reliability is not None:
                reliability.add("secret", surface=surface, searched=len(whole.encode()), hits=hits)
            assert whole.strip(), f"nothing was captured for {surface}"
            if hits:
                leaks.append(surface)
        assert not leaks, f"a credential showed in: {', '.join(leaks)}"


def _assert_credentials_sent(server: FakeOllama) -> None:
    sent = [r.headers for r in server.requests]
    assert sent, "the server received nothing"
    assert all(h.get("Authorization") == f"Bearer {API_KEY}" for h in sent)
    assert all(h.get("X-Api-Token") == HEADER for h in sent)


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(registry=(MODEL, OTHER), tick=TICK) as fake:
        yield fake


@pytest.fixture
def dead() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.timeout(60)
def test_the_library_never_shows_the_credentials(
    server: FakeOllama,
    dead: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Recorder,
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)  # everything: ours, urllib3's, FakeOllama's
    capture = Capture()

    settings = Settings.from_env(host=server.url)
    client = OllamaClient.from_settings(settings)
    capture.add("Settings and OllamaClient reprs", repr(settings), str(settings), repr(client))

    progress = io.StringIO()
    server.reset_at(0.5)  # a retry: its warning is logged with the failure text
    result = ensure_model(
        MODEL_NAME, host=server.url, progress=make_reporter("lines", stream=progress)
    )
    capture.add(
        "EnsureResult (repr, to_dict, HTML) and progress lines",
        repr(result),
        str(result),
        json.dumps(result.to_dict()),
        result._repr_html_(),
        progress.getvalue(),
    )
    ready = wait_until_ready(server.url, timeout=5)
    checked = check(server.url, level="model", models=(MODEL_NAME,), timeout=5)
    pulled = pull_model(client, OTHER.name, retry=RETRY)
    capture.add(
        "ReadyReport and PullResult",
        *(repr(x) for x in (ready, checked, pulled)),
        ready.describe(),
        json.dumps(checked.to_dict()),
    )

    capture.error("NotReadyError (dead host)", lambda: wait_until_ready(dead, timeout=0.2))
    capture.error(
        "ModelNotFound", lambda: ensure_model("nosuch:7b", host=server.url, progress="none")
    )
    capture.error(
        "ModelNotPresent (check)",
        lambda: check(server.url, level="model", models=("absent:1b",), timeout=5),
    )
    server.fail_next(1, status=401, message="unauthorized", path="/api/pull")
    capture.error("Unauthorized", lambda: pull_model(client, MODEL_NAME, policy="always"))
    server.fail_next(10, status=500, path="/api/pull")
    capture.error(
        "PullRetriesExhausted",
        lambda: pull_model(client, MODEL_NAME, policy="always", retry=RETRY),
    )
    client.close()

    capture.add("logs at DEBUG (all loggers)", caplog.text)
    capture.add("log records (messages and arguments)", *(_record_text(r) for r in caplog.records))
    _assert_credentials_sent(server)
    capture.verify(reliability)


def _record_text(record: logging.LogRecord) -> str:
    return f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"


_CLI_RUNS = (
    ("ensure", "--json", "-vv"),
    ("pull", "--json", "-vv"),
    ("ensure", "nosuch:7b", "--json", "-vv"),
    ("check", "--level", "model", "--model", MODEL_NAME, "--json", "-vv"),
    ("check", "--level", "model", "--model", "absent:1b", "--json", "-vv"),
    ("wait", "--json", "-vv"),
    ("list", "--json", "-vv"),
    ("doctor", "--model", MODEL_NAME, "--json", "-vv"),
    ("doctor", "--model", MODEL_NAME),
)


@pytest.mark.timeout(120)
def test_the_cli_never_prints_the_credentials(server: FakeOllama, reliability: Recorder) -> None:
    env = {**os.environ, **ENVIRON, "OLLAMA_HOST": server.url, "OLLAMA_READY_TIMEOUT": "10"}
    capture = Capture()
    server.reset_at(0.5)
    for argv in _CLI_RUNS:
        args = list(argv)
        if args[0] in ("ensure", "pull") and args[1].startswith("-"):
            args.insert(1, MODEL_NAME)
        done = run_cli(args, timeout=60, env=env)
        assert "this is a bug in ollama-ready" not in done.stderr, done.stderr
        name = " ".join(argv[:1] + tuple(a for a in argv[1:] if a.startswith("-")))
        capture.add(f"CLI `{name}`: stdout and stderr", done.stdout, done.stderr)
    _assert_credentials_sent(server)
    capture.verify(reliability)


@pytest.mark.timeout(60)
def test_the_doctor_report_never_shows_the_credentials(
    server: FakeOllama, reliability: Recorder
) -> None:
    server.add_model(MODEL)
    capture = Capture()
    report = doctor(host=server.url, model=MODEL_NAME, environ=ENVIRON, timeout=10)
    capture.add(
        "doctor report (repr, text, JSON, HTML)",
        repr(report),
        report.describe(),
        json.dumps(report.to_dict(), default=str),
        report._repr_html_(),
    )
    _assert_credentials_sent(server)
    echo = json.dumps({"error": f"invalid credentials: Bearer {API_KEY}, X-Api-Token {HEADER}"})
    server.respond_with("GET", "/api/version", status=401, body=echo, times=None)
    echoed = doctor(host=server.url, model=MODEL_NAME, environ=ENVIRON, timeout=10)
    capture.add(
        "doctor report of a server that echoes the credentials",
        repr(echoed),
        echoed.describe(),
        json.dumps(echoed.to_dict(), default=str),
        echoed._repr_html_(),
    )
    capture.verify(reliability)


@pytest.mark.parametrize(
    ("variable", "value", "flaw"),
    [
        ("OLLAMA_READY_HEADERS", f"X-Api-Token {HEADER}", "no colon"),
        ("OLLAMA_READY_HEADERS", f"X Api: {HEADER}", "a space in the name"),
        ("OLLAMA_READY_HEADERS", f"X-Api-Token: {HEADER}\x00", "a NUL in the value"),
        ("OLLAMA_API_KEY", f"{API_KEY} trailing", "a space"),
        ("OLLAMA_API_KEY", f"{API_KEY}\x07", "a control character"),
    ],
)
def test_an_invalid_credential_variable_is_refused_without_showing_it(
    variable: str, value: str, flaw: str, reliability: Recorder
) -> None:
    capture = Capture()
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    error = caught.value
    assert variable in str(error)
    capture.add(
        f"ConfigError for {variable} with {flaw}",
        str(error),
        repr(error),
        error.describe(),
        "".join(traceback.format_exception(error)),
    )
    capture.verify(reliability)


@pytest.mark.timeout(30)
def test_a_server_that_echoes_the_credentials_does_not_get_them_into_errors(
    server: FakeOllama,
) -> None:
    echo = json.dumps({"error": f"invalid credentials: Bearer {API_KEY}, X-Api-Token {HEADER}"})
    server.respond_with("POST", "/api/show", status=401, body=echo)
    capture = Capture()
    capture.error(
        "an error of a server that echoes the credentials",
        lambda: ensure_model(MODEL_NAME, host=server.url, environ=ENVIRON, progress="none"),
    )
    _assert_credentials_sent(server)
    capture.verify(None)
