"""Wait until an Ollama server is ready: interchangeable strategies sharing one deadline.

A *strategy* is any callable ``strategy(client, deadline) -> ReadyReport`` that returns once the
server is ready and raises :class:`~ollama_ready.errors.NotReadyError` (a ``TimeoutError``) when
it is not, naming the phase and the last failure it saw. A plain function is a strategy::

    from ollama_ready.readiness import Healthcheck, Poll, ReadyLevel, Sleep, wait_until_ready

    wait_until_ready()                                   # Poll(): HEAD / until it answers
    wait_until_ready(strategy=Sleep(2).then(Poll()))     # the two steps share ONE deadline
    wait_until_ready(strategy=Healthcheck(level=ReadyLevel.MODEL_PRESENT, model="llama3.2:1b"))
    wait_until_ready(strategy="poll:interval=0.2,timeout=60")   # a spec, as in OLLAMA_READY_WAIT

:class:`Serve` starts ``ollama serve`` when nothing answers on a loopback host, and
:func:`strategy_from_spec` builds strategies from text, including third-party ones registered
under the ``ollama_ready.strategies`` entry-point group.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from ollama_ready._probe import (
    RETRYABLE_ERRORS,
    FailureKind,
    Observation,
    ProbeFailure,
    ReadyLevel,
    Target,
    parse_version_spec,
    probe,
)
from ollama_ready.clock import Clock, Deadline
from ollama_ready.errors import (
    ConfigError,
    ModelNotPresent,
    NotReadyError,
    OllamaReadyError,
    PlacementError,
    ServerTooOld,
)
from ollama_ready.names import ModelName

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

    from ollama_ready._serve import Serve, ServerHandle
    from ollama_ready._spec import strategy_from_spec, strategy_names
    from ollama_ready.client import OllamaClient

__all__ = [
    "DEFAULT_STRATEGY",
    "FailureKind",
    "Healthcheck",
    "Poll",
    "ProbeFailure",
    "ReadyLevel",
    "ReadyReport",
    "Sequence",
    "Serve",
    "ServerHandle",
    "Sleep",
    "Strategy",
    "check",
    "strategy_from_spec",
    "strategy_names",
    "wait_until_ready",
]

logger = logging.getLogger(__name__)

_LAZY: dict[str, str] = {
    "Serve": "_serve",
    "ServerHandle": "_serve",
    "strategy_from_spec": "_spec",
    "strategy_names": "_spec",
}

Schedule = Literal["constant", "expo", "fibo"]
SCHEDULES: tuple[Schedule, ...] = ("expo", "fibo", "constant")

# Poll() defaults. While refused, the lag is the time to the next probe start, uniform over
# the interval: a 42 ms mean gives a median lag near 21 ms (plus the probe's own ~1 ms) at
# 23.8 connection attempts per second, 24.5 with the first and the last probe of a wait of
# 0.2-5 s counted, under the 25 the readiness issue allows (refusing costs the server
# nothing). Once the port is bound, a probe connects and simply waits for its answer (the
# read timeout), so the lag there is the server's own answer time. Failed answers back off
# from 42 ms to 2 s.
POLL_INTERVAL = 0.042
POLL_JITTER = 0.1
POLL_MAX_INTERVAL = 2.0
PROBE_CONNECT_TIMEOUT = 2.0
PROBE_READ_TIMEOUT = 30.0
SLEEP_PROBE_TIMEOUT = 5.0
CHECK_TIMEOUT = 10.0

# Docker's HEALTHCHECK defaults.
HEALTH_INTERVAL = 30.0
HEALTH_TIMEOUT = 30.0
HEALTH_START_INTERVAL = 5.0
HEALTH_RETRIES = 3

_METHODS = ("HEAD", "GET")
_jitter_source = random.Random()


def _check_seconds(
    name: str, value: float, *, allow_zero: bool = False, allow_inf: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {bound} number of seconds, got {value!r}")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def _check_probe_request(path: str, method: str) -> None:
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        raise ValueError(f"path must start with '/' and contain no spaces, got {path!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyReport:
    """What a strategy observed when the server became ready.

    ``level`` is the highest readiness level verified (``None`` when nothing was checked, as
    with ``Sleep(verify=False)``); ``waited`` is in seconds; ``last_failure`` is the last
    failed probe before success, if any. ``server`` is the handle of a server :class:`Serve`
    manages (it stops that server).
    """

    host: str
    level: ReadyLevel | None
    version: str | None = None
    attempts: int = 0
    waited: float = 0.0
    last_failure: ProbeFailure | None = None
    strategy: str = ""
    server: ServerHandle | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the report (levels and failure kinds by lower-case name)."""
        server = None
        if self.server is not None:
            log_file = self.server.log_file
            server = {
                "started": self.server.started,
                "pid": self.server.pid,
                "log_file": None if log_file is None else str(log_file),
            }
        return {
            "host": self.host,
            "level": None if self.level is None else self.level.name.lower(),
            "version": self.version,
            "attempts": self.attempts,
            "waited": self.waited,
            "last_failure": None if self.last_failure is None else self.last_failure.to_dict(),
            "strategy": self.strategy,
            "server": server,
        }

    def describe(self) -> str:
        """Return one line for humans: what was reached, where, and how long it took."""
        reached = "nothing verified" if self.level is None else self.level.name.lower()
        version = f", version {self.version}" if self.version else ""
        return (
            f"{self.host}: {reached}{version} after {self.waited:.3f} s "
            f"and {self.attempts} probe{'s' if self.attempts != 1 else ''}"
        )


@runtime_checkable
class Strategy(Protocol):
    """Wait until the server behind ``client`` is ready, within ``deadline``.

    Return a :class:`ReadyReport`; raise :class:`~ollama_ready.errors.NotReadyError` otherwise.
    """

    def __call__(self, client: OllamaClient, deadline: Deadline, /) -> ReadyReport:
        """Wait, then report what was observed."""
        ...


class _Chainable:
    """Give a strategy ``.then(...)``: run the next strategies after it on the same deadline."""

    __slots__ = ()

    def then(self, *steps: Strategy) -> Sequence:
        """Return a :class:`Sequence` of this strategy followed by ``steps``."""
        return Sequence(cast("Strategy", self), *steps)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sleep(_Chainable):
    """Sleep ``seconds`` (never past the deadline), then check once that the server answers.

    This is the seed recipe's ``sleep 2`` made honest: when the server does not answer after the
    sleep it raises a clear error instead of letting the next call fail. ``verify=False`` is the
    literal recipe and checks nothing.
    """

    seconds: float = field(kw_only=False)
    verify: bool = True
    probe_timeout: float = SLEEP_PROBE_TIMEOUT

    def __post_init__(self) -> None:
        _check_seconds("seconds", self.seconds, allow_zero=True)
        _check_seconds("probe_timeout", self.probe_timeout)

    def __call__(self, client: OllamaClient, deadline: Deadline, /) -> ReadyReport:
        """Sleep, then verify once (unless ``verify=False``)."""
        clock = deadline.clock
        started = clock.monotonic()
        deadline.sleep(self.seconds)
        if not self.verify:
            return ReadyReport(
                host=client.base_url,
                level=None,
                waited=clock.monotonic() - started,
                strategy=repr(self),
            )
        if deadline.expired:
            raise _not_ready(
                client,
                self,
                clock.monotonic() - started,
                0,
                None,
                reason=f"the deadline ran out during the {self.seconds:g} s sleep",
            )
        outcome = _probe_or_raise(
            client, self, Target(), deadline, connect=PROBE_CONNECT_TIMEOUT, read=self.probe_timeout
        )
        waited = clock.monotonic() - started
        if isinstance(outcome, ProbeFailure):
            raise _not_ready(
                client,
                self,
                waited,
                1,
                outcome,
                reason=f"still not ready after sleeping {self.seconds:g} s",
                hint="a fixed sleep guesses; Poll() waits exactly as long as the server needs",
            )
        return _report(client, self, outcome, attempts=1, waited=waited, last_failure=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Poll(_Chainable):
    """Probe until the server answers: ``HEAD /`` by default.

    While connections are refused, a probe starts every ``interval``: a refused connection
    costs the server nothing, and the server is noticed soon after it opens its port. Once the
    port is open, a probe connects and waits for its answer, so the server is noticed the
    moment it serves. When it answers with a failure (503, a proxy's page), the waits follow
    ``schedule``, a ``backoff`` wait generator, so a busy server is not hammered.

    Args:
        interval: The wait between probe starts while refused, and the first wait of the
            schedule; ``expo`` doubles it, ``fibo`` grows it along the Fibonacci numbers,
            ``constant`` keeps it.
        schedule: ``expo``, ``fibo`` or ``constant``.
        max_interval: Cap of the schedule (``None``: 2 s, or ``interval`` if that is larger).
        jitter: Each wait is spread uniformly by ``±jitter`` of its value (``0`` disables it).
        timeout: This strategy's own limit; the shared deadline still applies.
        probe_timeout: How long a connected probe waits for its answer. A server that has bound
            its port but does not serve yet (GPU discovery) answers the waiting probe as soon
            as it serves, so this should be long; it is always cut to the deadline.
        connect_timeout: How long one connection attempt may take.
        path: The path to probe. ``GET /api/version`` also records the server version.
        method: ``HEAD`` or ``GET``.

    Waits run from probe start to probe start: a probe that waited long for its answer is
    followed at once by the next one.
    """

    interval: float = POLL_INTERVAL
    schedule: Schedule = "expo"
    max_interval: float | None = None
    jitter: float = POLL_JITTER
    timeout: float | None = None
    probe_timeout: float = PROBE_READ_TIMEOUT
    connect_timeout: float = PROBE_CONNECT_TIMEOUT
    path: str = "/"
    method: str = "HEAD"

    def __post_init__(self) -> None:
        _check_seconds("interval", self.interval)
        if self.max_interval is not None:
            _check_seconds("max_interval", self.max_interval)
            if self.max_interval < self.interval:
                raise ValueError(
                    f"max_interval ({self.max_interval}) must not be below interval "
                    f"({self.interval})"
                )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < 1):
            raise ValueError(f"jitter must be a fraction in [0, 1), got {self.jitter!r}")
        if self.timeout is not None:
            _check_seconds("timeout", self.timeout, allow_inf=True)
        _check_seconds("probe_timeout", self.probe_timeout)
        _check_seconds("connect_timeout", self.connect_timeout)
        _check_probe_request(self.path, self.method)

    def waits(self, *, refused: bool = False) -> Iterator[float]:
        """Return the endless waits between probe starts, jitter applied.

        With ``refused``, the waits while connections are refused (``interval`` throughout);
        otherwise the ``schedule`` that follows failed answers.
        """
        cap = self.max_interval
        if cap is None:
            cap = max(self.interval, POLL_MAX_INTERVAL)
        values = itertools.repeat(self.interval) if refused else self._schedule(cap)
        for value in values:
            spread = self.jitter * _jitter_source.uniform(-1.0, 1.0) if self.jitter else 0.0
            yield value * (1 + spread)

    def _schedule(self, cap: float) -> Iterator[float]:
        import backoff  # deferred: importing backoff imports asyncio (~80 ms at start-up)

        scale = 1.0
        if self.schedule == "expo":
            generator: Iterator[float] = backoff.expo(base=2, factor=self.interval, max_value=cap)
        elif self.schedule == "fibo":
            generator = backoff.fibo()
            scale = self.interval
        else:
            generator = backoff.constant(interval=itertools.repeat(self.interval))
        next(generator)  # backoff's generators yield once before their first value
        for value in generator:
            yield min(float(value) * scale, cap)

    def __call__(self, client: OllamaClient, deadline: Deadline, /) -> ReadyReport:
        """Probe on the schedule until the server answers or time runs out."""
        clock = deadline.clock
        started = clock.monotonic()
        own = deadline if self.timeout is None else deadline.sub(self.timeout)
        target = Target(path=self.path, method=self.method)
        answered, refused = self.waits(), self.waits(refused=True)
        attempts = 0
        last: ProbeFailure | None = None
        while not own.expired:
            attempts += 1
            probe_started = clock.monotonic()
            outcome = _probe_or_raise(
                client, self, target, own, connect=self.connect_timeout, read=self.probe_timeout
            )
            if isinstance(outcome, Observation):
                return _report(
                    client,
                    self,
                    outcome,
                    attempts=attempts,
                    waited=clock.monotonic() - started,
                    last_failure=last,
                )
            last = _note_failure(client, last, outcome)
            waits = refused if outcome.kind is FailureKind.REFUSED else answered
            own.sleep(next(waits) - (clock.monotonic() - probe_started))
        raise _not_ready(client, self, clock.monotonic() - started, attempts, last)


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(_Chainable):
    """Check a readiness level with Docker's HEALTHCHECK semantics (and Docker's defaults).

    The first check starts one interval after the strategy starts (``start_interval`` during
    the start period, ``interval`` after it), and each next one an interval after the previous
    check ended. Each check is bounded by ``timeout``. The server is healthy after
    ``success_threshold`` consecutive successes (Kubernetes' ``successThreshold``; Docker: 1).
    It is unhealthy, and this raises, after ``retries`` consecutive failures; failures of checks
    that start inside ``start_period`` before the first success do not count.

    ``level`` is what a check verifies (see :class:`ReadyLevel`). ``version`` is a requirement
    such as ``>=0.11`` (a bare version means ``>=``); ``model`` is required from
    ``MODEL_PRESENT`` up. ``level`` may be a name (``"gpu"``, see :meth:`ReadyLevel.parse`);
    without it, the level follows from what is given.
    """

    level: ReadyLevel | str | None = None
    version: str | None = None
    model: str | None = None
    interval: float = HEALTH_INTERVAL
    timeout: float = HEALTH_TIMEOUT
    retries: int = HEALTH_RETRIES
    start_period: float = 0.0
    start_interval: float = HEALTH_START_INTERVAL
    success_threshold: int = 1

    def __post_init__(self) -> None:
        for name in ("interval", "timeout", "start_interval"):
            _check_seconds(name, getattr(self, name))
        _check_seconds("start_period", self.start_period, allow_zero=True)
        _check_count("retries", self.retries)
        _check_count("success_threshold", self.success_threshold)
        if self.level is not None:
            object.__setattr__(self, "level", ReadyLevel.parse(self.level))
        self._target()  # validates the level, version and model together

    @property
    def effective_level(self) -> ReadyLevel:
        """The level a check verifies: ``level``, or what ``version``/``model`` imply."""
        implied = ReadyLevel.SERVER
        if self.model is not None:
            implied = ReadyLevel.MODEL_PRESENT
        elif self.version is not None:
            implied = ReadyLevel.VERSION
        return implied if self.level is None else max(ReadyLevel.parse(self.level), implied)

    def _target(self) -> Target:
        level = self.effective_level
        spec: SpecifierSet | None = None
        if self.version is not None:
            spec = parse_version_spec(self.version)
        if level.needs_model and self.model is None:
            raise ValueError(f"level {level.name} needs a model, e.g. model='llama3.2:1b'")
        name = None if self.model is None else ModelName.parse(self.model)
        return Target(level=level, version_spec=spec, model=name, model_text=self.model)

    def __call__(self, client: OllamaClient, deadline: Deadline, /) -> ReadyReport:
        """Run checks until healthy; raise when unhealthy or out of time."""
        clock = deadline.clock
        started = clock.monotonic()
        target = self._target()
        attempts = failing = succeeding = 0
        ever_healthy = False
        last: ProbeFailure | None = None
        while True:
            starting = not ever_healthy and clock.monotonic() - started < self.start_period
            pause = self.start_interval if starting else self.interval
            if pause >= deadline.remaining():
                raise _not_ready(
                    client,
                    self,
                    clock.monotonic() - started,
                    attempts,
                    last,
                    reason=f"the next check ({pause:g} s from now) would start after the deadline",
                )
            deadline.sleep(pause)
            attempts += 1
            check_started = clock.monotonic()
            outcome = _probe_or_raise(
                client,
                self,
                target,
                deadline.sub(self.timeout),
                connect=self.timeout,
                read=self.timeout,
            )
            if isinstance(outcome, Observation):
                ever_healthy = True
                failing = 0
                succeeding += 1
                if succeeding >= self.success_threshold:
                    return _report(
                        client,
                        self,
                        outcome,
                        attempts=attempts,
                        waited=clock.monotonic() - started,
                        last_failure=last,
                    )
                continue
            last = _note_failure(client, last, outcome)
            succeeding = 0
            if not ever_healthy and check_started - started < self.start_period:
                continue
            failing += 1
            if failing >= self.retries:
                raise _not_ready(
                    client,
                    self,
                    clock.monotonic() - started,
                    attempts,
                    last,
                    reason=f"unhealthy after {failing} consecutive failed checks",
                )


@dataclass(frozen=True, slots=True, init=False)
class Sequence(_Chainable):
    """Run strategies one after another on ONE shared deadline.

    Nested sequences are flattened. The steps never get a fresh timeout each: N steps together
    take at most the deadline, not N times it. If a step fails, servers started by earlier
    steps (:class:`Serve`) are stopped.
    """

    steps: tuple[Strategy, ...]

    def __init__(self, *steps: Strategy) -> None:
        flat: list[Strategy] = []
        for step in steps:
            if isinstance(step, Sequence):
                flat.extend(step.steps)
            elif callable(step):
                flat.append(step)
            else:
                raise TypeError(f"a strategy must be callable, got {step!r}")
        if not flat:
            raise ValueError("a Sequence needs at least one strategy")
        object.__setattr__(self, "steps", tuple(flat))

    def __call__(self, client: OllamaClient, deadline: Deadline, /) -> ReadyReport:
        """Run every step on ``deadline`` and merge their reports."""
        clock = deadline.clock
        started = clock.monotonic()
        reports: list[ReadyReport] = []
        try:
            for step in self.steps:
                reports.append(step(client, deadline))
        except BaseException:
            for earlier in reports:
                if earlier.server is not None:
                    earlier.server.stop()
            raise
        return _merge(client, self, reports, clock.monotonic() - started)


DEFAULT_STRATEGY: Strategy = Poll()
"""The strategy used when none is given: ``Poll()`` with its defaults."""


def wait_until_ready(
    host: str | None = None,
    *,
    strategy: Strategy | str | None = None,
    timeout: float | None = None,
    clock: Clock | None = None,
    deadline: Deadline | None = None,
) -> ReadyReport:
    """Wait until the Ollama server at ``host`` is ready and report what was observed.

    Args:
        host: The server; ``None`` reads ``OLLAMA_HOST`` (Ollama's rules), then the default.
        strategy: A strategy, or a spec such as ``"poll:interval=0.2"``; ``None`` reads
            ``OLLAMA_READY_WAIT``, then uses ``Poll()``.
        timeout: The one deadline in seconds; ``None`` reads ``OLLAMA_READY_TIMEOUT``, then 600.
        clock: The clock to wait on (tests pass a ``FakeClock``).
        deadline: An enclosing deadline (say, a CLI's that a signal cancels); the wait ends
            with it or after ``timeout``, whichever is first.

    Raises:
        NotReadyError: the server was not ready within the deadline.
        ConfigError: the host, the spec or an environment variable is invalid.
    """
    from ollama_ready._spec import strategy_from_spec
    from ollama_ready.client import OllamaClient
    from ollama_ready.config import Settings

    spec = strategy if isinstance(strategy, str) else None
    settings = Settings.from_env(host=host, timeout=timeout, wait=spec)
    if strategy is not None and not isinstance(strategy, str):
        chosen: Strategy = strategy
    elif settings.wait:
        chosen = strategy_from_spec(settings.wait)
    else:
        chosen = DEFAULT_STRATEGY
    own = _own_deadline(deadline, settings.timeout, clock)
    with OllamaClient.from_settings(settings) as client:
        report = chosen(client, own)
    logger.info("ready: %s", report.describe())
    return report


def check(
    host: str | None = None,
    *,
    level: ReadyLevel | str = ReadyLevel.SERVER,
    models: Iterable[str] = (),
    min_server_version: str | None = None,
    timeout: float | None = None,
    clock: Clock | None = None,
    deadline: Deadline | None = None,
) -> ReadyReport:
    """Probe the server once at ``level`` (for each model) without waiting: a healthcheck.

    Args:
        host: The server; ``None`` reads ``OLLAMA_HOST``, then the default.
        level: What must hold, a :class:`ReadyLevel` or its name (``server``, ``version``,
            ``model``, ``loaded``, ``gpu``).
        models: The models for the model levels; empty reads ``OLLAMA_READY_MODELS``.
        min_server_version: A requirement such as ``>=0.11``; ``None`` reads
            ``OLLAMA_READY_MIN_SERVER_VERSION``. When set, the version is checked at any level.
        timeout: Seconds the whole check may take (default 10).
        clock: The clock that times the check.
        deadline: An enclosing deadline; the check ends with it at the latest.

    Raises:
        NotReadyError: the server does not answer, or a model is not loaded.
        ServerTooOld: its version does not satisfy ``min_server_version``.
        ModelNotPresent: a model is not on the server.
        PlacementError: a model is loaded but not fully on the GPU.
        ConfigError: a bad host, level, requirement or model name, or no model for a model level.
    """
    from ollama_ready.client import OllamaClient
    from ollama_ready.config import Settings

    settings = Settings.from_env(
        host=host, models=tuple(models) or None, min_server_version=min_server_version
    )
    targets = _check_targets(level, settings.models, settings.min_server_version)
    budget = _own_deadline(deadline, CHECK_TIMEOUT if timeout is None else timeout, clock)
    started = budget.clock.monotonic()
    version: str | None = None
    reached: list[ReadyLevel] = []
    with OllamaClient.from_settings(settings) as client:
        for target in targets:
            outcome = _probe_or_raise(
                client,
                "check",
                target,
                budget,
                connect=settings.connect_timeout,
                read=settings.read_timeout,
            )
            if isinstance(outcome, ProbeFailure):
                raise _check_error(client, outcome, target)
            version = outcome.version or version
            reached.append(outcome.level)
    return ReadyReport(
        host=client.base_url,
        level=min(reached),
        version=version,
        attempts=len(targets),
        waited=budget.clock.monotonic() - started,
        strategy="check",
    )


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ollama_ready.{module_name}"), name)
    globals()[name] = value
    return value


def _probe_or_raise(
    client: OllamaClient,
    strategy: object,
    target: Target,
    deadline: Deadline,
    *,
    connect: float,
    read: float,
) -> Observation | ProbeFailure:
    try:
        return probe(client, target, deadline, connect_timeout=connect, read_timeout=read)
    except RETRYABLE_ERRORS as exc:
        # Only the errors no wait can fix come back out of a probe (see is_fatal).
        raise NotReadyError(
            f"{client.base_url} cannot become ready for {_name(strategy)}: {exc.message}",
            last_failure=str(ProbeFailure.from_error(exc)),
            host=client.base_url,
            phase="wait",
            hint=exc.hint,
        ) from exc


def _note_failure(
    client: OllamaClient, previous: ProbeFailure | None, failure: ProbeFailure
) -> ProbeFailure:
    if previous is None or previous.kind is not failure.kind or previous.status != failure.status:
        logger.debug("waiting for %s: %s", client.base_url, failure)
    return failure


def _report(
    client: OllamaClient,
    strategy: object,
    outcome: Observation,
    *,
    attempts: int,
    waited: float,
    last_failure: ProbeFailure | None,
) -> ReadyReport:
    return ReadyReport(
        host=client.base_url,
        level=outcome.level,
        version=outcome.version,
        attempts=attempts,
        waited=waited,
        last_failure=last_failure,
        strategy=_name(strategy),
    )


def _merge(
    client: OllamaClient, sequence: Sequence, reports: list[ReadyReport], waited: float
) -> ReadyReport:
    levels = [r.level for r in reports if r.level is not None]
    versions = [r.version for r in reports if r.version is not None]
    failures = [r.last_failure for r in reports if r.last_failure is not None]
    servers = [r.server for r in reports if r.server is not None]
    merged = ReadyReport(
        host=client.base_url,
        level=max(levels) if levels else None,
        version=versions[-1] if versions else None,
        attempts=sum(r.attempts for r in reports),
        waited=waited,
        last_failure=failures[-1] if failures else None,
        strategy=_name(sequence),
    )
    return replace(merged, server=servers[0]) if servers else merged


_HINTS = {
    FailureKind.REFUSED: "nothing listens there: start `ollama serve`, or point OLLAMA_HOST "
    "(or --host) at the running server",
    FailureKind.NO_ANSWER: "the port is open but the server does not answer yet (GPU discovery "
    "can take a while on a cold start); allow a longer timeout",
    FailureKind.CONNECTION: "check the host name, the network and any TLS settings",
    FailureKind.HTTP_STATUS: "something answers with an error; check the server log, or a "
    "proxy in between",
    FailureKind.PROTOCOL: "something other than Ollama answers there (a proxy?); check the host",
    FailureKind.WRONG_VERSION: "upgrade Ollama (https://ollama.com/download)",
    FailureKind.MODEL_MISSING: "pull the model first (ollama pull, or ensure_model())",
    FailureKind.MODEL_NOT_LOADED: "load it first (ollama run, or ensure_model(load=True))",
    FailureKind.MODEL_NOT_ON_GPU: "the model does not fit in free VRAM; free GPU memory or use "
    "a smaller model or quantization",
}


def _not_ready(
    client: OllamaClient,
    strategy: object,
    waited: float,
    attempts: int,
    last: ProbeFailure | None,
    *,
    reason: str | None = None,
    hint: str | None = None,
) -> NotReadyError:
    plural = "s" if attempts != 1 else ""
    why = reason or "out of time"
    seen = f"last failure: {last}" if last is not None else "no probe completed"
    message = (
        f"{client.base_url} not ready after {waited:.2f} s ({_name(strategy)}, {attempts} "
        f"probe{plural}): {why}; {seen}"
    )
    if hint is None and last is not None:
        hint = _HINTS.get(last.kind)
    return NotReadyError(
        message,
        last_failure=None if last is None else str(last),
        host=client.base_url,
        phase="wait",
        hint=hint,
    )


def _name(strategy: object) -> str:
    # Dataclass strategies have a readable repr; a plain function is best named by its name.
    if isinstance(strategy, str):
        return strategy
    name = getattr(strategy, "__qualname__", None)
    return name if isinstance(name, str) else repr(strategy)


def _own_deadline(enclosing: Deadline | None, timeout: float, clock: Clock | None) -> Deadline:
    if enclosing is None:
        return Deadline(timeout, clock=clock)
    return enclosing.sub(timeout)


def _check_targets(
    level: ReadyLevel | str, models: tuple[str, ...], requirement: str | None
) -> list[Target]:
    try:
        wanted = ReadyLevel.parse(level)
        spec = None if requirement is None else parse_version_spec(requirement)
    except ValueError as exc:
        raise ConfigError(str(exc), phase="check") from exc
    if not wanted.needs_model:
        return [Target(level=wanted, version_spec=spec)]
    if not models:
        raise ConfigError(
            f"level {wanted.name.lower()} needs a model: pass one (--model) or set "
            "OLLAMA_READY_MODELS",
            phase="check",
        )
    return [
        Target(level=wanted, version_spec=spec, model=ModelName.parse(name), model_text=name)
        for name in models
    ]


def _check_error(client: OllamaClient, failure: ProbeFailure, target: Target) -> OllamaReadyError:
    host = client.base_url
    model = target.model_text
    message = f"{host} check at level {target.level.name.lower()} failed: {failure}"
    hint = _HINTS.get(failure.kind)
    context: dict[str, Any] = {"host": host, "model": model, "phase": "check", "hint": hint}
    if failure.kind is FailureKind.WRONG_VERSION:
        return ServerTooOld(message, **context)
    if failure.kind is FailureKind.MODEL_MISSING:
        return ModelNotPresent(message, **context)
    if failure.kind is FailureKind.MODEL_NOT_ON_GPU:
        return PlacementError(message, **context)
    return NotReadyError(message, last_failure=str(failure), **context)
