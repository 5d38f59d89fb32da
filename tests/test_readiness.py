"""Unit tests of the readiness strategies on a FakeClock and a simulated server."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from ollama_ready.client import ModelDetails, OllamaClient, RunningModel, Timeout
from ollama_ready.clock import Deadline
from ollama_ready.errors import (
    HostNotAllowed,
    ModelNotPresent,
    NotReadyError,
    OllamaConnectionError,
    OllamaReadyError,
    ProtocolError,
    ServerBusy,
)
from ollama_ready.readiness import (
    DEFAULT_STRATEGY,
    FailureKind,
    Healthcheck,
    Poll,
    ProbeFailure,
    ReadyLevel,
    ReadyReport,
    Sequence,
    ServerHandle,
    Sleep,
    Strategy,
    wait_until_ready,
)
from ollama_ready.testing import FakeClock

HOST = "http://127.0.0.1:11434"
ANSWER_SECONDS = 0.001
REFUSE_SECONDS = 0.0002


@dataclass
class Call:
    """One request the simulated server received."""

    name: str
    at: float
    timeout: tuple[float, float]
    path: str = "/"
    method: str = "HEAD"


@dataclass
class SimServer:
    """A stand-in for OllamaClient over a server whose state follows the fake clock.

    Until ``refused_until`` connections are refused; then until ``hang_until`` a connection is
    accepted but not answered (a waiting probe gets its answer the moment serving starts);
    then it answers, first with the queued ``errors``.
    """

    clock: FakeClock
    refused_until: float = 0.0
    hang_until: float = 0.0
    server_version: str = "0.12.11"
    models: set[str] = field(default_factory=set)
    running: list[RunningModel] = field(default_factory=list)
    errors: list[OllamaReadyError] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    base_url: str = HOST
    on_request: Callable[[], None] | None = None
    """Called as each request arrives, before it is answered: a test changes the world here."""

    def __post_init__(self) -> None:
        start = self.clock.monotonic()
        self.refused_until += start
        self.hang_until += start

    @property
    def client(self) -> OllamaClient:
        return cast(OllamaClient, self)

    def _arrive(self, name: str, timeout: Timeout | None, **request: str) -> None:
        assert isinstance(timeout, tuple), "strategies always pass (connect, read)"
        if self.on_request is not None:
            self.on_request()
        now = self.clock.monotonic()
        self.calls.append(Call(name, now, timeout, **request))
        if now < self.refused_until:
            self.clock.advance(REFUSE_SECONDS)
            raise OllamaConnectionError(f"connection refused by {HOST}", kind="refused")
        if now < self.hang_until:
            silence = self.hang_until - now
            if silence > timeout[1]:
                self.clock.advance(timeout[1])
                raise OllamaConnectionError(f"read timed out from {HOST}", kind="timeout")
            self.clock.advance(silence)
        self.clock.advance(ANSWER_SECONDS)
        if self.errors:
            raise self.errors.pop(0)

    def ping(self, *, timeout: Timeout | None = None, path: str = "/", method: str = "HEAD") -> int:
        self._arrive("ping", timeout, path=path, method=method)
        return 200

    def version(self, *, timeout: Timeout | None = None) -> str:
        self._arrive("version", timeout)
        return self.server_version

    def show(self, name: str, *, verbose: bool = False, timeout: Timeout | None = None) -> Any:
        self._arrive("show", timeout)
        if name not in self.models:
            raise ModelNotPresent(f"model '{name}' not found", model=name)
        return ModelDetails(
            model=name,
            modelfile="",
            parameters="",
            template="",
            details={},
            model_info={},
            capabilities=(),
            raw={},
        )

    def ps(self, *, timeout: Timeout | None = None) -> tuple[RunningModel, ...]:
        self._arrive("ps", timeout)
        return tuple(self.running)

    def names(self) -> list[str]:
        return [call.name for call in self.calls]


def running(name: str, size: int, size_vram: int) -> RunningModel:
    return RunningModel(name=name, model=name, digest="ab" * 32, size=size, size_vram=size_vram)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- Poll: the schedule ----------------------------------------------------------------------


def test_poll_schedules_come_from_backoff_generators() -> None:
    def first(poll: Poll, n: int) -> list[float]:
        return [round(w, 9) for w in itertools.islice(poll.waits(), n)]

    assert first(Poll(schedule="constant", interval=0.1, jitter=0), 3) == [0.1, 0.1, 0.1]
    assert first(Poll(schedule="expo", interval=0.1, max_interval=1, jitter=0), 6) == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]
    assert first(Poll(schedule="fibo", interval=0.1, max_interval=0.6, jitter=0), 7) == [
        0.1,
        0.1,
        0.2,
        0.3,
        0.5,
        0.6,
        0.6,
    ]


def test_poll_without_max_interval_caps_growth_at_two_seconds() -> None:
    waits = list(itertools.islice(Poll(interval=0.5, jitter=0).waits(), 6))
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert next(Poll(interval=5, jitter=0).waits()) == 5


def test_refused_connections_are_probed_at_a_constant_interval() -> None:
    poll = Poll(interval=0.1, jitter=0)
    assert poll.schedule == "expo"
    assert list(itertools.islice(poll.waits(refused=True), 4)) == [0.1] * 4


def test_jitter_spreads_each_wait_within_its_fraction() -> None:
    waits = list(itertools.islice(Poll(interval=0.1, jitter=0.2).waits(refused=True), 500))
    assert all(0.08 <= w <= 0.12 for w in waits)
    assert len({round(w, 6) for w in waits}) > 100
    assert math.isclose(sum(waits) / len(waits), 0.1, rel_tol=0.03)


def test_default_poll_is_fast_but_stays_under_25_connections_per_second() -> None:
    poll = Poll()
    assert poll == DEFAULT_STRATEGY
    waits = list(itertools.islice(poll.waits(refused=True), 2000))
    mean = sum(waits) / len(waits)
    assert 1 / mean <= 24  # attempts per second while refused; a wait's edges add < 1
    assert max(waits) / 2 <= 0.025  # a median lag near half the interval
    assert poll.probe_timeout >= 10  # a connected probe waits for its answer


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": math.nan},
        {"interval": math.inf},
        {"max_interval": 0},
        {"max_interval": math.nan},
        {"interval": 1, "max_interval": 0.5},
        {"jitter": -0.1},
        {"jitter": 1},
        {"jitter": math.nan},
        {"timeout": 0},
        {"timeout": -5},
        {"timeout": math.nan},
        {"probe_timeout": 0},
        {"connect_timeout": math.nan},
        {"schedule": "linear"},
        {"path": "api/version"},
        {"path": "/ x"},
        {"method": "POST"},
    ],
)
def test_poll_rejects_bad_parameters_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked below for some
        Poll(**kwargs)


def test_bad_interval_message_names_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"interval must be a positive number.*-1"):
        Poll(interval=-1)
    with pytest.raises(TypeError, match="interval must be a number"):
        Poll(interval="fast")  # type: ignore[arg-type]


# --- Poll: against the server's start-up phases ----------------------------------------------


def test_poll_through_refused_connections(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=1.525)
    report = Poll(interval=0.05, jitter=0)(server.client, Deadline(10, clock=clock))
    assert report.level is ReadyLevel.SERVER
    assert report.host == HOST
    assert report.last_failure is not None
    assert report.last_failure.kind is FailureKind.REFUSED
    # probe starts are spaced by the interval, not interval + probe time
    starts = [call.at - server.calls[0].at for call in server.calls]
    assert starts[:3] == pytest.approx([0, 0.05, 0.1])
    assert report.attempts == len(server.calls) == 32  # 31 refused: at 0, 0.05, ..., 1.5
    assert report.waited == pytest.approx(1.55 + ANSWER_SECONDS)


def test_a_connected_probe_waits_for_the_answer(clock: FakeClock) -> None:
    server = SimServer(clock, hang_until=2.0)
    report = Poll()(server.client, Deadline(60, clock=clock))
    assert report.attempts == 1
    assert report.last_failure is None
    assert report.waited == pytest.approx(2.0 + ANSWER_SECONDS)  # no lag at all
    assert server.calls[0].timeout == (Poll().connect_timeout, Poll().probe_timeout)


def test_probe_timeouts_never_reach_past_the_deadline(clock: FakeClock) -> None:
    server = SimServer(clock, hang_until=100)
    with pytest.raises(NotReadyError, match="connected but no answer") as caught:
        Poll(connect_timeout=2, probe_timeout=30)(server.client, Deadline(1.5, clock=clock))
    assert server.calls[0].timeout == (1.5, 1.5)
    assert caught.value.last_failure is not None
    assert caught.value.last_failure.startswith("connected but no answer")
    assert clock.monotonic() - server.calls[0].at == pytest.approx(1.5)


def test_after_a_timed_out_probe_the_next_starts_at_once(clock: FakeClock) -> None:
    server = SimServer(clock, hang_until=3.5)
    report = Poll(interval=0.05, probe_timeout=1, jitter=0)(
        server.client, Deadline(10, clock=clock)
    )
    assert [c.at - server.calls[0].at for c in server.calls] == pytest.approx([0, 1, 2, 3])
    assert clock.sleeps == []
    assert report.attempts == 4
    assert report.waited == pytest.approx(3.5 + ANSWER_SECONDS)


def test_refused_then_bound_then_serving(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=0.3, hang_until=2.0)
    report = Poll(interval=0.05, jitter=0)(server.client, Deadline(10, clock=clock))
    assert report.waited == pytest.approx(2.0 + ANSWER_SECONDS)
    assert report.attempts == 8  # 7 refused probes in 0.3 s, then one that waits
    assert report.last_failure is not None
    assert report.last_failure.kind is FailureKind.REFUSED


def test_poll_retries_http_errors(clock: FakeClock) -> None:
    busy = [ServerBusy("server busy", status=503, host=HOST) for _ in range(3)]
    server = SimServer(clock, errors=list(busy))
    report = Poll(interval=0.1, jitter=0)(server.client, Deadline(10, clock=clock))
    assert report.attempts == 4
    # failed answers back off (expo), unlike refused connections
    starts = [call.at - server.calls[0].at for call in server.calls]
    assert starts == pytest.approx([0, 0.1, 0.3, 0.7])
    assert report.last_failure == ProbeFailure(
        FailureKind.HTTP_STATUS, "HTTP 503: server busy", 503
    )
    assert str(report.last_failure) == "HTTP status: HTTP 503: server busy"


def test_poll_retries_a_proxy_page(clock: FakeClock) -> None:
    server = SimServer(clock, errors=[ProtocolError("an HTML page answered", host=HOST)])
    report = Poll(interval=0.1)(server.client, Deadline(10, clock=clock))
    assert report.attempts == 2
    assert report.last_failure is not None
    assert report.last_failure.kind is FailureKind.PROTOCOL


def test_the_host_header_guard_fails_at_once(clock: FakeClock) -> None:
    guard = HostNotAllowed(
        "403 from the host guard", status=403, host=HOST, hint="set OLLAMA_ORIGINS"
    )
    server = SimServer(clock, errors=[guard])
    with pytest.raises(NotReadyError, match="403 from the host guard") as caught:
        Poll()(server.client, Deadline(600, clock=clock))
    assert len(server.calls) == 1
    assert caught.value.hint == "set OLLAMA_ORIGINS"
    assert caught.value.__cause__ is guard


def test_a_server_that_never_comes_up_fails_at_the_deadline(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=math.inf)
    deadline = Deadline(5, clock=clock)
    with pytest.raises(NotReadyError) as caught:
        Poll()(server.client, deadline)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert deadline.elapsed() == pytest.approx(5)
    assert error.phase == "wait"
    assert error.host == HOST
    assert error.last_failure is not None
    assert error.last_failure.startswith("connection refused")
    assert "last failure: connection refused" in str(error)
    assert error.hint is not None
    assert "ollama serve" in error.hint
    assert 100 < len(server.calls) <= 5 * 25


def test_poll_own_timeout_is_shorter_than_the_deadline(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=math.inf)
    deadline = Deadline(60, clock=clock)
    with pytest.raises(NotReadyError):
        Poll(timeout=2)(server.client, deadline)
    assert deadline.elapsed() == pytest.approx(2)


def test_an_expired_deadline_probes_nothing(clock: FakeClock) -> None:
    server = SimServer(clock)
    deadline = Deadline(1, clock=clock)
    clock.advance(1)
    with pytest.raises(NotReadyError, match="no probe completed"):
        Poll()(server.client, deadline)
    assert server.calls == []


def test_poll_a_custom_path_and_method(clock: FakeClock) -> None:
    server = SimServer(clock)
    report = Poll(path="/api/tags", method="GET")(server.client, Deadline(5, clock=clock))
    assert (server.calls[0].path, server.calls[0].method) == ("/api/tags", "GET")
    assert report.version is None


def test_polling_get_api_version_records_the_version(clock: FakeClock) -> None:
    server = SimServer(clock, server_version="0.12.11")
    report = Poll(path="/api/version", method="GET")(server.client, Deadline(5, clock=clock))
    assert server.names() == ["version"]
    assert report.version == "0.12.11"
    assert report.level is ReadyLevel.VERSION


# --- Sleep -----------------------------------------------------------------------------------


def test_sleep_then_verify(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=1.0)
    report = Sleep(2)(server.client, Deadline(10, clock=clock))
    assert clock.sleeps == [2]
    assert server.names() == ["ping"]
    assert report.level is ReadyLevel.SERVER
    assert report.attempts == 1


def test_sleep_that_was_too_short_says_so(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=3.0)
    with pytest.raises(NotReadyError, match=r"still not ready after sleeping 2 s") as caught:
        Sleep(2)(server.client, Deadline(10, clock=clock))
    assert caught.value.hint is not None
    assert "Poll()" in caught.value.hint
    assert caught.value.last_failure is not None
    assert caught.value.last_failure.startswith("connection refused")


def test_sleep_without_verify_is_the_literal_recipe(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=math.inf)
    report = Sleep(2, verify=False)(server.client, Deadline(10, clock=clock))
    assert server.calls == []
    assert report.level is None
    assert report.waited == 2
    assert report.describe() == f"{HOST}: nothing verified after 2.000 s and 0 probes"


def test_sleep_never_passes_the_deadline(clock: FakeClock) -> None:
    server = SimServer(clock)
    with pytest.raises(NotReadyError, match="deadline ran out during the 5 s sleep"):
        Sleep(5)(server.client, Deadline(3, clock=clock))
    assert clock.sleeps == [3]
    assert server.calls == []


@pytest.mark.parametrize("seconds", [-1, math.nan, math.inf])
def test_sleep_rejects_bad_durations(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        Sleep(seconds)


# --- Healthcheck: Docker's semantics ---------------------------------------------------------


def test_healthcheck_has_dockers_defaults() -> None:
    check = Healthcheck()
    assert (check.interval, check.timeout, check.retries) == (30, 30, 3)
    assert (check.start_period, check.start_interval, check.success_threshold) == (0, 5, 1)
    assert check.effective_level is ReadyLevel.SERVER


def test_first_check_runs_one_interval_after_the_start(clock: FakeClock) -> None:
    server = SimServer(clock)
    report = Healthcheck(interval=1)(server.client, Deadline(60, clock=clock))
    assert clock.sleeps == [1]
    assert report.attempts == 1
    assert report.level is ReadyLevel.SERVER


def test_unhealthy_after_retries_consecutive_failures(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=math.inf)
    with pytest.raises(NotReadyError, match="unhealthy after 3 consecutive failed checks"):
        Healthcheck(interval=1, retries=3)(server.client, Deadline(60, clock=clock))
    assert len(server.calls) == 3
    assert clock.sleeps == [1, 1, 1]


def test_failures_in_the_start_period_do_not_count(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=math.inf)
    check = Healthcheck(interval=5, start_period=10, start_interval=1, retries=2)
    with pytest.raises(NotReadyError, match="2 consecutive"):
        check(server.client, Deadline(60, clock=clock))
    # checks at 1..9 are inside the start period; the one at 10 counts, then one at 15
    assert clock.sleeps == [1] * 10 + [5]
    assert len(server.calls) == 11


def test_after_a_success_failures_in_the_start_period_count(clock: FakeClock) -> None:
    server = SimServer(clock, errors=[])
    check = Healthcheck(
        interval=5, start_period=100, start_interval=1, retries=2, success_threshold=2
    )

    count = itertools.count()

    def succeed_once_then_refuse() -> None:
        if next(count) > 0:
            server.refused_until = math.inf

    server.on_request = succeed_once_then_refuse
    with pytest.raises(NotReadyError, match="2 consecutive"):
        check(server.client, Deadline(600, clock=clock))
    # after the first success the interval is the normal one and failures count
    assert clock.sleeps == [1, 5, 5]


def test_success_threshold_needs_consecutive_successes(clock: FakeClock) -> None:
    busy = ServerBusy("busy", status=503, host=HOST)
    server = SimServer(clock)
    outcomes = iter([None, busy, None, None, None])

    def next_outcome() -> None:
        error = next(outcomes)
        if error is not None:
            server.errors.append(error)

    server.on_request = next_outcome
    report = Healthcheck(interval=1, retries=5, success_threshold=3)(
        server.client, Deadline(60, clock=clock)
    )
    assert report.attempts == 5  # ok, fail (resets), ok, ok, ok
    assert report.last_failure is not None
    assert report.last_failure.status == 503


def test_each_check_is_bounded_by_its_timeout(clock: FakeClock) -> None:
    server = SimServer(clock, hang_until=math.inf)
    with pytest.raises(NotReadyError, match="connected but no answer"):
        Healthcheck(interval=1, timeout=2, retries=2)(server.client, Deadline(60, clock=clock))
    assert [call.timeout for call in server.calls] == [(2, 2), (2, 2)]
    assert clock.monotonic() - server.calls[0].at == pytest.approx(2 + 1 + 2)


def test_a_check_that_would_start_after_the_deadline_fails_now(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=math.inf)
    deadline = Deadline(45, clock=clock)
    with pytest.raises(NotReadyError, match="would start after the deadline") as caught:
        Healthcheck(retries=10)(server.client, deadline)
    assert len(server.calls) == 1
    assert deadline.elapsed() == pytest.approx(30 + REFUSE_SECONDS)
    assert caught.value.last_failure is not None


def test_version_level_checks_the_specifier(clock: FakeClock) -> None:
    server = SimServer(clock, server_version="0.5.7")
    with pytest.raises(NotReadyError, match="wrong version") as caught:
        Healthcheck(version=">=0.11", interval=1, retries=2)(
            server.client, Deadline(60, clock=clock)
        )
    assert (
        caught.value.last_failure == "wrong version: server version 0.5.7 does not satisfy >=0.11"
    )
    assert caught.value.hint is not None
    assert "upgrade" in caught.value.hint.lower()


@pytest.mark.parametrize(
    ("version", "requirement", "ok"),
    [
        ("0.12.11", ">=0.11", True),
        ("0.12.11", "0.11", True),
        ("0.11.0", "0.11", True),
        ("0.10.9", "0.11", False),
        ("0.12.0-rc1", ">=0.11", True),
        ("0.12.11", ">=0.11,<0.12", False),
        ("0.0.0", ">=0.1", False),
        ("not-a-version", ">=0.1", False),
    ],
)
def test_version_requirements(clock: FakeClock, version: str, requirement: str, ok: bool) -> None:
    server = SimServer(clock, server_version=version)
    check = Healthcheck(version=requirement, interval=1, retries=1)
    if ok:
        assert check(server.client, Deadline(60, clock=clock)).version == version
    else:
        with pytest.raises(NotReadyError, match="wrong version"):
            check(server.client, Deadline(60, clock=clock))


def test_model_present_waits_for_the_model(clock: FakeClock) -> None:
    server = SimServer(clock)

    def pulled_by_someone_else_at_3_s() -> None:
        if clock.monotonic() >= 1003:
            server.models.add("llama3.2:1b")

    server.on_request = pulled_by_someone_else_at_3_s
    check = Healthcheck(model="llama3.2:1b", interval=1, retries=5)
    report = check(server.client, Deadline(60, clock=clock))
    assert check.effective_level is ReadyLevel.MODEL_PRESENT
    assert report.level is ReadyLevel.MODEL_PRESENT
    assert report.version == "0.12.11"
    assert report.last_failure is not None
    assert report.last_failure.kind is FailureKind.MODEL_MISSING


def test_model_missing_is_named(clock: FakeClock) -> None:
    server = SimServer(clock)
    check = Healthcheck(model="llama3.2:1b", interval=1, retries=1)
    with pytest.raises(
        NotReadyError, match=r"model missing: model 'llama3\.2:1b' not found"
    ) as caught:
        check(server.client, Deadline(60, clock=clock))
    assert caught.value.hint is not None
    assert "pull" in caught.value.hint


def test_model_loaded_level(clock: FakeClock) -> None:
    server = SimServer(clock, models={"llama3.2:1b"})
    check = Healthcheck(level=ReadyLevel.MODEL_LOADED, model="llama3.2:1b", interval=1, retries=1)
    with pytest.raises(NotReadyError, match=r"model not loaded: llama3\.2:1b is present but not"):
        check(server.client, Deadline(60, clock=clock))
    server.running.append(running("llama3.2:1b", 1000, 0))
    report = check(server.client, Deadline(60, clock=clock))
    assert report.level is ReadyLevel.MODEL_LOADED


def test_model_loaded_level_tells_missing_from_not_loaded(clock: FakeClock) -> None:
    server = SimServer(clock)
    check = Healthcheck(level="loaded", model="llama3.2:1b", interval=1, retries=1)
    with pytest.raises(NotReadyError, match="model missing"):
        check(server.client, Deadline(60, clock=clock))


def test_model_on_gpu_needs_all_of_it_in_vram(clock: FakeClock) -> None:
    server = SimServer(clock, models={"llama3.2:1b"}, running=[running("llama3.2:1b", 1000, 250)])
    check = Healthcheck(level=ReadyLevel.MODEL_ON_GPU, model="llama3.2:1b", interval=1, retries=1)
    with pytest.raises(NotReadyError, match=r"model not on GPU: .*250 of 1000 bytes.*25% GPU"):
        check(server.client, Deadline(60, clock=clock))
    # names compare as Ollama's do
    server.running = [running("registry.ollama.ai/library/llama3.2:1b", 1000, 1000)]
    assert check(server.client, Deadline(60, clock=clock)).level is ReadyLevel.MODEL_ON_GPU


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "interval"),
        ({"timeout": math.nan}, "timeout"),
        ({"start_interval": -1}, "start_interval"),
        ({"start_period": -1}, "start_period"),
        ({"retries": 0}, "retries"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"level": ReadyLevel.MODEL_PRESENT}, "needs a model"),
        ({"level": "nonsense"}, "unknown readiness level"),
        ({"version": ">>1"}, "invalid version requirement"),
        ({"model": "bad name!"}, "model"),
    ],
)
def test_healthcheck_rejects_bad_parameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Healthcheck(**kwargs)


def test_levels_are_ordered_and_parse_cli_names() -> None:
    assert ReadyLevel.SERVER < ReadyLevel.VERSION < ReadyLevel.MODEL_PRESENT
    assert ReadyLevel.MODEL_PRESENT < ReadyLevel.MODEL_LOADED < ReadyLevel.MODEL_ON_GPU
    names = ["server", "version", "model", "loaded", "gpu"]
    assert [ReadyLevel.parse(n) for n in names] == list(ReadyLevel)
    assert ReadyLevel.parse("MODEL-ON-GPU") is ReadyLevel.MODEL_ON_GPU
    assert ReadyLevel.parse(2) is ReadyLevel.VERSION
    with pytest.raises(ValueError, match="valid: server, version"):
        ReadyLevel.parse("ready")


def test_the_level_follows_from_what_is_given() -> None:
    assert Healthcheck(version="0.11").effective_level is ReadyLevel.VERSION
    assert (
        Healthcheck(level=ReadyLevel.SERVER, version="0.11").effective_level is ReadyLevel.VERSION
    )
    assert Healthcheck(level="gpu", model="m").effective_level is ReadyLevel.MODEL_ON_GPU


# --- Sequence: one deadline for all steps ----------------------------------------------------


def test_then_builds_a_flat_sequence() -> None:
    poll = Poll()
    sequence = Sleep(2).then(poll).then(Healthcheck(), Sleep(1))
    assert sequence == Sequence(Sleep(2), poll, Healthcheck(), Sleep(1))
    assert len(Sequence(sequence, Sequence(poll)).steps) == 5


def test_steps_share_one_deadline(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=math.inf)
    deadline = Deadline(5, clock=clock)
    with pytest.raises(NotReadyError):
        Sleep(2, verify=False).then(Poll())(server.client, deadline)
    assert deadline.elapsed() == pytest.approx(5)  # not 2 + 5


def test_a_step_that_finds_no_time_left_fails(clock: FakeClock) -> None:
    server = SimServer(clock)
    deadline = Deadline(2, clock=clock)
    with pytest.raises(NotReadyError, match="no probe completed"):
        Sequence(Sleep(2, verify=False), Poll())(server.client, deadline)
    assert server.calls == []


def test_sequence_merges_the_reports(clock: FakeClock) -> None:
    server = SimServer(clock, refused_until=0.5, models={"m"})
    sequence = Sleep(0.2, verify=False).then(
        Poll(interval=0.1, jitter=0), Healthcheck(model="m", interval=1)
    )
    report = sequence(server.client, Deadline(60, clock=clock))
    assert report.level is ReadyLevel.MODEL_PRESENT
    assert report.version == "0.12.11"
    assert report.attempts == len([c for c in server.calls if c.name == "ping"]) + 1
    assert report.last_failure is not None
    assert report.last_failure.kind is FailureKind.REFUSED
    assert report.waited == pytest.approx(clock.monotonic() - 1000)
    assert report.strategy.startswith("Sequence(steps=(Sleep(")


def test_a_plain_function_is_a_strategy(clock: FakeClock) -> None:
    seen: list[tuple[OllamaClient, Deadline]] = []

    def instant(client: OllamaClient, deadline: Deadline) -> ReadyReport:
        seen.append((client, deadline))
        return ReadyReport(host=client.base_url, level=ReadyLevel.SERVER, attempts=1)

    assert isinstance(instant, Strategy)
    server = SimServer(clock)
    deadline = Deadline(5, clock=clock)
    report = Sequence(instant, Sleep(1, verify=False))(server.client, deadline)
    assert seen == [(server.client, deadline)]
    assert report.level is ReadyLevel.SERVER
    assert report.strategy.startswith("Sequence(steps=(<function")


def test_sequence_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Sequence()
    with pytest.raises(TypeError, match="must be callable"):
        Sequence(42)  # type: ignore[arg-type]


def test_a_failing_step_stops_servers_started_before_it(clock: FakeClock) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    handle = ServerHandle(HOST, process=process, stop_timeout=5)

    def started(client: OllamaClient, deadline: Deadline) -> ReadyReport:
        return ReadyReport(host=client.base_url, level=ReadyLevel.SERVER, server=handle)

    server = SimServer(clock, refused_until=math.inf)
    try:
        with pytest.raises(NotReadyError):
            Sequence(started, Poll(timeout=1))(server.client, Deadline(5, clock=clock))
        assert not handle.running
        assert process.returncode is not None
    finally:
        process.kill()
        process.wait()


def test_sequence_keeps_the_server_handle(clock: FakeClock) -> None:
    handle = ServerHandle(HOST)

    def started(client: OllamaClient, deadline: Deadline) -> ReadyReport:
        return ReadyReport(host=client.base_url, level=ReadyLevel.SERVER, server=handle)

    server = SimServer(clock)
    report = Sequence(started, Poll())(SimServer(clock).client, Deadline(5, clock=clock))
    assert report.server is handle
    assert not handle.started
    assert handle.stop() is None
    assert server.calls == []


# --- wait_until_ready ------------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wait_until_ready_times_out_on_a_closed_port() -> None:
    clock = FakeClock()
    port = _closed_port()
    with pytest.raises(NotReadyError, match="connection refused") as caught:
        wait_until_ready(f"127.0.0.1:{port}", timeout=0.5, clock=clock)
    assert caught.value.host == f"http://127.0.0.1:{port}"
    assert clock.slept == pytest.approx(0.5, abs=0.01)


def test_wait_until_ready_takes_a_spec_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    port = _closed_port()
    with pytest.raises(NotReadyError, match=r"Poll\(interval=0.25"):
        wait_until_ready(f"127.0.0.1:{port}", strategy="poll:interval=0.25", timeout=1, clock=clock)
    assert clock.sleeps[0] == pytest.approx(0.25, abs=0.03)

    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    monkeypatch.setenv("OLLAMA_READY_WAIT", "sleep:3,verify=false")
    monkeypatch.setenv("OLLAMA_READY_TIMEOUT", "10")
    clock = FakeClock()
    report = wait_until_ready(clock=clock)
    assert report.level is None
    assert report.host == f"http://127.0.0.1:{port}"
    assert clock.sleeps == [3]


def test_wait_until_ready_passes_one_deadline_to_a_function() -> None:
    clock = FakeClock()
    seen: list[float] = []

    def check(client: OllamaClient, deadline: Deadline) -> ReadyReport:
        seen.append(deadline.remaining())
        return ReadyReport(host=client.base_url, level=ReadyLevel.SERVER)

    report = wait_until_ready("localhost:9", strategy=check, timeout=42, clock=clock)
    assert seen == [42]
    assert report.host == "http://localhost:9"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OllamaConnectionError("refused", kind="refused"), FailureKind.REFUSED),
        (OllamaConnectionError("read timed out", kind="timeout"), FailureKind.NO_ANSWER),
        (OllamaConnectionError("reset by peer", kind="reset"), FailureKind.CONNECTION),
        (OllamaConnectionError("no such host", kind="dns"), FailureKind.CONNECTION),
        (ServerBusy("busy", status=503), FailureKind.HTTP_STATUS),
        (ProtocolError("an HTML page"), FailureKind.PROTOCOL),
        (ModelNotPresent("model 'x' not found"), FailureKind.MODEL_MISSING),
    ],
)
def test_failures_are_classified_by_kind(error: OllamaReadyError, kind: FailureKind) -> None:
    failure = ProbeFailure.from_error(error)
    assert failure.kind is kind
    assert str(failure).startswith(f"{kind.value}: ")
    assert error.message in failure.detail


def test_a_report_serializes_to_json(clock: FakeClock) -> None:
    server = SimServer(clock, errors=[ServerBusy("busy", status=503, host=HOST)])
    report = Poll(interval=0.1, jitter=0)(server.client, Deadline(5, clock=clock))
    data = json.loads(json.dumps(report.to_dict()))
    assert data == {
        "host": HOST,
        "level": "server",
        "version": None,
        "attempts": 2,
        "waited": pytest.approx(0.1 + ANSWER_SECONDS),
        "last_failure": {"kind": "http_status", "detail": "HTTP 503: busy", "status": 503},
        "strategy": repr(Poll(interval=0.1, jitter=0)),
        "server": None,
    }
    with_server = ReadyReport(host=HOST, level=None, server=ServerHandle(HOST))
    assert with_server.to_dict()["server"] == {"started": False, "pid": None, "log_file": None}


def test_refused_probes_do_not_advance_the_backoff(clock: FakeClock) -> None:
    busy: list[OllamaReadyError] = [ServerBusy("busy", status=503, host=HOST) for _ in range(2)]
    server = SimServer(clock, refused_until=0.125, errors=busy)
    Poll(interval=0.05, jitter=0)(server.client, Deadline(10, clock=clock))
    starts = [round(call.at - server.calls[0].at, 6) for call in server.calls]
    # refused at 0, 0.05, 0.1; then 503 at 0.15 and 0.2; then 200 at 0.3
    assert starts == pytest.approx([0, 0.05, 0.1, 0.15, 0.2, 0.3])


def test_default_poll_meets_the_readiness_lag_targets_in_a_model() -> None:
    """The benchmark's refused start mode, simulated: ready at T ~ U(0.2, 5) s."""
    picks = random.Random(3)
    lags: list[float] = []
    rates: list[float] = []
    attempts = waited = 0.0
    for _ in range(400):
        clock = FakeClock()
        ready_at = picks.uniform(0.2, 5)
        server = SimServer(clock, refused_until=ready_at)
        report = Poll()(server.client, Deadline(60, clock=clock))
        lags.append(report.waited - ready_at)
        rates.append(report.attempts / report.waited)
        attempts += report.attempts
        waited += report.waited
    lags.sort()
    assert statistics.median(lags) <= 0.025
    assert lags[int(0.95 * len(lags))] <= 0.100
    assert attempts / waited <= 25  # connection attempts per second over all waits
    assert statistics.mean(rates) <= 25  # and on average per wait
