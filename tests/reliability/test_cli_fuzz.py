"""Fuzz the command line: any argv gives a documented exit code, no traceback, and no hang.

``ollama_ready.cli.main`` runs in process with hypothesis-built argument vectors: real commands
and options with values from hostile and ordinary sets, mixed with arbitrary text. Hosts are
limited to a live FakeOllama, a dead loopback port and values that cannot parse, so no example
touches the network or waits long; ``OLLAMA_READY_TIMEOUT`` bounds every command that waits.
A second test proves that an invalid value is never accepted silently: it exits 2 before any
request.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ollama_ready.cli import EXIT_CODES, main
from ollama_ready.errors import InvalidModelName
from ollama_ready.names import ModelName
from ollama_ready.testing import FakeOllama

LIVE = "<live>"
DEAD = "<dead>"
EXAMPLE_SECONDS = 10.0  # far above any example's real duration: a hang shows as a failure

HOSTS = (LIVE, DEAD)
INVALID_HOSTS = (
    "[::1",
    "bad host",
    "tcp://1.2.3.4",
    "ftp://127.0.0.1",
    "127.0.0.1:11434/path?q",
    "\x00",
    "http://user:pw@127.0.0.1:1",
)
VALID_SECONDS = ("0.2", "0.05", "0.3s", "300ms")
INVALID_SECONDS = ("-1", "nan", "inf", "-inf", "1e309", "abc", "", "1x", "--", "0x10", "5 m")
MODELS = ("llama3.2:1b", "qwen2.5:0.5b", "tinyllama", "gpt-oss:20b", "nosuch:7b")
INVALID_MODELS = ("bad name!", "a/b/c/d/e", ":latest", "x:", "-x", "..")
SPECS = (
    "poll",
    "poll:interval=0.01",
    "poll:interval=0.01,timeout=0.1",
    "sleep:0.01",
    "sleep:1e9",
    "sleep:0.01+poll:interval=0.01",
    "healthcheck:interval=0.01,retries=1",
    "healthcheck:level=version,interval=0.01",
    "serve:binary=/nonexistent/ollama",
)
INVALID_SPECS = ("poll:interval=-1", "healthcheck:level=nope", "bogus", "sleep:x", "a+", "poll:x=1")
TEXT = st.text(max_size=12)


def _either(valid: tuple[str, ...], invalid: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Mostly valid values; now and then an invalid one, or any text."""
    good = st.sampled_from(valid)
    bad = st.sampled_from(invalid) if invalid else TEXT
    return st.one_of(good, good, good, good, good, good, bad, TEXT)


VALUES: Mapping[str, st.SearchStrategy[str]] = {
    "--host": _either(HOSTS, INVALID_HOSTS),
    "--timeout": _either(VALID_SECONDS, INVALID_SECONDS),
    "--stall-timeout": _either(("0.3", "5"), INVALID_SECONDS),
    "--seconds": _either(("0.01", "0.05"), INVALID_SECONDS),
    "--wait": _either(SPECS, INVALID_SPECS),
    "--policy": _either(("missing", "always", "never"), ()),
    "--progress": _either(("auto", "lines", "json", "none"), ()),
    "--concurrency": _either(("1", "2", "4"), ("0", "-3", "x", "1.5")),
    "--keep-alive": _either(("5m", "-1", "0", "30s", "1h30m"), ("forever", "5 m", "1e400")),
    "--min-server-version": _either(("0.11", ">=0.1,<1", "0.12.11", "99"), ("!!", "latest")),
    "--level": _either(("server", "version", "model", "loaded", "gpu"), ()),
    "--model": _either(MODELS, INVALID_MODELS),
    "--dir": _either(("/nonexistent", "relative/dir"), ()),
}
FLAGS: Mapping[str, tuple[str, ...]] = {
    "ensure": ("--insecure", "--no-insecure", "--load", "--no-load", "--require-gpu"),
    "pull": ("--insecure", "--no-insecure"),
}
TRANSFER = ("--host", "--timeout", "--wait", "--stall-timeout", "--progress", "--concurrency")
COMMANDS: Mapping[str, tuple[str, ...]] = {
    "wait": ("--host", "--timeout"),
    "pull": TRANSFER,
    "ensure": (*TRANSFER, "--policy", "--keep-alive", "--min-server-version"),
    "check": ("--host", "--level", "--model", "--min-server-version", "--timeout"),
    "list": ("--host", "--timeout"),
    "gpus": (),
    "runners": ("--dir",),
    "doctor": ("--host", "--model", "--timeout"),
    "demo": ("--model", "--seconds", "--progress", "--timeout"),
}
POSITIONALS: Mapping[str, st.SearchStrategy[str]] = {
    "wait": _either(SPECS, INVALID_SPECS),
    "pull": _either(MODELS, INVALID_MODELS),
    "ensure": _either(MODELS, INVALID_MODELS),
}
OUTPUT = ("--json", "-v", "-vv", "-q")
RARE = ("--help", "-h", "--version", "--", "--nope")


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    """A command line: a command (rarely junk), its options and words, now and then junk."""
    junk_command = draw(st.integers(0, 19)) == 0
    command = draw(TEXT if junk_command else st.sampled_from(sorted(COMMANDS)))
    argv: list[str] = [command]
    options = COMMANDS.get(command, tuple(VALUES))
    for option in draw(st.lists(st.sampled_from(options), max_size=3)) if options else ():
        argv += [option, draw(VALUES[option])]
    argv += draw(st.lists(st.sampled_from(FLAGS.get(command, OUTPUT) + OUTPUT), max_size=2))
    if command in POSITIONALS:
        argv += draw(st.lists(POSITIONALS[command], min_size=command == "pull", max_size=2))
    if draw(st.integers(0, 9)) == 0:  # a tenth of the lines carry junk somewhere
        junk = draw(st.sampled_from(RARE) | TEXT)
        argv.insert(draw(st.integers(0, len(argv))), junk)
    if command == "demo" and "--seconds" not in argv:
        argv += ["--seconds", "0.01"]  # the demo's simulated download takes 4 s by default
    return argv


@pytest.fixture(scope="module")
def live() -> Iterator[FakeOllama]:
    """A server that answers, so that commands also get past the network part."""
    with FakeOllama(tick=0.005) as server:
        yield server


@pytest.fixture(scope="module")
def dead() -> str:
    """A loopback address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(argv: list[str], live: FakeOllama, dead: str, path: Path) -> tuple[int, str, str, float]:
    """Run ``main`` with placeholders filled in; return the code, stdout, stderr and seconds."""
    argv = [live.url if a == LIVE else dead if a == DEAD else a for a in argv]
    env = {
        "OLLAMA_HOST": dead,
        "OLLAMA_READY_TIMEOUT": "0.3",
        "OLLAMA_READY_CONNECT_TIMEOUT": "0.3",
        "OLLAMA_READY_READ_TIMEOUT": "0.3",
        "PATH": str(path),  # no `ollama` to start: a `serve` strategy fails at once
    }
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


@pytest.mark.timeout(300)
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(argv=argvs())
def test_any_command_line_gives_a_documented_exit_code(
    argv: list[str], live: FakeOllama, dead: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    code, out, err, seconds = _run(argv, live, dead, _empty_dir(tmp_path_factory))
    event(f"exit {code}")
    event(f"command {argv[0] if argv[0] in COMMANDS else 'junk'}")
    assert code in EXIT_CODES, (code, err)
    assert code not in (130, 143), err
    assert "this is a bug in ollama-ready" not in err, err
    verbose = any(a.startswith("-v") or a == "--verbose" for a in argv)
    if not verbose:
        assert "Traceback" not in err, err
    assert seconds < EXAMPLE_SECONDS, (argv, seconds)
    informational = {"-h", "--help", "--version"} & set(argv)
    if "--json" in argv and out.strip() and not informational and code != 2:
        json.loads(out)  # --json output is JSON, errors included


def _empty_dir(factory: pytest.TempPathFactory) -> Path:
    return factory.getbasetemp() / "empty-path"


# --- invalid values are refused, before any request --------------------------------------------


def _invalid_name(text: str) -> bool:
    try:
        ModelName.parse(text)
    except InvalidModelName:
        return True
    return False


INVALID = st.one_of(
    st.tuples(st.just("--timeout"), st.sampled_from(INVALID_SECONDS)),
    st.tuples(st.just("--host"), st.sampled_from(INVALID_HOSTS)),
    st.tuples(st.just("--stall-timeout"), st.sampled_from(INVALID_SECONDS)),
    st.tuples(st.just("--concurrency"), st.sampled_from(("0", "-1", "x", "1.5", ""))),
    st.tuples(st.just("--policy"), TEXT.filter(lambda t: t not in ("missing", "always", "never"))),
    st.tuples(st.just("--wait"), st.sampled_from(("bogus", "poll:interval=-1", "sleep:x", "a+"))),
    st.tuples(st.just("--min-server-version"), st.sampled_from(("!!", "latest", ">=x"))),
    st.tuples(st.just("MODEL"), st.text(min_size=1, max_size=20).filter(_invalid_name)),
)


@pytest.mark.timeout(120)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=st.sampled_from(("ensure", "pull")), invalid=INVALID)
def test_an_invalid_value_is_a_usage_error_before_any_request(
    command: str,
    invalid: tuple[str, str],
    live: FakeOllama,
    dead: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    option, value = invalid
    options = {"--host": LIVE, "--timeout": "2", "--progress": "none"}
    if option != "MODEL":
        options[option] = value
    model = value if option == "MODEL" else "tiny:1b"
    argv = [command, *(part for pair in options.items() for part in pair), "--", model]
    before = live.count()
    code, _, err, _ = _run(argv, live, dead, _empty_dir(tmp_path_factory))
    assert code == 2, (argv, err)
    assert live.count() == before, f"{argv} sent a request before refusing it"
    assert err.strip(), "a usage error says what is wrong"
