"""One robust pull: policy, error classification, retries, stall detection, sharing.

:func:`pull_model` makes one model present on one server and needs no babysitting:

- **Policy.** ``missing`` asks ``/api/show`` first and never contacts the registry when the model
  is there; ``always`` re-pulls (picking up a moved tag); ``never`` only checks.
- **Classification.** Every failure is matched against :data:`ERROR_RULES`. Permanent ones raise
  their own exception with a hint at once; transient ones are retried.
- **Retries.** Exponential backoff with full jitter (``backoff``'s generators, slept on our own
  :class:`~ollama_ready.clock.Clock`), bounded by the tries of a :class:`RetryPolicy` and by the
  one :class:`~ollama_ready.clock.Deadline`. Re-issuing ``/api/pull`` resumes on the server.
- **Stalls.** A stuck Ollama keeps re-sending the same progress line every 60 ms, so a stall is
  "completed bytes stopped growing for ``stall_timeout``"; a silent stream is caught by the read
  timeout. A stalled stream is closed and the pull re-issued.
- **Cancellation.** The stream is read on a helper thread, so a deadline, a ``Deadline.cancel()``
  or Ctrl-C stops the pull within a fraction of a second.
- **Sharing.** Concurrent callers in one process that pull the same model from the same server
  share one pull and its result.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from ollama_ready._format import human_seconds
from ollama_ready._reporters import format_bytes
from ollama_ready.clock import Clock, Deadline
from ollama_ready.errors import (
    AggregateError,
    ConfigError,
    DeadlineExceeded,
    DigestMismatch,
    DiskFull,
    InsecureRegistry,
    InvalidModelName,
    ModelNotFound,
    ModelNotPresent,
    OllamaConnectionError,
    OllamaReadyError,
    PullError,
    PullRetriesExhausted,
    PullStalled,
    RegistryUnreachable,
    ResponseError,
    ServerTooOld,
    Unauthorized,
)
from ollama_ready.names import DEFAULT_HOST, DEFAULT_NAMESPACE, ModelName
from ollama_ready.progress import (
    NullReporter,
    ProgressAggregator,
    ProgressSnapshot,
    PullEvent,
    Reporter,
    make_reporter,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ollama_ready.client import ListedModel, Timeout

__all__ = [
    "DEFAULT_RETRY",
    "ERROR_RULES",
    "ErrorRule",
    "PullClient",
    "PullOutcome",
    "PullOutcomes",
    "PullPolicy",
    "PullResult",
    "RetryPolicy",
    "classify_error",
    "pull_model",
    "pull_models",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

PullPolicy = Literal["missing", "always", "never"]
"""When to pull: only when absent (default), every time, or never (only check)."""

_POLICIES: tuple[str, ...] = ("missing", "always", "never")
_POLL_SECONDS = 0.1  # how often a waiting caller looks for a cancel() of its deadline
_CONNECT_TIMEOUT = 10.0
_SHOW_READ_TIMEOUT = 30.0
_DIGEST_MISMATCH_LIMIT = 3  # the server deletes a corrupt blob, so a re-pull downloads it again
_QUEUE_SIZE = 1024
_BACKPRESSURE_SECONDS = 0.01
_DIGEST_PIN = re.compile(r"[0-9a-f]{12,64}")

SERVER_AFTER_STOP = (
    "The Ollama server stops this download unless another client is waiting for it, keeps the "
    "partial data, and the next pull resumes from it (unless the server restarts without "
    "OLLAMA_NOPRUNE=1)."
)
_EGRESS = (
    "the Ollama server (not this machine) must reach registry.ollama.ai and the blob CDN it "
    "redirects to (dd20bb891979d25aebc8bec07b2b3bbc.r2.cloudflarestorage.com): add both to an "
    "egress allowlist, or set HTTPS_PROXY in the server's environment"
)
_RESUMES = (
    "partial data stays on the server and the next pull resumes from it; it survives a server "
    "restart only with OLLAMA_NOPRUNE=1"
)


# --- retry schedule ----------------------------------------------------------------------------


def _full_jitter(value: float) -> float:
    """Return ``backoff.full_jitter(value)``: uniform in ``[0, value]``."""
    import backoff  # deferred: importing backoff imports asyncio (~80 ms at start-up)

    return float(backoff.full_jitter(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry transient pull failures.

    Delays grow as ``base * 2**n`` up to ``max_interval``, then ``jitter`` spreads each one
    (full jitter by default: uniform in ``[0, delay]``). ``max_tries`` counts attempts, the first
    included. The deadline of the pull bounds everything on top.
    """

    max_tries: int = 8
    base: float = 1.0
    max_interval: float = 60.0
    jitter: Callable[[float], float] | None = _full_jitter

    def __post_init__(self) -> None:
        if isinstance(self.max_tries, bool) or not isinstance(self.max_tries, int):
            raise ConfigError(f"max_tries must be an integer, got {self.max_tries!r}")
        if self.max_tries < 1:
            raise ConfigError(f"max_tries must be at least 1, got {self.max_tries}")
        if not (self.base > 0 and math.isfinite(self.base)):
            raise ConfigError(f"base must be a positive number of seconds, got {self.base!r}")
        if not (self.max_interval >= self.base and math.isfinite(self.max_interval)):
            raise ConfigError(
                f"max_interval must be at least base ({self.base}), got {self.max_interval!r}"
            )

    def delays(self) -> Iterator[float]:
        """Yield the wait before each retry (drives ``backoff.expo``; never sleeps itself)."""
        import backoff  # deferred: importing backoff imports asyncio (~80 ms at start-up)

        schedule = backoff.expo(base=2, factor=self.base, max_value=self.max_interval)
        next(schedule)  # backoff's generators are primed with one empty step
        for value in schedule:
            delay = value if self.jitter is None else self.jitter(value)
            yield max(0.0, min(float(delay), self.max_interval))


DEFAULT_RETRY = RetryPolicy()
"""Eight attempts, 1 s doubling up to 60 s, full jitter."""


# --- error classification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRule:
    """One row of the error table: a server message pattern and what it means.

    ``pattern`` is a case-insensitive regular expression searched in the server's message; rules
    without a pattern describe failures recognised otherwise (a broken connection, a stall).
    ``error`` is the exception raised for a permanent failure, and the cause recorded for a
    transient one.
    """

    name: str
    pattern: str | None
    error: type[OllamaReadyError]
    transient: bool
    hint: str
    # Compiled on the first match: compiling the whole table took ~10 ms of every start-up,
    # while most runs never classify an error.
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def matches(self, message: str) -> bool:
        """Return whether this rule's pattern occurs in ``message``."""
        if self.pattern is None:
            return False
        regex = self._regex
        if regex is None:
            regex = re.compile(self.pattern, re.IGNORECASE)
            object.__setattr__(self, "_regex", regex)
        return regex.search(message) is not None


def _rule(
    name: str, pattern: str | None, error: type[OllamaReadyError], transient: bool, hint: str
) -> ErrorRule:
    return ErrorRule(name=name, pattern=pattern, error=error, transient=transient, hint=hint)


ERROR_RULES: tuple[ErrorRule, ...] = (
    # Permanent: retrying cannot help.
    _rule(
        "server-too-old",
        r"requires a newer version of ollama|pull model manifest: 412\b",
        ServerTooOld,
        False,
        "upgrade the Ollama server (https://ollama.com/download): the registry serves this "
        "model only to newer versions",
    ),
    _rule(
        "disk-full",
        r"no space left on device",
        DiskFull,
        False,
        "free space on the server's model volume (OLLAMA_MODELS; /root/.ollama in the "
        "ollama/ollama image) or move it to a bigger disk; the partial download is kept and "
        "the next pull resumes",
    ),
    _rule(
        "insecure-registry",
        r"insecure protocol http|server gave http response to https client",
        InsecureRegistry,
        False,
        "the registry speaks plain HTTP: pass insecure=True (ollama pull --insecure) if you "
        "trust it",
    ),
    _rule(
        "unauthorized",
        r"\bunauthorized\b|pull model manifest: 401\b",
        Unauthorized,
        False,
        "the registry refused access: check the name; for a private model, add the server's "
        "public key (~/.ollama/id_ed25519.pub on the server) to your ollama.com account",
    ),
    _rule(
        "forbidden",
        r"pull model manifest: 403\b",
        Unauthorized,
        False,
        "the registry, or a proxy in front of it, answered 403: check the server's proxy "
        "settings (HTTPS_PROXY) and that its network may reach the registry",
    ),
    _rule(
        "model-not-found",
        r"file does not exist|manifest unknown|pull model manifest: 404\b",
        ModelNotFound,
        False,
        "check the model name and tag; library models and their tags are listed at "
        "https://ollama.com/library",
    ),
    _rule(
        "invalid-name",
        r"invalid model name|name \S+ is invalid",
        InvalidModelName,
        False,
        "names look like [host/][namespace/]model[:tag], for example llama3.2:1b",
    ),
    _rule(
        "needs-mlx",
        r"requires mlx support",
        PullError,
        False,
        "this model needs the MLX runtime, which this server lacks; pull a GGUF variant",
    ),
    # Transient: the server, the registry or the network hiccuped.
    _rule(
        "digest-mismatch",
        r"digest mismatch",
        DigestMismatch,
        True,
        "a blob arrived corrupted and the server deleted it; it is downloaded again (given up "
        f"after {_DIGEST_MISMATCH_LIMIT} times: then a proxy may be altering downloads)",
    ),
    _rule(
        "max-retries-exceeded",
        r"max retries exceeded",
        PullError,
        True,
        f"the server gave up on a blob after 6 tries per part; {_EGRESS}; {_RESUMES}",
    ),
    _rule(
        "registry-dns",
        r"no such host|dial tcp: lookup|server misbehaving|temporary failure in name resolution",
        RegistryUnreachable,
        True,
        f"the Ollama server cannot resolve the registry host: check its DNS; {_EGRESS}",
    ),
    _rule(
        "registry-unreachable",
        r"dial tcp|connection refused|network is unreachable|no route to host",
        RegistryUnreachable,
        True,
        f"the Ollama server cannot connect to the registry; {_EGRESS}",
    ),
    _rule(
        "registry-timeout",
        r"context deadline exceeded|tls handshake timeout|i/o timeout|"
        r"timeout awaiting response headers|client\.timeout",
        PullError,
        True,
        f"the connection from the Ollama server to the registry timed out; {_EGRESS}",
    ),
    _rule(
        "connection-reset",
        r"connection reset by peer|broken pipe|unexpected eof|\beof\b",
        PullError,
        True,
        f"a connection broke during the download; {_RESUMES}",
    ),
    _rule(
        "rate-limited",
        r"pull model manifest: 429\b|too many requests",
        PullError,
        True,
        "the registry is rate limiting; retried with backoff",
    ),
    _rule(
        "server-busy",
        r"server busy|maximum pending requests",
        PullError,
        True,
        "the Ollama server has too many requests queued (OLLAMA_MAX_QUEUE); retried with backoff",
    ),
    _rule(
        "canceled",
        r"context canceled",
        PullError,
        True,
        f"the server cancelled the download (a client went away or it is shutting down); "
        f"{_RESUMES}",
    ),
    _rule(
        "registry-error",
        r"pull model manifest: 5\d\d\b",
        PullError,
        True,
        "the registry had a server error; retried with backoff",
    ),
    # Recognised by status or by kind, not by text.
    _rule(
        "request-rejected",
        None,
        ResponseError,
        False,
        "the Ollama server rejected the request (HTTP 4xx); see its message",
    ),
    _rule(
        "server-error",
        None,
        PullError,
        True,
        f"the Ollama server reported an error it did not explain; {_RESUMES}",
    ),
    _rule(
        "ollama-unreachable",
        None,
        OllamaConnectionError,
        True,
        "the connection to the Ollama server failed or broke (a restart mid-pull looks like "
        f"this); {_RESUMES}",
    ),
    _rule(
        "ollama-tls",
        None,
        OllamaConnectionError,
        False,
        "TLS with the Ollama server failed: check its certificate or the CA bundle",
    ),
    _rule(
        "stalled",
        None,
        PullStalled,
        True,
        "completed bytes stopped growing (or the stream went silent) for stall_timeout; the "
        "stream is closed and the pull re-issued, which resumes on the server. A real server "
        f"retries a dead blob host for about a minute before it says so; {_EGRESS}",
    ),
    _rule(
        "stream-ended",
        None,
        PullError,
        True,
        f"the pull stream ended without 'success' (the server restarted?); {_RESUMES}",
    ),
)
"""The error table, in match order (the first matching pattern wins). See ``docs/errors.md``."""

_RULES = {rule.name: rule for rule in ERROR_RULES}


def classify_error(message: str, *, status: int | None = None) -> ErrorRule:
    """Return the rule for an error the server reported (``status``: its HTTP status, if any).

    The first rule whose pattern occurs in ``message`` wins. Otherwise a 4xx status (except 408
    and 429) is a permanent ``request-rejected``, and anything else a transient ``server-error``:
    Ollama reports its internal failures as HTTP 500 or as an error line in a 200 stream.
    """
    for rule in ERROR_RULES:
        if rule.matches(message):
            return rule
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return _RULES["request-rejected"]
    return _RULES["server-error"]


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PullResult:
    """What :func:`pull_model` did.

    ``bytes_present`` counts what the server already had when the pull started (cache hits and
    partial data it resumed); ``bytes_downloaded`` what it fetched during this call.
    ``attempts`` is the number of ``/api/pull`` requests (0 when nothing was pulled).
    """

    model: str
    digest: str | None
    size: int | None
    bytes_downloaded: int
    bytes_present: int
    attempts: int
    duration: float
    pulled: bool

    @property
    def display(self) -> str:
        """The short name Ollama shows (``llama3.2:1b``)."""
        return ModelName.parse(self.model).display


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """The outcome of one model of :func:`pull_models`: a result or an error."""

    name: str
    result: PullResult | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """Whether the model is present now."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class PullOutcomes:
    """The outcomes of :func:`pull_models`, in the order the names were given."""

    outcomes: tuple[PullOutcome, ...]

    def __iter__(self) -> Iterator[PullOutcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, index: int) -> PullOutcome:
        return self.outcomes[index]

    @property
    def ok(self) -> bool:
        """Whether every model is present now."""
        return all(outcome.ok for outcome in self.outcomes)

    @property
    def results(self) -> tuple[PullResult, ...]:
        """The results of the models that succeeded."""
        return tuple(o.result for o in self.outcomes if o.result is not None)

    @property
    def errors(self) -> dict[str, Exception]:
        """The error of each model that failed, by the name as given."""
        return {o.name: o.error for o in self.outcomes if o.error is not None}

    def raise_for_errors(self) -> None:
        """Raise :class:`~ollama_ready.errors.AggregateError` naming every failed model, if any."""
        errors = self.errors
        if errors:
            count = len(self.outcomes)
            raise AggregateError(
                f"{len(errors)} of {count} model pulls failed", errors, results=self.results
            )


# --- what pull_model needs from a client -------------------------------------------------------


class PullClient(Protocol):
    """The part of :class:`~ollama_ready.client.OllamaClient` that :func:`pull_model` uses."""

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        ...

    def show(
        self,
        name: str,
        *,
        verbose: bool = False,
        timeout: Timeout | None = None,
    ) -> object:
        """Describe a present model; raise ModelNotPresent when absent."""
        ...

    def list_models(self, *, timeout: Timeout | None = None) -> Sequence[ListedModel]:
        """List the present models (``/api/tags``)."""
        ...

    def pull(
        self,
        name: str,
        *,
        insecure: bool = False,
        timeout: Timeout | None = None,
    ) -> Iterator[PullEvent]:
        """Start a pull and yield its events."""
        ...


# --- the public entry points -------------------------------------------------------------------


def pull_model(
    client: PullClient,
    name: str,
    *,
    policy: PullPolicy | str = "missing",
    insecure: bool = False,
    digest: str | None = None,
    retry: RetryPolicy | None = None,
    stall_timeout: float = 120.0,
    deadline: Deadline | None = None,
    reporter: Reporter | str | None = None,
    clock: Clock | None = None,
) -> PullResult:
    """Make ``name`` present on the server behind ``client``, pulling it if the policy says so.

    Args:
        client: The server to talk to (an :class:`~ollama_ready.client.OllamaClient`).
        name: A model name as Ollama takes it (``llama3.2:1b``).
        policy: ``missing`` (pull only when absent), ``always`` or ``never``.
        insecure: Allow a plain-HTTP registry.
        digest: The expected manifest digest, as ``/api/tags`` reports it (64 hex characters,
            or at least the 12 that ``ollama list`` shows); a different one is an error.
        retry: The retry schedule; :data:`DEFAULT_RETRY` when None.
        stall_timeout: Seconds without progress before the stream is abandoned and re-issued.
        deadline: The budget of the whole call; none when None.
        reporter: A progress reporter, or its name for
            :func:`~ollama_ready.progress.make_reporter`; None reports nothing.
        clock: The clock for timing and progress; the deadline's clock when None.

    Raises:
        InvalidModelName: ``name`` is not a valid name; nothing was sent.
        ModelNotPresent: the model is absent and ``policy`` is ``never``.
        ModelNotFound, ServerTooOld, DiskFull, Unauthorized, InsecureRegistry, DigestMismatch:
            a permanent failure, raised at once with a hint.
        PullRetriesExhausted: transient failures outlasted the tries or the deadline.
        DeadlineExceeded: the deadline ran out (or was cancelled) during the pull.
    """
    if not isinstance(name, str):
        raise ConfigError(f"a model name must be a string, got {type(name).__name__}")
    model = ModelName.parse(name)
    options = _Options(
        policy=_check_policy(policy),
        insecure=insecure,
        pin=_normalise_pin(digest),
        retry=retry if retry is not None else DEFAULT_RETRY,
        stall_timeout=_check_stall_timeout(stall_timeout),
    )
    if deadline is None:
        deadline = Deadline(None, clock=clock)
    report = make_reporter(reporter)
    job = _PullJob(
        client,
        model,
        request_name=name.strip(),
        options=options,
        deadline=deadline,
        clock=clock or deadline.clock,
    )
    if options.policy == "never":  # only a check: nothing worth sharing
        return job.run(_Flight(report))
    # An "always" caller must not settle for a "missing" caller's "it is present".
    return _FLIGHTS.run((client.base_url, model, options.policy), job, report)


def pull_models(
    client: PullClient,
    names: Iterable[str],
    *,
    concurrency: int = 4,
    policy: PullPolicy | str = "missing",
    insecure: bool = False,
    digests: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    stall_timeout: float = 120.0,
    deadline: Deadline | None = None,
    reporter: Reporter | str | None = None,
    clock: Clock | None = None,
) -> PullOutcomes:
    """Pull several models, ``concurrency`` at a time; one failure never hides the others.

    ``digests`` maps a name (as given) to its pinned manifest digest. The other arguments are those
    of :func:`pull_model`, shared by every model. Outcomes come back in the order of ``names``;
    call :meth:`PullOutcomes.raise_for_errors` to turn failures into one exception.

    Ctrl-C cancels ``deadline`` (every pull stops within a fraction of a second) and re-raises.
    """
    requested = list(names)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
    if deadline is None:
        deadline = Deadline(None, clock=clock)
    report = make_reporter(reporter)
    pins = dict(digests or {})

    def one(name: str) -> PullOutcome:
        try:
            result = pull_model(
                client,
                name,
                policy=policy,
                insecure=insecure,
                digest=pins.get(name),
                retry=retry,
                stall_timeout=stall_timeout,
                deadline=deadline,
                reporter=report,
                clock=clock,
            )
        except Exception as exc:  # each model's failure is its outcome, not the caller's
            return PullOutcome(name, error=exc)
        return PullOutcome(name, result=result)

    if not requested:
        return PullOutcomes(())
    # Deferred: only several models need a pool, and a single ensure starts faster without it.
    from concurrent.futures import ThreadPoolExecutor

    workers = min(concurrency, len(requested))
    with ThreadPoolExecutor(workers, thread_name_prefix="ollama-ready-pull") as pool:
        futures = [pool.submit(one, name) for name in requested]
        try:
            outcomes = tuple(_wait_result(future) for future in futures)
        except BaseException:
            deadline.cancel()
            for future in futures:
                future.cancel()
            raise
    return PullOutcomes(outcomes)


def _wait_result(future: Future[_T]) -> _T:
    from concurrent.futures import TimeoutError as FutureTimeout  # with the pool, see above

    # Wait in short slices: a blocking wait would hold Ctrl-C back until the pull ends.
    while True:
        try:
            return future.result(timeout=_POLL_SECONDS)
        except FutureTimeout:
            continue


# --- options and checks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Options:
    policy: str
    insecure: bool
    pin: str | None
    retry: RetryPolicy
    stall_timeout: float


def _check_policy(policy: str) -> str:
    value = policy.strip().lower() if isinstance(policy, str) else policy
    if value not in _POLICIES:
        raise ConfigError(f"pull policy must be one of {', '.join(_POLICIES)}, got {policy!r}")
    return str(value)


def _check_stall_timeout(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"stall_timeout must be a number of seconds, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"stall_timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def _normalise_pin(digest: str | None) -> str | None:
    if digest is None:
        return None
    text = digest.strip().lower()
    for prefix in ("sha256:", "sha256-"):
        text = text.removeprefix(prefix)
    if not _DIGEST_PIN.fullmatch(text):
        raise ConfigError(
            f"digest pin {digest!r} is not a manifest digest: expected hex as /api/tags shows it "
            "(64 characters, or at least the 12 of `ollama list`), optionally after 'sha256:'"
        )
    return text


def _digest_matches(pin: str, digest: str | None) -> bool:
    return digest is not None and digest.lower().removeprefix("sha256:").startswith(pin)


# --- one pull ----------------------------------------------------------------------------------


class _StreamEnded(Exception):
    """The stream ended without ``success`` and without an error line."""


class _Stopped(Exception):
    """The deadline ran out, or was cancelled, while a stream was open."""


@dataclass(slots=True)
class _Failure:
    rule: ErrorRule
    cause: BaseException
    text: str


class _PullJob:
    """Everything :func:`pull_model` does for one model, once the arguments are checked."""

    def __init__(
        self,
        client: PullClient,
        model: ModelName,
        *,
        request_name: str,
        options: _Options,
        deadline: Deadline,
        clock: Clock,
    ) -> None:
        self.client = client
        self.model = model
        self.request_name = request_name
        self.options = options
        self.deadline = deadline
        self.clock = clock
        self.started = clock.monotonic()
        self.aggregator = ProgressAggregator(model.display, clock=clock)
        self.flight: _Flight  # set by run()
        self.requests = 0
        self.failures = 0
        self.mismatches = 0
        self.delays = options.retry.delays()

    # -- the whole job --

    def run(self, flight: _Flight) -> PullResult:
        self.flight = flight
        try:
            return self._run()
        except _Stopped:
            error = self._stopped_error()
            self._emit(self.aggregator.fail(error.message))
            raise error from None
        except KeyboardInterrupt:
            self._emit(self.aggregator.fail(f"interrupted. {SERVER_AFTER_STOP}"))
            logger.warning("pull of %s interrupted. %s", self.model.display, SERVER_AFTER_STOP)
            raise
        except OllamaReadyError as exc:
            self._emit(self.aggregator.fail(f"{type(exc).__name__}: {exc.message}"))
            raise

    def _run(self) -> PullResult:
        if self.options.policy != "always":
            listed = self._retrying(self._find_present)
            if listed is not None:
                self._emit(self.aggregator.finish("already present, not pulled"))
                return self._result(listed, pulled=False)
            if self.options.policy == "never":
                raise self._absent_error()
        logger.info("pulling %s from %s", self.model.display, self.model.host)
        self._retrying(self._attempt)
        listed = self._retrying(self._listed)
        if self.options.pin is not None and not _digest_matches(
            self.options.pin, listed.digest if listed else None
        ):
            raise self._pin_error(listed.digest if listed else None, after_pull=True)
        return self._result(listed, pulled=True)

    def _find_present(self) -> _Listed | None:
        """Return the listing of the model when it is present (and matches the pin)."""
        if self.deadline.expired:
            raise _Stopped
        try:
            self.client.show(self.model.full, timeout=self._request_timeout())
        except ModelNotPresent:
            return None
        listed = self._listed()
        if self.options.pin is None:
            return listed if listed is not None else _Listed(None, None)
        if listed is not None and _digest_matches(self.options.pin, listed.digest):
            return listed
        if self.options.policy == "never":
            raise self._pin_error(listed.digest if listed else None, after_pull=False)
        logger.info(
            "%s is present with another digest than %s; pulling",
            self.model.display,
            self.options.pin,
        )
        return None

    def _listed(self) -> _Listed | None:
        for info in self.client.list_models(timeout=self._request_timeout()):
            if self.model.matches(info.name):
                return _Listed(info.digest, info.size)
        return None

    def _result(self, listed: _Listed | None, *, pulled: bool) -> PullResult:
        snapshot = self.aggregator.snapshot
        size = listed.size if listed is not None and listed.size is not None else snapshot.total
        return PullResult(
            model=self.model.full,
            digest=listed.digest if listed is not None else None,
            size=size,
            bytes_downloaded=snapshot.downloaded,
            bytes_present=snapshot.cached if pulled else (size or 0),
            attempts=self.requests,
            duration=max(0.0, self.clock.monotonic() - self.started),
            pulled=pulled,
        )

    # -- one /api/pull request --

    def _attempt(self) -> None:
        if self.deadline.expired:
            raise _Stopped
        self.requests += 1
        if self.requests > 1:
            self._emit(self.aggregator.begin_attempt(self.requests))
        connect = min(_CONNECT_TIMEOUT, max(self.deadline.remaining(), 0.001))
        events = self.client.pull(
            self.request_name,
            insecure=self.options.insecure,
            timeout=(connect, self.options.stall_timeout),
        )
        aggregator, flight = self.aggregator, self.flight
        watch = _StallWatch(self.options.stall_timeout, self.clock.monotonic())

        def idle() -> None:
            # No line for a while: a trickle or blank lines are no progress either.
            self._catch_up()
            if watch.expired(self.clock.monotonic()):
                raise self._stalled()

        with _Pump(events, self.model.display) as pump:
            for event in pump.events(self.deadline, idle=idle):
                aggregator.feed(event)
                if flight.observed:
                    flight.emit(aggregator.snapshot)
                else:  # nobody watches: no snapshot for this line (most of its cost)
                    flight.behind = True
                if aggregator.phase == "done":
                    self._catch_up(always=True)
                    return
                if watch.stalled(aggregator.status, aggregator.completed, self.clock.monotonic()):
                    raise self._stalled()
        raise _StreamEnded(
            f"the pull stream of {self.model.display} ended without 'success' at "
            f"{_where(self.aggregator.snapshot)}"
        )

    def _stalled(self) -> PullStalled:
        return PullStalled(
            f"pull of {self.model.display} stalled: no progress for "
            f"{human_seconds(self.options.stall_timeout)} at {_where(self.aggregator.snapshot)}",
            host=self.client.base_url,
            model=self.model.display,
            phase="pull",
            hint=_RULES["stalled"].hint,
        )

    # -- retries --

    def _retrying(self, operation: Callable[[], _T]) -> _T:
        while True:
            try:
                return operation()
            except (_Stopped, KeyboardInterrupt):
                raise
            except (OllamaReadyError, _StreamEnded) as exc:
                failure = self._classify(exc)
                if not failure.rule.transient:
                    error = self._permanent(failure)
                    if error is exc:
                        raise
                    raise error from exc
                self._before_retry(failure)

    def _before_retry(self, failure: _Failure) -> None:
        self.failures += 1
        rule = failure.rule
        if rule.name == "digest-mismatch":
            self.mismatches += 1
            if self.mismatches >= _DIGEST_MISMATCH_LIMIT:
                raise self._error(
                    DigestMismatch,
                    f"pull of {self.model.display} failed: a blob did not verify "
                    f"{self.mismatches} times in a row ({failure.text})",
                    rule.hint,
                ) from failure.cause
        tries = self.options.retry.max_tries
        attempts = self.failures
        if attempts >= tries:
            raise self._exhausted(failure, f"after {attempts} attempts") from failure.cause
        delay = next(self.delays)
        remaining = self.deadline.remaining()
        if self.deadline.expired or delay >= remaining:
            raise self._exhausted(
                failure,
                f"after {attempts} attempts: the deadline leaves {human_seconds(remaining)}, "
                f"the next attempt was due in {human_seconds(delay)}",
            ) from failure.cause
        logger.warning(
            "pull of %s: attempt %d of %d failed (%s: %s); retrying in %.1fs",
            self.model.display,
            attempts,
            tries,
            rule.name,
            failure.text,
            delay,
        )
        self._emit(self.aggregator.retrying(attempts, delay, f"{rule.name}: {failure.text}"))
        self.deadline.sleep(delay)
        if self.deadline.cancelled:
            raise _Stopped

    def _classify(self, exc: BaseException) -> _Failure:
        if isinstance(exc, PullStalled):
            return _Failure(_RULES["stalled"], exc, exc.message)
        if isinstance(exc, _StreamEnded):
            return _Failure(_RULES["stream-ended"], exc, str(exc))
        if isinstance(exc, ResponseError):
            text = exc.server_message or exc.message
            return _Failure(classify_error(text, status=exc.status), exc, text)
        if isinstance(exc, OllamaConnectionError):
            if exc.kind == "timeout":
                return _Failure(_RULES["stalled"], exc, exc.message)
            if exc.kind == "tls" and "timed out" not in exc.message.lower():
                return _Failure(_RULES["ollama-tls"], exc, exc.message)
            return _Failure(_RULES["ollama-unreachable"], exc, exc.message)
        assert isinstance(exc, OllamaReadyError)
        # Our own checks (an invalid name, a protocol violation): never worth a retry.
        return _Failure(_RULE_AS_IS, exc, exc.message)

    def _permanent(self, failure: _Failure) -> OllamaReadyError:
        cause = failure.cause
        rule = failure.rule
        if isinstance(cause, OllamaReadyError) and (
            rule is _RULE_AS_IS or isinstance(cause, rule.error)
        ):
            if cause.hint is None:
                cause.hint = rule.hint if rule is not _RULE_AS_IS else None
            return cause
        if rule.error is ModelNotFound:
            return self._not_found(failure.text)
        hint = rule.hint
        if rule.error is InsecureRegistry and self.options.insecure:
            hint = "the registry answered plain HTTP although insecure=True was given"
        return self._error(rule.error, f"pull of {self.model.display} failed: {failure.text}", hint)

    # -- errors --

    def _error(self, cls: type[OllamaReadyError], message: str, hint: str) -> OllamaReadyError:
        return cls(
            message, host=self.client.base_url, model=self.model.display, phase="pull", hint=hint
        )

    def _not_found(self, text: str) -> OllamaReadyError:
        name = self.model
        if name.host.lower() == DEFAULT_HOST and name.namespace.lower() == DEFAULT_NAMESPACE:
            hint = (
                f"check the spelling and the tag: https://ollama.com/library/{name.model} lists "
                "the tags of this model"
            )
        else:
            hint = f"check that {name.namespace}/{name.model}:{name.tag} exists on {name.host}"
        return self._error(
            ModelNotFound,
            f"{name.host} has no model {name.namespace}/{name.model} with tag {name.tag!r} "
            f"(server: {text})",
            hint,
        )

    def _absent_error(self) -> OllamaReadyError:
        return self._error(
            ModelNotPresent,
            f"{self.model.display} is not on the server at {self.client.base_url} and the pull "
            "policy is 'never'",
            "pull it first (policy='missing'), or create it",
        )

    def _pin_error(self, actual: str | None, *, after_pull: bool) -> OllamaReadyError:
        found = f"manifest digest {actual[:12]}" if actual else "no manifest digest in /api/tags"
        if after_pull:
            message = (
                f"after the pull, {self.model.display} has {found}, expected {self.options.pin}"
            )
            hint = "the tag now points elsewhere in the registry: pin the new digest or a fixed tag"
        else:
            message = (
                f"{self.model.display} is present with {found}, expected {self.options.pin}, "
                "and the pull policy is 'never'"
            )
            hint = "use policy='missing' to pull the pinned version, or update the pin"
        return self._error(DigestMismatch, message, hint)

    def _exhausted(self, failure: _Failure, how: str) -> OllamaReadyError:
        spent = human_seconds(self.clock.monotonic() - self.started)
        return self._error(
            PullRetriesExhausted,
            f"pull of {self.model.display} did not complete {how} in {spent}; last error "
            f"({failure.rule.name}): {failure.text}",
            failure.rule.hint,
        )

    def _stopped_error(self) -> DeadlineExceeded:
        why = "was cancelled" if self.deadline.cancelled else "ran out"
        budget = self.deadline.timeout
        of = f" of {human_seconds(budget)}" if budget is not None else ""
        snapshot = self.aggregator.snapshot
        at = f" at {_where(snapshot)}" if self.requests else ""
        return DeadlineExceeded(
            f"pull of {self.model.display} stopped{at}: the deadline{of} {why}. "
            f"{SERVER_AFTER_STOP}",
            host=self.client.base_url,
            model=self.model.display,
            phase="pull",
            hint="give the pull more time (timeout=...), or pre-pull the model into the image",
        )

    def gave_up_waiting(self) -> DeadlineExceeded:
        """Return the error of a caller whose deadline ended while another caller pulled."""
        why = "was cancelled" if self.deadline.cancelled else "ran out"
        return DeadlineExceeded(
            f"stopped waiting for {self.model.display}: the deadline {why} while another caller "
            "in this process was pulling it; that pull goes on",
            host=self.client.base_url,
            model=self.model.display,
            phase="pull",
            hint="give the pull more time (timeout=...), or pre-pull the model into the image",
        )

    # -- plumbing --

    def _request_timeout(self) -> tuple[float, float] | None:
        remaining = self.deadline.remaining()
        if math.isinf(remaining):
            return None
        remaining = max(remaining, 0.001)
        return (min(_CONNECT_TIMEOUT, remaining), min(_SHOW_READ_TIMEOUT, remaining))

    def _emit(self, snapshot: ProgressSnapshot) -> None:
        self.flight.emit(snapshot)

    def _catch_up(self, *, always: bool = False) -> None:
        """Publish the latest snapshot if lines went unreported and someone watches now."""
        flight = self.flight
        if flight.behind and (always or flight.observed):
            flight.emit(self.aggregator.snapshot)


_RULE_AS_IS = ErrorRule(
    name="as-is", pattern=None, error=OllamaReadyError, transient=False, hint=""
)


@dataclass(frozen=True, slots=True)
class _Listed:
    digest: str | None
    size: int | None


def _where(snapshot: ProgressSnapshot) -> str:
    layer = snapshot.layer
    if snapshot.phase == "downloading" and layer is not None and layer.total:
        return (
            f"{layer.short} {format_bytes(layer.completed)} of {format_bytes(layer.total)} "
            f"({format_bytes(snapshot.completed)} of {format_bytes(snapshot.total)} known)"
        )
    return f"'{snapshot.status}'"


@dataclass(slots=True)
class _StallWatch:
    """Progress means new bytes or a new status line; identical re-sent lines are not progress."""

    timeout: float
    since: float
    status: str | None = None
    completed: int = -1

    def stalled(self, status: str, completed: int, now: float) -> bool:
        if status != self.status or completed > self.completed:
            self.status, self.completed, self.since = status, completed, now
            return False
        self.completed = completed
        return self.expired(now)

    def expired(self, now: float) -> bool:
        """Whether nothing counted as progress for ``timeout`` seconds up to ``now``."""
        return now - self.since >= self.timeout


# --- reading a stream on a helper thread -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Raised:
    error: BaseException


_END = object()


@dataclass(slots=True)
class _Pacer:
    """Decides when the reader of a fast stream pauses, so that it reads lines in batches.

    Waking up for a line costs the reader more CPU than parsing it. A real server sends a line
    every 60 ms, but a fast server, a buffering proxy or a registry mirror next door can send
    hundreds a second: then the reader pauses for ``pause`` seconds and reads what gathered
    meanwhile in one go. The stream is fast when a line the reader had to wait for (its read
    took at least ``ready`` seconds; a shorter one found the line already there) came less than
    ``fast`` seconds after the line before. A line every 60 ms is never paused; a line is late
    by ``pause`` at most.
    """

    pause: float = 0.05
    fast: float = 0.0125
    ready: float = 0.0005
    _previous: float = field(default=-math.inf, init=False, repr=False)

    def pause_after(self, started: float, arrived: float) -> float:
        """Return the pause after a read that began at ``started`` and got a line at ``arrived``."""
        interval, self._previous = arrived - self._previous, arrived
        if arrived - started >= self.ready and interval < self.fast:
            return self.pause
        return 0.0


class _Pump:
    """Read an event iterator on a daemon thread and hand its items over through a queue.

    The caller can then give up at any moment (deadline, cancel, Ctrl-C) without waiting for the
    next byte. Closing the pump closes the iterator, which closes the HTTP response: at once
    when the helper is between reads, else as soon as its read returns (a stuck server still
    sends a line every 60 ms; a silent one is ended by the read timeout).

    Progress lines are handed over in batches: the caller is woken for a line without a blob (a
    new phase), the end of the stream, an error or a full queue, and otherwise drains the queue
    when it wakes anyway (every ``_POLL_SECONDS``): waking a thread per line costs as much CPU
    as reading the line. For the same reason the helper reads a fast stream in batches
    (:class:`_Pacer`).
    """

    def __init__(
        self, events: Iterator[PullEvent], label: str, *, pacer: _Pacer | None = None
    ) -> None:
        self._events = events
        self._pacer = pacer if pacer is not None else _Pacer()
        # SimpleQueue: the hand-over costs a few microseconds per line; _offer bounds its size.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closing = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"ollama-ready-pull-stream[{label}]", daemon=True
        )

    def __enter__(self) -> _Pump:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def events(
        self, deadline: Deadline, *, idle: Callable[[], None] | None = None
    ) -> Iterator[PullEvent]:
        """Yield events until the stream ends; raise what the stream raised, or ``_Stopped``.

        ``idle`` is called whenever a wait for the next item ends without one.
        """
        while True:
            if deadline.expired:
                raise _Stopped
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = self._wait(deadline)
                if item is None:
                    if idle is not None:
                        idle()
                    continue
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            assert isinstance(item, PullEvent)
            yield item

    def _wait(self, deadline: Deadline) -> object | None:
        """Wait for a wake-up; return an item that came meanwhile, or None."""
        # Cleared before looking again: a wake-up for an item put after that look is kept.
        self._wake.clear()
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        # Wake at the deadline itself, and often enough to notice a cancel().
        self._wake.wait(max(0.001, min(_POLL_SECONDS, deadline.remaining())))
        return None

    def close(self) -> None:
        """Stop reading and close the stream (now, or when the pending read returns)."""
        self._stop.set()
        # ValueError: the helper is inside a read; it closes the stream when the read returns.
        with contextlib.suppress(ValueError):
            self._close_events()

    def _run(self) -> None:
        clock = time.monotonic  # pacing is about real time, whatever clock the pull reads
        pacer = self._pacer
        events = iter(self._events)
        try:
            while True:
                started = clock()
                event = next(events, None)
                if event is None:
                    break
                pause = pacer.pause_after(started, clock())
                # Progress of a blob can wait for the caller's next look; a new phase cannot.
                if not self._offer(event, urgent=event.digest is None):
                    return
                if pause and self._stop.wait(pause):
                    return
            self._offer(_END, urgent=True)
        except BaseException as exc:  # handed over to the caller's thread
            self._offer(_Raised(exc), urgent=True)
        finally:
            self._close_events()

    def _close_events(self) -> None:
        # Both threads close the stream; the lock keeps one from closing it while the other is.
        close = getattr(self._events, "close", None)
        if close is not None:
            with self._closing:
                close()

    def _offer(self, item: object, *, urgent: bool) -> bool:
        if self._queue.qsize() >= _QUEUE_SIZE:  # a slow reporter: wait for the reader
            self._wake.set()
            while self._queue.qsize() >= _QUEUE_SIZE:
                if self._stop.wait(_BACKPRESSURE_SECONDS):
                    return False
        if self._stop.is_set():
            return False
        self._queue.put(item)
        if urgent:
            self._wake.set()
        return True


# --- sharing one pull between concurrent callers -----------------------------------------------


class _Flight:
    """One pull in progress, shared by every caller that asks for the same model meanwhile.

    ``observed`` says whether any reporter wants snapshots (a :class:`NullReporter` does not);
    while none does, the pull sets ``behind`` instead of building a snapshot per line. A caller
    that joins then gets the latest snapshot with the next line, or within ``_POLL_SECONDS``.
    """

    def __init__(self, reporter: Reporter) -> None:
        self.done = threading.Event()
        self.result: PullResult | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.observed = _observes(reporter)
        self.behind = False
        self._lock = threading.Lock()
        self._reporters: list[Reporter] = [reporter]
        self._last: ProgressSnapshot | None = None

    def subscribe(self, reporter: Reporter) -> None:
        with self._lock:
            if any(known is reporter for known in self._reporters):
                return
            self._reporters.append(reporter)
            self.observed = self.observed or _observes(reporter)
            last = None if self.behind else self._last
        if last is not None:
            _observe(reporter, last, self)

    def unsubscribe(self, reporter: Reporter) -> None:
        with self._lock:
            self._reporters = [known for known in self._reporters if known is not reporter]
            self.observed = any(_observes(known) for known in self._reporters)

    def emit(self, snapshot: ProgressSnapshot) -> None:
        with self._lock:
            self._last = snapshot
            self.behind = False
            reporters = tuple(self._reporters)
        for reporter in reporters:
            _observe(reporter, snapshot, self)


def _observes(reporter: Reporter) -> bool:
    return not isinstance(reporter, NullReporter)


def _observe(reporter: Reporter, snapshot: ProgressSnapshot, flight: _Flight) -> None:
    """Call a reporter; one that raises is dropped, never allowed to break the pull."""
    try:
        reporter(snapshot)
    except Exception:
        logger.warning(
            "progress reporter %r failed; it gets no more updates", reporter, exc_info=True
        )
        flight.unsubscribe(reporter)


_FlightKey = tuple[str, ModelName, str]  # base URL, model, policy


class _Flights:
    """The pulls in progress in this process, by server, model and policy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[_FlightKey, _Flight] = {}

    def run(self, key: _FlightKey, job: _PullJob, reporter: Reporter) -> PullResult:
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight(reporter)
            if leader:
                return self._lead(key, flight, job)
            outcome = self._follow(flight, job, reporter)
            if outcome is not None:
                return outcome
            # The leader gave up for reasons of its own (its deadline, Ctrl-C): lead or follow anew.

    def _lead(self, key: _FlightKey, flight: _Flight, job: _PullJob) -> PullResult:
        try:
            result = job.run(flight)
        except BaseException as exc:
            flight.error = exc
            flight.abandoned = not isinstance(exc, Exception) or isinstance(exc, DeadlineExceeded)
            if isinstance(exc, PullRetriesExhausted) and job.deadline.expired:
                flight.abandoned = True
            raise
        else:
            flight.result = result
            return result
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()

    def _follow(self, flight: _Flight, job: _PullJob, reporter: Reporter) -> PullResult | None:
        flight.subscribe(reporter)
        try:
            while not flight.done.wait(max(0.001, min(_POLL_SECONDS, job.deadline.remaining()))):
                if job.deadline.expired:
                    raise job.gave_up_waiting()
        finally:
            flight.unsubscribe(reporter)
        if flight.abandoned:
            return None
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        result = flight.result
        pin = job.options.pin
        if pin is not None and not _digest_matches(pin, result.digest):
            raise job._pin_error(result.digest, after_pull=True)
        return result


_FLIGHTS = _Flights()
