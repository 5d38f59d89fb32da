"""The fast paths of the NDJSON stream give exactly what the general JSON reading gives.

``OllamaClient`` parses a progress line in Ollama's own shape without ``json.loads`` and reuses
the event of a line that repeats the previous one. Both are shortcuts: every line must come out
as the same :class:`PullEvent`, or the same error, as through ``json.loads`` and
:meth:`PullEvent.from_json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ollama_ready._http import Exchange
from ollama_ready.client import _PROGRESS_LINE, OllamaClient, _event
from ollama_ready.errors import OllamaReadyError, ProtocolError, ResponseError
from ollama_ready.progress import PullEvent
from ollama_ready.testing import FakeOllama

EX = Exchange("http://127.0.0.1:11434", "argument", "POST", "/api/pull", 5.0, 30.0)
DIGEST = "sha256:" + "1df98b4ea3fe" * 5 + "abcd"
_NDJSON = {"Content-Type": "application/x-ndjson"}


def general(line: bytes) -> PullEvent | type[OllamaReadyError]:
    """Read a line the slow way: JSON first, then the event's own checks."""
    try:
        obj = json.loads(line)
    except ValueError:
        return ProtocolError
    if not isinstance(obj, dict):
        return ProtocolError
    if obj.get("error") is not None:
        return ResponseError
    try:
        return PullEvent.from_json(obj)
    except ProtocolError:
        return ProtocolError


def read(line: bytes) -> PullEvent | type[OllamaReadyError]:
    """Read a line as the client does."""
    try:
        return _event(line, EX)
    except OllamaReadyError as exc:
        return ResponseError if isinstance(exc, ResponseError) else ProtocolError


def go_line(fields: dict[str, Any], *, ascii_only: bool = False) -> bytes:
    """Encode fields as Go's encoding/json does: no spaces, in the order given."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=ascii_only).encode()


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "pulling manifest"},
        {"status": "pulling 1df98b4ea3fe", "digest": DIGEST, "total": 2019377376},
        {"status": "pulling 1df98b4ea3fe", "digest": DIGEST, "total": 20, "completed": 0},
        {"status": "pulling 1df98b4ea3fe", "digest": DIGEST, "total": 20, "completed": 20},
        {"status": "verifying sha256 digest"},
        {"status": "success"},
    ],
)
def test_ollamas_own_lines_take_the_fast_path(fields: dict[str, Any]) -> None:
    line = go_line(fields)
    assert _PROGRESS_LINE.fullmatch(line) is not None
    assert read(line) == general(line) == PullEvent.from_json(fields)


@pytest.mark.parametrize(
    "line",
    [
        b'{"status":"a\\"b"}',  # an escape
        b'{"status":"a\\u0041"}',
        b'{"status":"x","total":01}',  # not JSON
        b'{"status":"x","total":-1}',  # a negative count becomes None
        b'{"status":"x","total":1.5e3}',
        b'{"status":"x","completed":1,"total":2}',  # another order
        b'{"status":"x","status":"y"}',  # a duplicate key: the last one wins
        b'{"status":"x","error":"boom"}',
        b'{"status": "x"}',  # a space
        b'{"status":"x","digest":""}',
        b'{"status":"\xff"}',  # not UTF-8
        b'{"status":"\xed\xa0\x80"}',  # an encoded surrogate, which json.loads lets through
        b'{"status":"caf\xc3\xa9"}',
        b'{"status":"x","total":123456789012345678901234567890}',
        b"[1]",
        b"\xef\xbb\xbf{}",
    ],
)
def test_other_lines_read_as_json_reads_them(line: bytes) -> None:
    assert read(line) == general(line)


_counts = st.one_of(
    st.none(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


@given(
    status=st.one_of(st.text(), st.integers()),
    digest=st.one_of(st.none(), st.just(DIGEST), st.text(max_size=20)),
    total=_counts,
    completed=_counts,
    ascii_only=st.booleans(),
)
@example(status="pulling x", digest=DIGEST, total=10**18 - 1, completed=0, ascii_only=False)
def test_any_line_reads_as_json_reads_it(
    status: object, digest: str | None, total: object, completed: object, ascii_only: bool
) -> None:
    fields: dict[str, Any] = {"status": status}
    for key, value in (("digest", digest), ("total", total), ("completed", completed)):
        if value is not None:
            fields[key] = value
    try:
        line = go_line(fields, ascii_only=ascii_only)
    except ValueError:  # NaN is not JSON; json.dumps writes it anyway unless told not to
        return
    assert read(line) == general(line)


def _stream(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    """A FakeOllama to answer with scripted streams."""
    with FakeOllama(tick=0.01) as fake:
        yield fake


def test_repeated_lines_give_the_same_event_and_changes_are_seen(server: FakeOllama) -> None:
    first = go_line({"status": "pulling 1df98b4ea3fe", "digest": DIGEST, "total": 9})
    second = go_line(
        {"status": "pulling 1df98b4ea3fe", "digest": DIGEST, "total": 9, "completed": 4}
    )
    lines = [first, first, first, second, second, b'{"status":"success"}']
    server.respond_with("POST", "/api/pull", body=_stream(lines), headers=_NDJSON)
    with OllamaClient(server.url) as client:
        events = list(client.pull("tinyllama"))
    assert [e.completed for e in events] == [None, None, None, 4, 4, None]
    assert events[0] is events[1] is events[2]
    assert events[3] is events[4]
    assert events[-1] == PullEvent("success")


def test_a_bad_line_after_good_repeats_still_fails(server: FakeOllama) -> None:
    good = go_line({"status": "pulling manifest"})
    lines = [good, good, b'{"status":"pulling manifest"', good]
    server.respond_with("POST", "/api/pull", body=_stream(lines), headers=_NDJSON)
    with OllamaClient(server.url) as client:
        events = client.pull("tinyllama")
        assert next(events) == next(events) == PullEvent("pulling manifest")
        with pytest.raises(ProtocolError, match="not valid JSON"):
            next(events)


def test_an_error_line_repeated_raises_each_time(server: FakeOllama) -> None:
    error = b'{"error":"pull model manifest: file does not exist"}'
    server.respond_with("POST", "/api/pull", body=_stream([error, error]), headers=_NDJSON)
    with OllamaClient(server.url) as client, pytest.raises(ResponseError, match="does not exist"):
        list(client.pull("tinyllama"))
