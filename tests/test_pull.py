"""The pull engine against a scripted client: policy, classification, retries, stalls, sharing."""

from __future__ import annotations

import _thread
import dataclasses
import itertools
import logging
import pathlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from ollama_ready.clock import Deadline
from ollama_ready.errors import (
    AggregateError,
    ConfigError,
    DeadlineExceeded,
    DigestMismatch,
    DiskFull,
    HostNotAllowed,
    InsecureRegistry,
    InvalidModelName,
    ModelNotFound,
    ModelNotPresent,
    OllamaConnectionError,
    OllamaReadyError,
    ProtocolError,
    PullError,
    PullRetriesExhausted,
    PullStalled,
    RegistryUnreachable,
    ResponseError,
    ServerBusy,
    ServerTooOld,
    Unauthorized,
)
from ollama_ready.names import ModelName
from ollama_ready.progress import ProgressSnapshot, PullEvent
from ollama_ready.pull import (
    _QUEUE_SIZE,
    ERROR_RULES,
    SERVER_AFTER_STOP,
    PullResult,
    RetryPolicy,
    _Pacer,
    _Pump,
    classify_error,
    pull_model,
    pull_models,
)
from ollama_ready.testing import FakeClock

DIGEST = "sha256:" + "1df98b4ea3fe" + "0" * 52
CONFIG = "sha256:" + "7f8325048c5a" + "1" * 52
MANIFEST = "f42cc16afdef8c9b4e2d4fd4803f88eb90564142097215bb6897be6e70aec1d3"
NO_JITTER = RetryPolicy(jitter=None)
HOST = "http://ollama.test:11434"

# --- a scripted client -------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    name: str
    digest: str
    size: int


class Install:
    """A script step: the model is now present (the server wrote the manifest)."""


class Block:
    """A script step: wait (in real time) until the event is set, like a silent server."""

    def __init__(self) -> None:
        self.release = threading.Event()


Step = PullEvent | BaseException | Install | Block


def success_script(size: int = 1000) -> list[Step]:
    return [
        PullEvent("pulling manifest"),
        PullEvent("pulling 1df98b4ea3fe", DIGEST, size, 0),
        PullEvent("pulling 1df98b4ea3fe", DIGEST, size, size // 2),
        PullEvent("pulling 1df98b4ea3fe", DIGEST, size, size),
        PullEvent("pulling 7f8325048c5a", CONFIG, 10, 10),
        PullEvent("verifying sha256 digest"),
        PullEvent("writing manifest"),
        Install(),
        PullEvent("success"),
    ]


def resumed_script(at: int, size: int = 1000) -> list[Step]:
    """A re-issued pull: the server kept ``at`` bytes and resumes from them."""
    tail = success_script(size)[3:]
    return [
        PullEvent("pulling manifest"),
        PullEvent("pulling 1df98b4ea3fe", DIGEST, size, at),
        *tail,
    ]


def error_line(message: str) -> ResponseError:
    return ResponseError(
        f"Ollama at {HOST} reported an error during POST /api/pull: {message}",
        status=200,
        server_message=message,
        host=HOST,
    )


@dataclass
class ScriptedClient:
    """Plays one script per ``pull()``; ``show`` and ``list_models`` see what was installed."""

    scripts: list[Sequence[Step]] = field(default_factory=list)
    present: dict[ModelName, str] = field(default_factory=dict)
    base_url: str = HOST
    pulls: list[tuple[str, bool, object]] = field(default_factory=list)
    shows: list[str] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    manifest_digest: str = MANIFEST
    lock: threading.Lock = field(default_factory=threading.Lock)

    def show(
        self,
        name: str,
        *,
        verbose: bool = False,
        timeout: float | tuple[float, float] | None = None,
    ) -> object:
        self.shows.append(name)
        if ModelName.parse(name) not in self.present:
            raise ModelNotPresent(f"model {name!r} not found", host=self.base_url)
        return {}

    def list_models(
        self, *, timeout: float | tuple[float, float] | None = None
    ) -> Sequence[Listed]:
        return tuple(Listed(key.display, digest, 1010) for key, digest in self.present.items())

    def pull(
        self,
        name: str,
        *,
        insecure: bool = False,
        timeout: float | tuple[float, float] | None = None,
    ) -> Iterator[PullEvent]:
        with self.lock:
            self.pulls.append((name, insecure, timeout))
            index = len(self.pulls)
            script = self.scripts.pop(0) if self.scripts else success_script()
        return self._play(name, script, index)

    def _play(self, name: str, script: Sequence[Step], index: int) -> Iterator[PullEvent]:
        try:
            for step in script:
                if isinstance(step, Install):
                    self.present[ModelName.parse(name)] = self.manifest_digest
                elif isinstance(step, Block):
                    step.release.wait(30)
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step
        finally:
            self.closed.append(index)


class Ticker:
    """A reporter that records snapshots and moves fake time on by ``step`` per snapshot."""

    def __init__(self, clock: FakeClock, step: float = 0.06) -> None:
        self.clock = clock
        self.step = step
        self.snapshots: list[ProgressSnapshot] = []

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        self.snapshots.append(snapshot)
        self.clock.advance(self.step)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- the error table ---------------------------------------------------------------------------

REAL_MESSAGES = [
    # Texts recorded from a real Ollama v0.12.11 (docs/real-ollama) and from Ollama's code.
    ("pull model manifest: file does not exist", "model-not-found", ModelNotFound, False),
    (
        'pull model manifest: Get "https://127.0.0.1:5000/v2/library/tiny/manifests/latest": '
        "http: server gave HTTP response to HTTPS client",
        "insecure-registry",
        InsecureRegistry,
        False,
    ),
    ("insecure protocol http", "insecure-registry", InsecureRegistry, False),
    (
        "pull model manifest: 412: \n\nThe model you are attempting to pull requires a newer "
        "version of Ollama.\n\nPlease download the latest version at:\n\n\thttps://ollama.com/download",
        "server-too-old",
        ServerTooOld,
        False,
    ),
    (
        "write /root/.ollama/models/blobs/sha256-1df9-partial: no space left on device",
        "disk-full",
        DiskFull,
        False,
    ),
    ("unauthorized: access denied", "unauthorized", Unauthorized, False),
    ("pull model manifest: 403: Forbidden", "forbidden", Unauthorized, False),
    ("invalid model name", "invalid-name", InvalidModelName, False),
    (
        "this model requires MLX support, but the MLX runtime is not available",
        "needs-mlx",
        PullError,
        False,
    ),
    (
        "digest mismatch, file must be downloaded again: want sha256:aa, got sha256:bb",
        "digest-mismatch",
        DigestMismatch,
        True,
    ),
    (
        'max retries exceeded: Get "http://127.0.0.2:5080/docker/registry/v2/blobs/sha256/1d/'
        '1df9/data": dial tcp 127.0.0.2:5080: connect: connection refused',
        "max-retries-exceeded",
        PullError,
        True,
    ),
    ("max retries exceeded: EOF", "max-retries-exceeded", PullError, True),
    (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/tinyllama/manifests/'
        'latest": dial tcp: lookup registry.ollama.ai on 127.0.0.53:53: no such host',
        "registry-dns",
        RegistryUnreachable,
        True,
    ),
    (
        'Head "http://127.0.0.1:5000/v2/library/big/blobs/sha256:909d": dial tcp '
        "127.0.0.1:5000: connect: connection refused",
        "registry-unreachable",
        RegistryUnreachable,
        True,
    ),
    (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/x/manifests/latest": '
        "context deadline exceeded",
        "registry-timeout",
        PullError,
        True,
    ),
    (
        'Get "https://registry.ollama.ai/v2/": net/http: TLS handshake timeout',
        "registry-timeout",
        PullError,
        True,
    ),
    (
        "read tcp 10.0.0.2:51234->1.2.3.4:443: read: connection reset by peer",
        "connection-reset",
        PullError,
        True,
    ),
    ("unexpected EOF", "connection-reset", PullError, True),
    ("EOF", "connection-reset", PullError, True),
    (
        "server busy, please try again.  maximum pending requests exceeded",
        "server-busy",
        PullError,
        True,
    ),
    ("context canceled", "canceled", PullError, True),
    ("pull model manifest: 502: Bad Gateway", "registry-error", PullError, True),
    ("pull model manifest: 429: Too Many Requests", "rate-limited", PullError, True),
]


@pytest.mark.parametrize(("message", "name", "error", "transient"), REAL_MESSAGES)
def test_classify_error_on_real_messages(
    message: str, name: str, error: type[OllamaReadyError], transient: bool
) -> None:
    rule = classify_error(message)
    assert (rule.name, rule.error, rule.transient) == (name, error, transient)
    assert rule.hint


@pytest.mark.parametrize(
    ("status", "name", "transient"),
    [
        (400, "request-rejected", False),
        (404, "request-rejected", False),
        (429, "server-error", True),
        (408, "server-error", True),
        (500, "server-error", True),
        (200, "server-error", True),
        (None, "server-error", True),
    ],
)
def test_unknown_messages_fall_back_on_the_status(
    status: int | None, name: str, transient: bool
) -> None:
    rule = classify_error("something nobody has seen", status=status)
    assert (rule.name, rule.transient) == (name, transient)


def test_every_rule_is_named_once_and_documented() -> None:
    names = [rule.name for rule in ERROR_RULES]
    assert len(names) == len(set(names))
    docs = (pathlib.Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    for rule in ERROR_RULES:
        assert f"`{rule.name}`" in docs, rule.name
        assert rule.error.__name__ in docs, rule.error.__name__
        assert rule.hint


def test_nopruned_partials_and_egress_are_in_the_hints() -> None:
    hints = {rule.name: rule.hint for rule in ERROR_RULES}
    assert "OLLAMA_NOPRUNE" in hints["ollama-unreachable"]
    assert "registry.ollama.ai" in hints["max-retries-exceeded"]
    assert "r2.cloudflarestorage.com" in hints["registry-unreachable"]
    assert "insecure=True" in hints["insecure-registry"]


# --- the retry schedule ------------------------------------------------------------------------


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    delays = NO_JITTER.delays()
    assert [next(delays) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    short = RetryPolicy(base=0.5, max_interval=3, jitter=None).delays()
    assert [next(short) for _ in range(5)] == [0.5, 1, 2, 3, 3]


def test_full_jitter_stays_within_the_exponential_envelope() -> None:
    delays = RetryPolicy().delays()
    values = [next(delays) for _ in range(200)]
    envelope = [min(2.0**n, 60.0) for n in range(200)]
    assert all(0 <= value <= cap for value, cap in zip(values, envelope, strict=True))
    assert len(set(values)) > 150  # really random


def test_custom_jitter_is_applied_and_clamped() -> None:
    delays = RetryPolicy(base=1, max_interval=4, jitter=lambda d: d * 10).delays()
    assert [next(delays) for _ in range(3)] == [4, 4, 4]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tries": 0},
        {"max_tries": 1.5},
        {"max_tries": True},
        {"base": 0},
        {"base": float("nan")},
        {"base": 2, "max_interval": 1},
        {"max_interval": float("inf")},
    ],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- policy and presence -----------------------------------------------------------------------


def test_missing_pulls_an_absent_model(clock: FakeClock) -> None:
    client = ScriptedClient()
    result = pull_model(client, "Tiny", clock=clock, retry=NO_JITTER)
    assert result == PullResult(
        model="registry.ollama.ai/library/Tiny:latest",
        digest=MANIFEST,
        size=1010,
        bytes_downloaded=1000,
        bytes_present=10,
        attempts=1,
        duration=0.0,
        pulled=True,
    )
    assert result.display == "Tiny:latest"
    assert client.pulls == [("Tiny", False, (10.0, 120.0))]
    assert client.shows == ["registry.ollama.ai/library/Tiny:latest"]


def test_missing_never_pulls_a_present_model(clock: FakeClock) -> None:
    client = ScriptedClient(present={ModelName.parse("tiny"): MANIFEST})
    ticker = Ticker(clock)
    result = pull_model(
        client, "REGISTRY.ollama.ai/library/TINY:latest", clock=clock, reporter=ticker
    )
    assert not result.pulled
    assert (result.attempts, result.digest, result.bytes_present) == (0, MANIFEST, 1010)
    assert client.pulls == []
    assert [s.message for s in ticker.snapshots] == ["already present, not pulled"]


def test_always_pulls_a_present_model(clock: FakeClock) -> None:
    client = ScriptedClient(present={ModelName.parse("tiny"): "0" * 64})
    result = pull_model(client, "tiny", policy="always", clock=clock)
    assert result.pulled
    assert client.shows == []
    assert len(client.pulls) == 1


def test_never_raises_model_not_present_without_pulling(clock: FakeClock) -> None:
    client = ScriptedClient()
    with pytest.raises(ModelNotPresent, match="policy is 'never'") as caught:
        pull_model(client, "tiny", policy="never", clock=clock)
    assert caught.value.phase == "pull"
    assert caught.value.hint
    assert client.pulls == []
    present = ScriptedClient(present={ModelName.parse("tiny"): MANIFEST})
    assert not pull_model(present, "tiny", policy=" NEVER ", clock=clock).pulled


def test_bad_arguments_fail_before_any_request(clock: FakeClock) -> None:
    client = ScriptedClient()
    with pytest.raises(ConfigError, match="pull policy"):
        pull_model(client, "tiny", policy="sometimes")
    with pytest.raises(InvalidModelName):
        pull_model(client, "not a valid name!!")
    with pytest.raises(ConfigError, match="stall_timeout"):
        pull_model(client, "tiny", stall_timeout=0)
    with pytest.raises(ConfigError, match="must be a string"):
        pull_model(client, 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="digest pin"):
        pull_model(client, "tiny", digest="sha256:xyz")
    assert client.pulls == []
    assert client.shows == []


# --- digest pins -------------------------------------------------------------------------------


def test_pin_matching_the_present_model_skips_the_pull(clock: FakeClock) -> None:
    client = ScriptedClient(present={ModelName.parse("tiny"): MANIFEST})
    for pin in (MANIFEST, "sha256:" + MANIFEST.upper(), MANIFEST[:12]):
        assert not pull_model(client, "tiny", digest=pin, clock=clock).pulled
    assert client.pulls == []


def test_pin_differing_from_the_present_model_pulls_then_checks(clock: FakeClock) -> None:
    client = ScriptedClient(present={ModelName.parse("tiny"): "0" * 64})
    result = pull_model(client, "tiny", digest=MANIFEST, clock=clock)
    assert result.pulled
    assert result.digest == MANIFEST


def test_pin_differing_after_the_pull_is_a_digest_mismatch(clock: FakeClock) -> None:
    client = ScriptedClient()
    with pytest.raises(DigestMismatch, match="after the pull, tiny:latest has manifest digest"):
        pull_model(client, "tiny", digest="a" * 64, clock=clock)
    assert len(client.pulls) == 1  # a moved tag is not retried


def test_pin_with_policy_never_does_not_pull(clock: FakeClock) -> None:
    client = ScriptedClient(present={ModelName.parse("tiny"): "0" * 64})
    with pytest.raises(DigestMismatch, match="policy is 'never'"):
        pull_model(client, "tiny", digest=MANIFEST, policy="never", clock=clock)
    assert client.pulls == []


# --- transient failures and retries ------------------------------------------------------------


def test_a_transient_error_line_is_retried_and_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedClient(
        scripts=[[PullEvent("pulling manifest"), error_line("max retries exceeded: EOF")]]
    )
    ticker = Ticker(clock, step=0.0)
    with caplog.at_level(logging.WARNING, logger="ollama_ready.pull"):
        result = pull_model(client, "tiny", clock=clock, retry=NO_JITTER, reporter=ticker)
    assert result.attempts == 2
    assert clock.sleeps == [1.0]
    assert (
        "pull of tiny:latest: attempt 1 of 8 failed (max-retries-exceeded: max retries exceeded: "
        "EOF); retrying in 1.0s"
    ) in caplog.messages
    phases = [s.phase for s in ticker.snapshots]
    assert phases.index("retrying") < phases.index("done")
    assert ticker.snapshots[-1].attempt == 2


@pytest.mark.parametrize(
    "failure",
    [
        OllamaConnectionError("refused", kind="refused"),
        OllamaConnectionError("reset", kind="reset"),
        OllamaConnectionError("no answer", kind="timeout"),
        OllamaConnectionError("handshake timed out", kind="tls"),
        ServerBusy("busy", status=503, server_message="server busy, please try again."),
        ResponseError("500", status=500, server_message="something odd"),
        error_line("context deadline exceeded"),
        error_line("net/http: TLS handshake timeout"),
        error_line("read: connection reset by peer"),
    ],
)
def test_transient_failures_are_retried(clock: FakeClock, failure: OllamaReadyError) -> None:
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), failure]])
    assert pull_model(client, "tiny", clock=clock, retry=NO_JITTER).attempts == 2


def test_a_stream_that_ends_without_success_is_retried(clock: FakeClock) -> None:
    client = ScriptedClient(scripts=[success_script()[:3], resumed_script(500)])
    result = pull_model(client, "tiny", clock=clock, retry=NO_JITTER)
    assert result.attempts == 2
    assert (result.bytes_downloaded, result.bytes_present) == (1000, 10)


def test_retries_stop_after_max_tries(clock: FakeClock) -> None:
    failures: list[Sequence[Step]] = [[error_line("max retries exceeded: EOF")] for _ in range(3)]
    client = ScriptedClient(scripts=failures)
    with pytest.raises(PullRetriesExhausted, match="after 3 attempts") as caught:
        pull_model(client, "tiny", clock=clock, retry=RetryPolicy(max_tries=3, jitter=None))
    assert len(client.pulls) == 3
    assert clock.sleeps == [1.0, 2.0]
    assert isinstance(caught.value.__cause__, ResponseError)
    assert caught.value.hint is not None
    assert "registry.ollama.ai" in caught.value.hint


def test_retries_stop_when_the_deadline_cannot_fit_the_next_one(clock: FakeClock) -> None:
    client = ScriptedClient(scripts=[[error_line("EOF")] for _ in range(10)])
    deadline = Deadline(10.0, clock=clock)
    with pytest.raises(PullRetriesExhausted, match=r"the deadline leaves 3\.0s"):
        pull_model(client, "tiny", deadline=deadline, retry=NO_JITTER)
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert len(client.pulls) == 4


def test_a_registry_outage_that_outlasts_the_tries(clock: FakeClock) -> None:
    message = (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/tiny/manifests/latest": '
        "dial tcp 203.0.113.10:443: connect: connection refused"
    )
    client = ScriptedClient(scripts=[[error_line(message)], [error_line(message)]])
    with pytest.raises(PullRetriesExhausted, match="registry-unreachable") as caught:
        pull_model(client, "tiny", clock=clock, retry=RetryPolicy(max_tries=2, jitter=None))
    assert caught.value.hint is not None
    assert "egress allowlist" in caught.value.hint


def test_a_digest_mismatch_is_retried_twice_then_permanent(clock: FakeClock) -> None:
    mismatch = error_line("digest mismatch, file must be downloaded again")
    twice = ScriptedClient(scripts=[[mismatch], [mismatch]])
    assert pull_model(twice, "tiny", clock=clock, retry=NO_JITTER).attempts == 3
    thrice = ScriptedClient(scripts=[[mismatch], [mismatch], [mismatch]])
    with pytest.raises(DigestMismatch, match="did not verify 3 times"):
        pull_model(thrice, "tiny", clock=clock, retry=NO_JITTER)
    assert len(thrice.pulls) == 3


def test_a_flaky_presence_check_is_retried(clock: FakeClock) -> None:
    class FlakyShow(ScriptedClient):
        calls = 0

        def show(self, name: str, **kwargs: object) -> object:
            FlakyShow.calls += 1
            if FlakyShow.calls == 1:
                raise OllamaConnectionError("refused", kind="refused")
            return super().show(name)

    result = pull_model(FlakyShow(), "tiny", clock=clock, retry=NO_JITTER)
    assert result.pulled
    assert FlakyShow.calls == 2


# --- permanent failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "error"),
    [(m, e) for m, _, e, transient in REAL_MESSAGES if not transient],
)
def test_permanent_error_lines_raise_at_once(
    clock: FakeClock, message: str, error: type[OllamaReadyError]
) -> None:
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), error_line(message)]])
    with pytest.raises(error) as caught:
        pull_model(client, "tiny", clock=clock)
    assert len(client.pulls) == 1
    assert clock.sleeps == []
    assert (caught.value.phase, caught.value.model, caught.value.host) == (
        "pull",
        "tiny:latest",
        HOST,
    )
    assert caught.value.hint
    assert isinstance(caught.value.__cause__, ResponseError)


def test_model_not_found_names_the_registry_and_the_parsed_name(clock: FakeClock) -> None:
    client = ScriptedClient(scripts=[[error_line("pull model manifest: file does not exist")]])
    with pytest.raises(ModelNotFound) as caught:
        pull_model(client, "llama3.2:nosuchtag", clock=clock)
    assert str(caught.value) == (
        "registry.ollama.ai has no model library/llama3.2 with tag 'nosuchtag' "
        "(server: pull model manifest: file does not exist)"
    )
    assert caught.value.hint is not None
    assert "https://ollama.com/library/llama3.2" in caught.value.hint
    other = ScriptedClient(scripts=[[error_line("pull model manifest: file does not exist")]])
    with pytest.raises(
        ModelNotFound, match=r"^127\.0\.0\.1:5000 has no model test/tiny-b"
    ) as caught:
        pull_model(other, "127.0.0.1:5000/test/tiny-b:v1", clock=clock, insecure=True)
    assert caught.value.hint == "check that test/tiny-b:v1 exists on 127.0.0.1:5000"
    assert other.pulls[0][1] is True


def test_insecure_registry_suggests_insecure_true(clock: FakeClock) -> None:
    message = "pull model manifest: http: server gave HTTP response to HTTPS client"
    client = ScriptedClient(scripts=[[error_line(message)]])
    with pytest.raises(InsecureRegistry) as caught:
        pull_model(client, "127.0.0.1:5000/library/tiny", clock=clock)
    assert caught.value.hint is not None
    assert "insecure=True" in caught.value.hint


@pytest.mark.parametrize(
    "failure",
    [
        HostNotAllowed("403", status=403, server_message="", hint="their hint"),
        ResponseError("400", status=400, server_message="missing request body"),
        ProtocolError("HTML from a proxy"),
        OllamaConnectionError("certificate verify failed", kind="tls"),
    ],
)
def test_other_permanent_failures_raise_unchanged(
    clock: FakeClock, failure: OllamaReadyError
) -> None:
    client = ScriptedClient(scripts=[[failure]])
    with pytest.raises(type(failure)) as caught:
        pull_model(client, "tiny", clock=clock)
    assert caught.value is failure
    assert len(client.pulls) == 1
    if isinstance(failure, HostNotAllowed):
        assert failure.hint == "their hint"


def test_a_programming_error_is_not_swallowed(clock: FakeClock) -> None:
    client = ScriptedClient(scripts=[[RuntimeError("bug")]])
    with pytest.raises(RuntimeError, match="bug"):
        pull_model(client, "tiny", clock=clock)


# --- stalls ------------------------------------------------------------------------------------


def stuck_script(lines: int) -> list[Step]:
    frozen = PullEvent("pulling 1df98b4ea3fe", DIGEST, 1000, 400)
    script: list[Step] = [PullEvent("pulling manifest")]
    script.append(PullEvent("pulling 1df98b4ea3fe", DIGEST, 1000, 0))
    script += [frozen] * lines
    return script


def test_repeated_lines_without_growth_are_a_stall(clock: FakeClock) -> None:
    client = ScriptedClient(scripts=[stuck_script(5000), resumed_script(400)])
    ticker = Ticker(clock)
    result = pull_model(
        client, "tiny", clock=clock, retry=NO_JITTER, reporter=ticker, stall_timeout=120
    )
    assert result.attempts == 2
    assert client.closed[0] == 1  # the stalled stream was closed
    first_attempt = [s for s in ticker.snapshots if s.attempt == 1 and s.status.startswith("pull")]
    # 120 s of lines every 60 ms, then the stream is abandoned: not one line more.
    assert len(first_attempt) == pytest.approx(2 + 120 / 0.06, abs=3)
    retry = next(s for s in ticker.snapshots if s.phase == "retrying")
    assert retry.message is not None
    assert "stalled" in retry.message
    assert result.bytes_downloaded == 1000


def test_growth_resets_the_stall_clock(clock: FakeClock) -> None:
    slow = [PullEvent("pulling 1df98b4ea3fe", DIGEST, 100_000, n) for n in range(0, 100_000, 10)]
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), *slow, *success_script()[3:]]])
    result = pull_model(
        client, "tiny", clock=clock, reporter=Ticker(clock, step=1.0), stall_timeout=5
    )
    assert result.attempts == 1  # 10,000 s in total, but never 5 s without growth


def test_a_silent_stream_is_a_stall(clock: FakeClock) -> None:
    silent = OllamaConnectionError(
        f"Ollama at {HOST} connected but sent no answer within 30s", kind="timeout"
    )
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), silent]])
    ticker = Ticker(clock, step=0)
    result = pull_model(
        client, "tiny", clock=clock, retry=NO_JITTER, stall_timeout=30, reporter=ticker
    )
    assert result.attempts == 2
    assert client.pulls[0][2] == (10.0, 30.0)  # the read timeout is the stall timeout
    assert any(s.message and "stalled" in s.message for s in ticker.snapshots)


def test_stalls_outlasting_the_tries_raise_pull_retries_exhausted(clock: FakeClock) -> None:
    client = ScriptedClient(scripts=[stuck_script(200) for _ in range(2)])
    with pytest.raises(PullRetriesExhausted) as caught:
        pull_model(
            client,
            "tiny",
            clock=clock,
            retry=RetryPolicy(max_tries=2, jitter=None),
            reporter=Ticker(clock, step=1.0),
            stall_timeout=10,
        )
    assert isinstance(caught.value.__cause__, PullStalled)
    assert "no progress for 10s at 1df98b4ea3fe 400 B of 1 KB" in caught.value.__cause__.message


# --- deadline, cancellation, Ctrl-C ------------------------------------------------------------


def test_the_deadline_stops_a_running_pull_and_says_what_the_server_does(clock: FakeClock) -> None:
    growing = [PullEvent("pulling 1df98b4ea3fe", DIGEST, 10**9, n) for n in range(1000)]
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), *growing]])
    ticker = Ticker(clock, step=1.0)
    with pytest.raises(DeadlineExceeded) as caught:
        pull_model(client, "tiny", deadline=Deadline(30, clock=clock), reporter=ticker)
    message = str(caught.value)
    assert message.startswith("pull of tiny:latest stopped at 1df98b4ea3fe")
    assert "the deadline of 30s ran out" in message
    assert SERVER_AFTER_STOP in message
    assert ticker.snapshots[-1].phase == "failed"
    assert len(ticker.snapshots) < 40
    assert client.closed == [1]


def test_cancel_from_another_thread_stops_a_silent_stream_within_a_second() -> None:
    block = Block()
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), block]])
    deadline = Deadline(None)
    timer = threading.Timer(0.3, deadline.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded, match="was cancelled"):
            pull_model(client, "tiny", deadline=deadline)
        assert time.monotonic() - started < 1.3
    finally:
        block.release.set()
        timer.cancel()
    deadline_for_close = time.monotonic() + 5
    while not client.closed and time.monotonic() < deadline_for_close:
        time.sleep(0.01)
    assert client.closed == [1]  # closed once the pending read returned


def test_ctrl_c_closes_the_stream_and_says_what_the_server_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    block = Block()
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), block]])
    snapshots: list[ProgressSnapshot] = []
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        with (
            caplog.at_level(logging.WARNING, logger="ollama_ready.pull"),
            pytest.raises(KeyboardInterrupt),
        ):
            pull_model(client, "tiny", reporter=snapshots.append)
        assert time.monotonic() - started < 1.3
    finally:
        block.release.set()
        timer.cancel()
    assert snapshots[-1].phase == "failed"
    assert snapshots[-1].message == f"interrupted. {SERVER_AFTER_STOP}"
    assert any("OLLAMA_NOPRUNE" in message for message in caplog.messages)


def test_an_expired_deadline_sends_nothing(clock: FakeClock) -> None:
    client = ScriptedClient()
    with pytest.raises(DeadlineExceeded):
        pull_model(client, "tiny", deadline=Deadline(0, clock=clock))
    assert client.pulls == []
    assert client.shows == []


# --- reporters only observe --------------------------------------------------------------------


def test_a_failing_reporter_never_breaks_the_pull(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[ProgressSnapshot] = []

    def broken(snapshot: ProgressSnapshot) -> None:
        calls.append(snapshot)
        raise ValueError("reporter bug")

    with caplog.at_level(logging.WARNING, logger="ollama_ready.pull"):
        result = pull_model(ScriptedClient(), "tiny", clock=clock, reporter=broken)
    assert result.pulled
    assert len(calls) == 1  # dropped after its first failure
    assert any("progress reporter" in message for message in caplog.messages)


def test_reporter_names_are_accepted(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    pull_model(ScriptedClient(), "tiny", clock=clock, reporter="lines")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tiny:latest: success: 1.0 KB in 0.0s (1 KB downloaded, 10 B already present)"
    )


# --- sharing between concurrent callers --------------------------------------------------------


def test_concurrent_callers_share_one_pull_and_its_result() -> None:
    block = Block()
    script = success_script()
    client = ScriptedClient(scripts=[[*script[:3], block, *script[3:]]])
    results: list[PullResult] = []
    seen: list[list[ProgressSnapshot]] = [[] for _ in range(32)]

    def ensure(index: int) -> None:
        results.append(pull_model(client, "tiny", reporter=seen[index].append))

    threads = [threading.Thread(target=ensure, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    block.release.set()
    for thread in threads:
        thread.join(10)
    assert len(client.pulls) == 1
    assert len(results) == 32
    assert all(result is results[0] for result in results)
    assert sum(1 for snapshots in seen if snapshots and snapshots[-1].phase == "done") >= 31


def test_followers_share_a_permanent_failure() -> None:
    block = Block()
    failure = error_line("pull model manifest: file does not exist")
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), block, failure]])
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            pull_model(client, "tiny")
        except ModelNotFound as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    block.release.set()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 4
    assert len(client.pulls) == 1


def test_a_follower_outlives_a_leader_whose_deadline_ran_out() -> None:
    block = Block()
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), block]])
    leader_error: list[BaseException] = []

    def lead() -> None:
        try:
            pull_model(client, "tiny", deadline=Deadline(0.3))
        except DeadlineExceeded as exc:
            leader_error.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    time.sleep(0.1)
    try:
        result = pull_model(client, "tiny", deadline=Deadline(10))
    finally:
        block.release.set()
        leader.join(5)
    assert leader_error
    assert result.attempts == 1  # the follower led a pull of its own
    assert len(client.pulls) == 2


def test_a_follower_with_a_short_deadline_stops_waiting() -> None:
    block = Block()
    client = ScriptedClient(scripts=[[PullEvent("pulling manifest"), block, *success_script()]])
    leader = threading.Thread(target=pull_model, args=(client, "tiny"))
    leader.start()
    time.sleep(0.1)
    try:
        with pytest.raises(DeadlineExceeded, match="another caller in this process"):
            pull_model(client, "tiny", deadline=Deadline(0.2))
    finally:
        block.release.set()
        leader.join(5)
    assert len(client.pulls) == 1


def test_always_does_not_settle_for_a_concurrent_missing_check() -> None:
    block = Block()
    client = ScriptedClient(present={ModelName.parse("tiny"): MANIFEST})
    client.scripts.append([PullEvent("pulling manifest"), block, *success_script()])
    results: list[PullResult] = []
    always = threading.Thread(
        target=lambda: results.append(pull_model(client, "tiny", policy="always"))
    )
    always.start()
    time.sleep(0.1)
    try:
        assert not pull_model(client, "tiny").pulled  # the present model, without waiting
    finally:
        block.release.set()
        always.join(5)
    assert results[0].pulled


def test_the_stream_reader_is_bounded_and_closes_its_stream() -> None:
    closed = threading.Event()

    def endless() -> Iterator[PullEvent]:
        try:
            while True:
                yield PullEvent("pulling 1df98b4ea3fe", DIGEST, 10, 1)
        finally:
            closed.set()

    with _Pump(endless(), "m") as pump:
        time.sleep(0.2)  # nobody reads: the reader must stop filling the queue
        assert 0 < pump._queue.qsize() <= _QUEUE_SIZE
    assert closed.wait(2)


def test_the_pacer_pauses_only_a_fast_stream() -> None:
    pacer = _Pacer(pause=0.05, fast=0.0125, ready=0.0005)
    assert pacer.pause_after(0.0, 0.002) == 0.0  # the first line: no interval yet
    assert pacer.pause_after(0.002, 0.004) == 0.05  # waited 2 ms, 2 ms after the line before
    assert pacer.pause_after(0.054, 0.0541) == 0.0  # already there after the pause
    assert pacer.pause_after(0.0541, 0.0542) == 0.0
    assert pacer.pause_after(0.0542, 0.056) == 0.05  # waiting again: the stream is still fast


def test_the_pacer_never_pauses_a_stream_at_the_real_servers_cadence() -> None:
    pacer = _Pacer(pause=0.05, fast=0.0125, ready=0.0005)
    arrivals = [0.06 * i for i in range(1, 50)]
    assert not any(pacer.pause_after(arrived - 0.06, arrived) for arrived in arrivals)


def test_after_a_pause_a_line_that_comes_late_is_not_a_fast_stream() -> None:
    # 0.01 s of waiting after a 0.05 s pause: 0.06 s since the line before, a slow stream.
    pacer = _Pacer(pause=0.05, fast=0.0125, ready=0.0005)
    pacer.pause_after(0.0, 0.002)
    assert pacer.pause_after(0.002, 0.004) == 0.05
    assert pacer.pause_after(0.054, 0.064) == 0.0


def ticking(count: int, interval: float, sent_at: list[float] | None = None) -> Iterator[PullEvent]:
    """A server that sends a line every ``interval`` seconds, read or not, like a socket.

    Line ``i`` has ``completed == i``; ``sent_at[i]`` is when it was sent.
    """
    sent: queue.SimpleQueue[PullEvent] = queue.SimpleQueue()

    def send() -> None:
        for completed in range(count):
            time.sleep(interval)
            if sent_at is not None:
                sent_at.append(time.monotonic())
            sent.put(PullEvent("pulling 1df98b4ea3fe", DIGEST, count, completed))

    threading.Thread(target=send, daemon=True).start()
    for _ in range(count):
        yield sent.get()


def test_the_reader_reads_a_fast_stream_in_batches() -> None:
    reads: list[float] = []

    def recorded(events: Iterator[PullEvent]) -> Iterator[PullEvent]:
        for event in events:
            reads.append(time.monotonic())
            yield event

    with _Pump(recorded(ticking(60, 0.002)), "m") as pump:
        assert sum(1 for _ in pump.events(Deadline(5))) == 60
    # Unpaced, every line would be read about 2 ms after the one before; paced, most lines
    # were waiting already when the reader came back from a pause.
    at_once = sum(1 for before, after in itertools.pairwise(reads) if after - before < 0.001)
    assert at_once >= 30


def test_batched_lines_reach_the_caller_within_a_fraction_of_a_second() -> None:
    sent_at: list[float] = []
    delays: list[float] = []
    with _Pump(ticking(150, 0.002, sent_at), "m") as pump:
        for event in pump.events(Deadline(5)):
            assert event.completed is not None
            delays.append(time.monotonic() - sent_at[event.completed])
    assert len(delays) == 150
    assert max(delays) <= 0.15 + 0.1  # a 50 ms pause and a 100 ms look, plus a loaded machine


def test_closing_the_pump_ends_a_pause_at_once() -> None:
    closed = threading.Event()

    def fast() -> Iterator[PullEvent]:
        try:
            yield from ticking(1000, 0.002)
        finally:
            closed.set()

    pump = _Pump(fast(), "m", pacer=_Pacer(pause=60.0))
    with pump:
        events = pump.events(Deadline(5))
        next(events)
        time.sleep(0.05)  # the reader is now in its 60 s pause
    assert closed.wait(5)
    pump._thread.join(5)
    assert not pump._thread.is_alive()


def test_different_servers_do_not_share() -> None:
    first, second = ScriptedClient(), ScriptedClient(base_url="http://other:11434")
    assert pull_model(first, "tiny").pulled
    assert pull_model(second, "tiny").pulled


# --- several models ----------------------------------------------------------------------------


def test_pull_models_reports_every_outcome_in_order(clock: FakeClock) -> None:
    class PerModel(ScriptedClient):
        def pull(self, name: str, **kwargs: object) -> Iterator[PullEvent]:
            if name.startswith("missing"):
                self.scripts.insert(0, [error_line("pull model manifest: file does not exist")])
            return super().pull(name, **kwargs)  # type: ignore[arg-type]

    client = PerModel(present={ModelName.parse("present"): MANIFEST})
    outcomes = pull_models(client, ["a", "missing", "present", "not valid!!", "b"], clock=clock)
    assert [o.name for o in outcomes] == ["a", "missing", "present", "not valid!!", "b"]
    assert [o.ok for o in outcomes] == [True, False, True, False, True]
    assert isinstance(outcomes[1].error, ModelNotFound)
    assert isinstance(outcomes[3].error, InvalidModelName)
    assert [r.pulled for r in outcomes.results] == [True, False, True]
    assert not outcomes.ok
    assert set(outcomes.errors) == {"missing", "not valid!!"}
    with pytest.raises(AggregateError, match="2 of 5 model pulls failed") as caught:
        outcomes.raise_for_errors()
    assert len(caught.value.results) == 3
    assert len(outcomes) == 5


def test_pull_models_runs_at_most_concurrency_pulls_at_once() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    class Slow(ScriptedClient):
        def pull(self, name: str, **kwargs: object) -> Iterator[PullEvent]:
            events = super().pull(name, **kwargs)  # type: ignore[arg-type]

            def tracked() -> Iterator[PullEvent]:
                nonlocal active, peak
                with lock:
                    active += 1
                    peak = max(peak, active)
                time.sleep(0.05)
                try:
                    yield from events
                finally:
                    with lock:
                        active -= 1

            return tracked()

    outcomes = pull_models(Slow(), [f"m{i}" for i in range(8)], concurrency=3)
    assert outcomes.ok
    assert peak == 3


def test_pull_models_shares_digest_pins_by_name(clock: FakeClock) -> None:
    outcomes = pull_models(ScriptedClient(), ["a", "b"], digests={"b": "f" * 64}, clock=clock)
    assert outcomes[0].ok
    assert isinstance(outcomes[1].error, DigestMismatch)


def test_pull_models_edge_cases() -> None:
    assert len(pull_models(ScriptedClient(), [])) == 0
    with pytest.raises(ConfigError, match="concurrency"):
        pull_models(ScriptedClient(), ["a"], concurrency=0)


def test_results_are_frozen() -> None:
    result = pull_model(ScriptedClient(), "tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.pulled = False  # type: ignore[misc]
