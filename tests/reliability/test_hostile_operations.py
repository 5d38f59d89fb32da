"""Hostile server responses at the operation level: pull_model, ensure_model, waits and the CLI.

FakeOllama answers with ``respond_with(...)``: garbage lines, a 50 MB line, wrong content types,
a proxy's HTML page, gzip bombs, trickles, a redirect to another host and absurd progress
numbers. Each case states the outcome, the requests that reached the server, and where it matters
the time and memory the operation spent. The client-level cases are in
``tests/test_client_hostile.py``.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from ollama_ready.client import OllamaClient
from ollama_ready.clock import Deadline
from ollama_ready.ensure import ensure_model
from ollama_ready.errors import (
    NotReadyError,
    OllamaReadyError,
    PullRetriesExhausted,
)
from ollama_ready.progress import ProgressSnapshot
from ollama_ready.pull import RetryPolicy, pull_model
from ollama_ready.readiness import Poll, wait_until_ready
from ollama_ready.testing import FakeOllama

from ._ops import MODEL, MODEL_NAME, PULL, TICK, CliRun, run_cli
from .conftest import Recorder

MiB = 1 << 20
NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json; charset=utf-8"}
ONCE = RetryPolicy(max_tries=1)
DEADLINE = 4.0
CLI_TIMEOUT = 30.0

INPUTS = (
    "non-JSON line in the pull stream",
    "50 MB line without a newline",
    "wrong content type, valid body",
    "wrong content type, binary body",
    "HTML page from a proxy",
    "gzip bomb on a JSON answer",
    "gzip bomb in the pull stream",
    "1 byte/s trickle",
    "20 bytes/s trickle",
    "redirect to another host",
    "out-of-range progress numbers",
)

_PROGRESS_LINES = b"""\
{"status":"pulling manifest"}
{"status":"pulling 1e1ffc6345c6","digest":"sha256:1e1ffc6345c6","total":1000,"completed":-5}
{"status":"pulling 1e1ffc6345c6","digest":"sha256:1e1ffc6345c6","total":1000,"completed":5000}
{"status":"pulling b507b9c2f6ca","digest":"sha256:b507b9c2f6ca","total":NaN,"completed":10}
{"status":"pulling 980817ca52bd","digest":"sha256:980817ca52bd","total":-1,"completed":1e308}
{"status":"pulling 0a5b3c2d1e0f","digest":"sha256:0a5b3c2d1e0f","total":Infinity,"completed":-1e9}
{"status":"verifying sha256 digest"}
{"status":"writing manifest"}
{"status":"success"}
"""
_GOOD_STREAM = b"""\
{"status":"pulling manifest"}
{"status":"pulling 1e1ffc6345c6","digest":"sha256:1e1ffc6345c6","total":1000,"completed":1000}
{"status":"verifying sha256 digest"}
{"status":"writing manifest"}
{"status":"success"}
"""
_PROXY_PAGE = (
    b"<!DOCTYPE html><html><head><title>ERROR: The requested URL could not be retrieved"
    b"</title></head><body><h1>Squid</h1><p>Access control configuration prevents your request "
    b"from being allowed at this time.</p></body></html>"
)
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


# --- running the operations -----------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What one operation did with a hostile answer."""

    error: BaseException | None
    wall: float
    snapshots: list[ProgressSnapshot] = field(default_factory=list)
    peak_bytes: int | None = None
    cli: CliRun | None = None

    @property
    def name(self) -> str:
        """``ok`` or the error class (the CLI's from its ``--json`` error object)."""
        if self.cli is not None:
            if self.cli.returncode == 0:
                return "ok"
            return str(json.loads(self.cli.stdout)["error"]["type"])
        return "ok" if self.error is None else type(self.error).__name__


def _pull(server: FakeOllama, *, memory: bool = False, **options: Any) -> Outcome:
    snapshots: list[ProgressSnapshot] = []
    options = {"policy": "always", "retry": ONCE, "deadline": Deadline(DEADLINE), **options}
    with OllamaClient(server.url) as client, _Tracing(memory) as traced:
        started = time.monotonic()
        try:
            pull_model(client, MODEL_NAME, reporter=snapshots.append, **options)
        except OllamaReadyError as exc:
            error: OllamaReadyError | None = exc
        else:
            error = None
        wall = time.monotonic() - started
    return Outcome(error, wall, snapshots, peak_bytes=traced.peak)


def _ensure(server: FakeOllama, *, memory: bool = False, **options: Any) -> Outcome:
    snapshots: list[ProgressSnapshot] = []
    options = {"pull_policy": "always", "timeout": DEADLINE, **options}
    with _Tracing(memory) as traced:
        started = time.monotonic()
        try:
            ensure_model(MODEL_NAME, host=server.url, progress=snapshots.append, **options)
        except OllamaReadyError as exc:
            error: OllamaReadyError | None = exc
        else:
            error = None
        wall = time.monotonic() - started
    return Outcome(error, wall, snapshots, peak_bytes=traced.peak)


def _cli(server: FakeOllama, *extra: str, policy: str = "always") -> Outcome:
    argv = ["ensure", MODEL_NAME, "--host", server.url, "--timeout", str(DEADLINE), "--json"]
    done = run_cli([*argv, "--policy", policy, *extra], timeout=CLI_TIMEOUT)
    assert "this is a bug in ollama-ready" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return Outcome(None, done.duration, cli=done)


class _Tracing:
    """Measure the peak of Python allocations in a block (``tracemalloc``), if enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.peak: int | None = None

    def __enter__(self) -> _Tracing:
        if self.enabled:
            tracemalloc.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled:
            self.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    """A FakeOllama that has the model (the hostile pulls use ``policy="always"``)."""
    with FakeOllama(registry=(MODEL,), models=(MODEL,), tick=TICK) as fake:
        yield fake


def _record(reliability: Recorder, name: str, op: str, outcome: Outcome, detail: str) -> None:
    reliability.add(
        "hostile",
        input=name,
        input_index=INPUTS.index(name),
        op=op,
        outcome=outcome.name,
        detail=detail,
    )


OPS = ("pull", "ensure", "CLI")
_RUN: dict[str, Callable[..., Outcome]] = {"pull": _pull, "ensure": _ensure}


def _run(op: str, server: FakeOllama, **options: Any) -> Outcome:
    if op == "CLI":
        return _cli(server)
    return _RUN[op](server, **options)


# --- garbage, floods and bombs --------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("op", OPS)
def test_a_line_that_is_not_json_ends_the_pull_at_once(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    body = b'{"status":"pulling manifest"}\nthis is not json\n{"status":"success"}\n'
    server.respond_with("POST", "/api/pull", body=body, headers=NDJSON)
    outcome = _run(op, server)
    _record(reliability, INPUTS[0], op, outcome, "ProtocolError, one /api/pull, no retry")
    assert outcome.name == "ProtocolError"
    assert server.count(*PULL) == 1
    if op == "CLI":
        assert outcome.cli is not None
        assert outcome.cli.returncode == 1
    else:
        assert "not valid JSON" in str(outcome.error)


@cache
def _flood() -> bytes:
    return b'{"status":"' + b"x" * (50 * MiB)


@cache
def _cli_baseline_rss() -> int:
    """The peak RSS of a CLI run that ensures a present model: the same imports, no flood."""
    with FakeOllama(registry=(MODEL,), models=(MODEL,), tick=TICK) as fake:
        done = _cli(fake, policy="missing")
    assert done.cli is not None
    assert done.cli.returncode == 0
    return done.cli.max_rss_kib


@pytest.mark.timeout(60)
@pytest.mark.parametrize("op", OPS)
def test_a_50_mb_line_is_refused_with_bounded_memory(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    server.respond_with("POST", "/api/pull", body=_flood(), headers=NDJSON)
    if op == "CLI":
        baseline = _cli_baseline_rss()
        outcome = _cli(server)
        assert outcome.cli is not None
        growth = (outcome.cli.max_rss_kib - baseline) * 1024
        limit = 16 * MiB
        assert outcome.cli.returncode == 1
    else:
        outcome = _run(op, server, memory=True)
        assert outcome.peak_bytes is not None
        growth, limit = outcome.peak_bytes, 8 * MiB
        assert "longer than 1048576 bytes" in str(outcome.error)
    detail = f"ProtocolError; memory {growth / MiB:.1f} MiB (limit {limit // MiB} MiB)"
    _record(reliability, INPUTS[1], op, outcome, detail)
    assert outcome.name == "ProtocolError"
    assert growth <= limit
    assert outcome.wall < 10


@pytest.mark.timeout(30)
@pytest.mark.parametrize("op", [*OPS, "wait"])
def test_a_wrong_content_type_with_a_valid_body_is_accepted(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    if op == "wait":
        body = b'{"version":"0.12.11"}'
        server.respond_with(
            "GET", "/api/version", body=body, headers={"Content-Type": "application/octet-stream"}
        )
        started = time.monotonic()
        report = wait_until_ready(server.url, strategy=Poll(path="/api/version", method="GET"))
        outcome = Outcome(None, time.monotonic() - started)
        assert report.version == "0.12.11"
    else:
        server.respond_with("POST", "/api/pull", body=_GOOD_STREAM, headers=_TEXT)
        outcome = _run(op, server)
    _record(reliability, INPUTS[2], op, outcome, "ok: the body decides, not its label")
    assert outcome.name == "ok"


_TEXT = {"Content-Type": "text/plain; charset=utf-8"}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("op", [*OPS, "wait"])
def test_a_wrong_content_type_with_a_binary_body_is_refused(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    headers = {"Content-Type": "image/png"}
    if op == "wait":
        server.respond_with("GET", "/api/version", body=_PNG, headers=headers, times=None)
        outcome = _wait(server, Poll(interval=0.02, path="/api/version", method="GET"), 0.5)
        assert isinstance(outcome.error, NotReadyError)
        assert "not valid JSON" in (outcome.error.last_failure or "")
        detail = "NotReadyError at the deadline; last failure: not valid JSON"
    else:
        server.respond_with("POST", "/api/pull", body=_PNG, headers=headers)
        outcome = _run(op, server)
        assert outcome.name == "ProtocolError"
        assert server.count(*PULL) == 1
        detail = "ProtocolError, one /api/pull, no retry"
    _record(reliability, INPUTS[3], op, outcome, detail)
    assert outcome.wall <= (0.6 if op == "wait" else 10)


def _wait(server: FakeOllama, strategy: Poll, timeout: float) -> Outcome:
    started = time.monotonic()
    try:
        wait_until_ready(server.url, strategy=strategy, timeout=timeout)
    except OllamaReadyError as exc:
        return Outcome(exc, time.monotonic() - started)
    return Outcome(None, time.monotonic() - started)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("op", [*OPS, "wait"])
def test_an_html_page_from_a_proxy_is_named_as_such(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    html = {"Content-Type": "text/html; charset=utf-8"}
    if op == "wait":
        server.respond_with(
            "GET", "/api/version", status=502, body=_PROXY_PAGE, headers=html, times=None
        )
        outcome = _wait(server, Poll(interval=0.02, path="/api/version", method="GET"), 0.5)
        assert isinstance(outcome.error, NotReadyError)
        assert "A proxy or another web server answered" in (outcome.error.last_failure or "")
        assert outcome.error.hint is not None
        assert "proxy" in outcome.error.hint
        detail = "NotReadyError at the deadline naming the proxy page, with a hint"
    else:
        server.respond_with("POST", "/api/pull", body=_PROXY_PAGE, headers=html)
        outcome = _run(op, server)
        assert outcome.name == "ProtocolError"
        assert server.count(*PULL) == 1
        text = outcome.cli.stdout if outcome.cli is not None else str(outcome.error)
        assert "A proxy or another web server answered" in text
        assert "ERROR: The requested URL could not be retrieved" in text
        detail = "ProtocolError naming the proxy and the page title, no retry"
    _record(reliability, INPUTS[4], op, outcome, detail)


@cache
def _gzip_bomb(size: int, byte: bytes) -> bytes:
    """``size`` bytes of ``byte`` compressed with gzip: about a thousandth of the size."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = byte * MiB
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    return b"".join([*parts, compressor.flush()])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("op", OPS)
def test_a_gzip_bomb_on_a_json_answer_is_cut_at_the_body_cap(
    op: str, reliability: Recorder
) -> None:
    bomb = _gzip_bomb(512 * MiB, b" ")
    with FakeOllama(registry=(MODEL,), tick=TICK) as server:
        server.respond_with(
            "POST", "/api/show", body=bomb, headers={**JSON, "Content-Encoding": "gzip"}
        )
        if op == "CLI":
            outcome = _cli(server, policy="missing")
            assert outcome.cli is not None
            growth = (outcome.cli.max_rss_kib - _cli_baseline_rss()) * 1024
            assert outcome.cli.returncode == 1
        else:
            outcome = _run(op, server, memory=True, **_MISSING[op])
            assert outcome.peak_bytes is not None
            growth = outcome.peak_bytes
            assert "larger than 33554432 bytes once decoded" in str(outcome.error)
        assert server.count(*PULL) == 0
    limit = 80 * MiB
    detail = (
        f"ProtocolError at the 32 MiB cap of {len(bomb) // 1024} KiB inflating to 512 MiB; "
        f"memory {growth / MiB:.0f} MiB (limit {limit // MiB} MiB)"
    )
    _record(reliability, INPUTS[5], op, outcome, detail)
    assert outcome.name == "ProtocolError"
    assert growth <= limit


_MISSING: dict[str, dict[str, Any]] = {
    "pull": {"policy": "missing"},
    "ensure": {"pull_policy": "missing"},
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("op", OPS)
def test_a_gzip_bomb_in_the_stream_is_cut_at_the_line_limit(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    bomb = _gzip_bomb(512 * MiB, b"x")
    server.respond_with(
        "POST", "/api/pull", body=bomb, headers={**NDJSON, "Content-Encoding": "gzip"}
    )
    outcome = _run(op, server)
    _record(reliability, INPUTS[6], op, outcome, "ProtocolError at the 1 MiB line limit, fast")
    assert outcome.name == "ProtocolError"
    assert server.count(*PULL) == 1
    assert outcome.wall < 10


# --- trickles -------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_1_byte_per_second_answer_is_cut_by_the_read_timeout(
    server: FakeOllama, reliability: Recorder
) -> None:
    server.respond_with(
        "GET",
        "/api/version",
        body=b'{"version":"0.12.11"}',
        headers=JSON,
        chunk_size=1,
        delay=1.0,
        times=None,
    )
    outcome = _wait(server, _TWO_PROBES, 0.9)
    assert isinstance(outcome.error, NotReadyError)
    probes = server.count("GET", "/api/version")
    _record(
        reliability,
        INPUTS[7],
        "wait",
        outcome,
        f"each probe cut by its 0.3 s read timeout ({probes} probes); NotReadyError at the "
        f"deadline after {outcome.wall:.2f} s",
    )
    assert probes == 2
    assert (outcome.error.last_failure or "").startswith("connected but no answer")
    assert 0.85 <= outcome.wall <= 1.0


# Probes start at 0 and 0.5 s and are cut at 0.3 s; the third would start after the deadline.
_TWO_PROBES = Poll(interval=0.5, jitter=0.0, probe_timeout=0.3, path="/api/version", method="GET")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("op", ["pull", "ensure"])
def test_a_1_byte_per_second_stream_is_a_stall(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    server.respond_with(
        "POST", "/api/pull", body=_GOOD_STREAM, headers=NDJSON, chunk_size=1, delay=1.0
    )
    outcome = _run(op, server, stall_timeout=0.3, **({"retry": ONCE} if op == "pull" else {}))
    _record(
        reliability,
        INPUTS[7],
        op,
        outcome,
        f"the read timeout (= stall timeout 0.3 s) fires: stalled after {outcome.wall:.2f} s",
    )
    if op == "pull":
        assert isinstance(outcome.error, PullRetriesExhausted)
        assert "(stalled)" in str(outcome.error)
        assert outcome.wall < 1.5
    else:  # the default retry policy re-issues the pull, which FakeOllama then serves
        assert outcome.name == "ok"
        retries = [s for s in outcome.snapshots if s.phase == "retrying"]
        assert retries
        assert "stalled" in (retries[0].message or "")


@pytest.mark.timeout(30)
def test_a_20_bytes_per_second_answer_is_cut_by_the_answer_budget(
    server: FakeOllama, reliability: Recorder
) -> None:
    server.respond_with(
        "GET",
        "/api/version",
        body=b'{"version":"0.12.11"}' + b" " * 200,
        headers=JSON,
        chunk_size=1,
        delay=0.05,
        times=None,
    )
    outcome = _wait(server, _TWO_PROBES, 0.9)
    assert isinstance(outcome.error, NotReadyError)
    probes = server.count("GET", "/api/version")
    _record(
        reliability,
        INPUTS[8],
        "wait",
        outcome,
        f"no read times out, but each answer's 0.3 s budget does ({probes} probes); "
        "NotReadyError at the deadline",
    )
    assert probes == 2
    assert "trickles in too slowly" in (outcome.error.last_failure or "")
    assert 0.85 <= outcome.wall <= 1.0


_STALL_BUG = (
    "pull.py _PullJob._attempt: stall detection runs only when an event arrives, so a stream that "
    "keeps sending bytes but no complete progress line (a trickle, or blank lines) is never "
    "declared stalled; the read timeout does not fire either while bytes arrive"
)


@pytest.mark.timeout(30)
def test_a_20_bytes_per_second_stream_is_a_stall_within_the_stall_timeout(
    server: FakeOllama,
) -> None:
    lines = b'{"status":"pulling manifest"}\n' * 100
    server.respond_with("POST", "/api/pull", body=lines, headers=NDJSON, chunk_size=1, delay=0.05)
    outcome = _pull(server, stall_timeout=0.3, deadline=Deadline(5.0))
    assert isinstance(outcome.error, PullRetriesExhausted)
    assert "(stalled)" in str(outcome.error)
    assert outcome.wall < 1.0


@pytest.mark.timeout(30)
def test_a_stream_of_blank_lines_is_a_stall_within_the_stall_timeout(server: FakeOllama) -> None:
    lines = b'{"status":"pulling manifest"}\n' + b"\n" * 1000
    server.respond_with("POST", "/api/pull", body=lines, headers=NDJSON, chunk_size=1, delay=0.005)
    outcome = _pull(server, stall_timeout=0.3, deadline=Deadline(5.0))
    assert isinstance(outcome.error, PullRetriesExhausted)
    assert "(stalled)" in str(outcome.error)
    assert outcome.wall < 1.0


# --- redirects ------------------------------------------------------------------------------------

_API_KEY = "ollama-ready-redirect-api-key-6f1c"
_HEADER_TOKEN = "ollama-ready-redirect-header-9b2e"
_ENVIRON = {"OLLAMA_API_KEY": _API_KEY, "OLLAMA_READY_HEADERS": f"X-Api-Token: {_HEADER_TOKEN}"}


def _redirected(op: str, reliability: Recorder | None) -> tuple[dict[str, str], dict[str, str]]:
    """Ensure with credentials while ``/api/show`` redirects to another host; return the headers
    the first and the second server saw."""
    with (
        FakeOllama(registry=(MODEL,), tick=TICK) as server,
        FakeOllama(registry=(), tick=TICK) as other,
    ):
        location = f"{other.url}/api/show"
        server.respond_with("POST", "/api/show", status=307, headers={"Location": location})
        outcome = _ensure(server, environ=_ENVIRON, pull_policy="missing")
        (asked,) = [r for r in server.requests if r.path == "/api/show"][:1]
        (moved,) = other.requests
    if reliability is not None:
        _record(
            reliability,
            INPUTS[9],
            op,
            outcome,
            "the second host got the request without the Authorization header",
        )
    assert outcome.name == "ok"
    return dict(asked.headers), dict(moved.headers)


@pytest.mark.timeout(30)
def test_a_redirect_to_another_host_does_not_carry_the_api_key(reliability: Recorder) -> None:
    asked, moved = _redirected("ensure", reliability)
    assert asked["Authorization"] == f"Bearer {_API_KEY}"
    assert "Authorization" not in moved
    assert _API_KEY not in json.dumps(moved)


@pytest.mark.timeout(30)
def test_a_redirect_to_another_host_does_not_carry_the_extra_headers() -> None:
    asked, moved = _redirected("ensure", None)
    assert asked["X-Api-Token"] == _HEADER_TOKEN
    assert _HEADER_TOKEN not in json.dumps(moved)


# --- absurd numbers -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("op", OPS)
def test_out_of_range_progress_numbers_are_clamped(
    server: FakeOllama, op: str, reliability: Recorder
) -> None:
    server.respond_with("POST", "/api/pull", body=_PROGRESS_LINES, headers=NDJSON)
    if op == "CLI":
        outcome = _cli(server, "--progress", "json")
        assert outcome.cli is not None
        lines = [json.loads(x) for x in outcome.cli.stderr.splitlines() if x.startswith("{")]
        assert lines, outcome.cli.stderr
        layers = [(x["layer_completed"], x["layer_total"]) for x in lines if x["layer"]]
        counts = [x[key] for x in lines for key in ("completed", "cached", "downloaded")]
        rates = [x[key] for x in lines for key in ("rate", "eta")]
    else:
        outcome = _run(op, server)
        lines = outcome.snapshots
        layers = [(s.layer.completed, s.layer.total) for s in lines if s.layer is not None]
        counts = [n for s in lines for n in (s.completed, s.cached, s.downloaded)]
        rates = [r for s in lines for r in (s.rate, s.eta)]
        fractions = [s.fraction for s in lines] + [s.layer.fraction for s in lines if s.layer]
        assert all(f is None or 0.0 <= f <= 1.0 for f in fractions), fractions
    _record(
        reliability,
        INPUTS[10],
        op,
        outcome,
        f"ok; {len(lines)} progress snapshots: every layer 0 <= completed <= total, no count "
        "negative, fractions in [0, 1]",
    )
    assert outcome.name == "ok"
    assert layers
    for completed, total in layers:
        assert isinstance(completed, int)
        assert total is None or 0 <= completed <= total, (completed, total)
    assert all(isinstance(n, int) and n >= 0 for n in counts), counts
    assert all(r is None or (isinstance(r, (int, float)) and 0 <= r < float("inf")) for r in rates)
