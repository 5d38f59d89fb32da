"""The rows of the fault matrix: how each FakeOllama fault is injected and what is specified.

Every fault states, for every operation, the outcome (``ok`` or an error class, with the CLI's
exit code), the range of retries, the requests the server may receive (a key not listed must not
be received at all) and whether the operation ends because the deadline ran out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace

from ollama_ready.pull import ERROR_RULES
from ollama_ready.testing import FakeOllama

from ._ops import MODEL, PULL, SHOW, STALL_TIMEOUT, TAGS, VERSION, Key, Operation

__all__ = ["ERROR_SAMPLES", "EXIT_CODES", "FAULTS", "Expect", "Fault"]

Span = tuple[int, int]

#: The exit code the CLI documents for each outcome (``ollama_ready.cli.EXIT_CODES``).
EXIT_CODES: Mapping[str, int] = {
    "ok": 0,
    "ProtocolError": 1,
    "InvalidModelName": 2,
    "NotReadyError": 3,
    "ModelNotFound": 4,
    "PullError": 5,
    "PullRetriesExhausted": 5,
    "DeadlineExceeded": 5,
    "Unauthorized": 5,
    "InsecureRegistry": 5,
    "DigestMismatch": 5,
    "DiskFull": 6,
    "ServerTooOld": 8,
}

#: A real server message for each pattern of ``pull.ERROR_RULES``, and the outcome it specifies.
ERROR_SAMPLES: Mapping[str, tuple[str, str]] = {
    "server-too-old": (
        "pull model manifest: 412: \n\nThe model you are attempting to pull requires a newer "
        "version of Ollama.\n\nPlease download the latest version at:\n\n\thttps://ollama.com/",
        "ServerTooOld",
    ),
    "disk-full": (
        "write /root/.ollama/models/blobs/sha256-1e1ffc6345c6-partial-3: no space left on device",
        "DiskFull",
    ),
    "insecure-registry": (
        'pull model manifest: Get "https://127.0.0.1:5000/v2/library/tiny/manifests/1b": '
        "http: server gave HTTP response to HTTPS client",
        "InsecureRegistry",
    ),
    "unauthorized": ("pull model manifest: 401: unauthorized", "Unauthorized"),
    "forbidden": ("pull model manifest: 403: Forbidden", "Unauthorized"),
    "model-not-found": ("pull model manifest: file does not exist", "ModelNotFound"),
    "invalid-name": ("invalid model name", "InvalidModelName"),
    "needs-mlx": (
        "this model requires MLX support, but the MLX runtime is not available",
        "PullError",
    ),
    "digest-mismatch": (
        "digest mismatch, file must be downloaded again: want sha256:1e1ffc6345c6, got "
        "sha256:9f86d081884c",
        "ok",
    ),
    "max-retries-exceeded": ("max retries exceeded: EOF", "ok"),
    "registry-dns": (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/tiny/manifests/1b": '
        "dial tcp: lookup registry.ollama.ai on 127.0.0.53:53: no such host",
        "ok",
    ),
    "registry-unreachable": (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/tiny/manifests/1b": '
        "dial tcp 104.21.75.227:443: connect: connection refused",
        "ok",
    ),
    "registry-timeout": (
        'Get "https://registry.ollama.ai/v2/": net/http: TLS handshake timeout',
        "ok",
    ),
    "connection-reset": (
        "read tcp 10.0.0.2:51234->104.21.75.227:443: read: connection reset by peer",
        "ok",
    ),
    "rate-limited": ("pull model manifest: 429: Too Many Requests", "ok"),
    "server-busy": ("server busy, please try again.  maximum pending requests exceeded", "ok"),
    "canceled": ("context canceled", "ok"),
    "registry-error": ("pull model manifest: 502: Bad Gateway", "ok"),
    "server-error": ("an error no rule knows about", "ok"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Expect:
    """What one cell specifies."""

    outcome: str = "ok"
    retries: Span = (0, 0)
    requests: Mapping[Key, Span] = field(default_factory=dict)
    at_deadline: bool = False
    min_wall: float = 0.0
    phase: str | None = None
    reaches: bool = True

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this outcome."""
        return EXIT_CODES[self.outcome]


Arm = Callable[[FakeOllama, Operation, threading.Event], AbstractContextManager[object]]
"""Inject a fault; ``started`` is set once the operation sends its first request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One row: the injection, the parameters of its cells and what each operation must do."""

    name: str
    injection: str
    specified: str
    arm: Arm
    expect: Callable[[Operation], Expect]
    deadline: float = 4.0
    stall_timeout: float = STALL_TIMEOUT
    present: bool = False

    def __str__(self) -> str:
        return self.name


# --- requests ------------------------------------------------------------------------------------


def _exactly(**counts: int) -> dict[Key, Span]:
    keys = {"version": VERSION, "show": SHOW, "pull": PULL, "tags": TAGS}
    return {keys[name]: (n, n) for name, n in counts.items() if n}


def _baseline(op: Operation, *, present: bool = False) -> dict[Key, Span]:
    """The requests of a fault-free run of ``op``."""
    if op.name == "wait":
        return _exactly(version=1)
    if op.name == "check":
        return _exactly(version=1, show=1)
    if op.name == "pull":
        return _exactly(show=1, tags=1) if present else _exactly(show=1, pull=1, tags=1)
    if present:
        return _exactly(version=1, show=1, tags=1)
    return _exactly(version=1, show=2, pull=1, tags=2)


def _with(requests: Mapping[Key, Span], **changes: Span) -> dict[Key, Span]:
    keys = {"version": VERSION, "show": SHOW, "pull": PULL, "tags": TAGS}
    merged = dict(requests)
    for name, span in changes.items():
        if span == (0, 0):
            merged.pop(keys[name], None)
        else:
            merged[keys[name]] = span
    return merged


def _unaffected(op: Operation, *, present: bool = False) -> Expect:
    return Expect(requests=_baseline(op, present=present), reaches=False)


def _pull_failed(op: Operation, outcome: str, *, pulls: int = 1) -> Expect:
    """A pull that ended in ``outcome`` after ``pulls`` /api/pull requests, no verify."""
    requests = _baseline(op)
    requests = _with(requests, pull=(pulls, pulls), tags=(0, 0))
    if op.name != "pull":
        requests = _with(requests, show=(1, 1))
    return Expect(outcome=outcome, requests=requests, phase="pull")


def _retried_pull(op: Operation, span: Span) -> Expect:
    lo, hi = span
    return Expect(retries=span, requests=_with(_baseline(op), pull=(lo + 1, hi + 1)))


# --- arming ------------------------------------------------------------------------------------


def _now(action: Callable[[FakeOllama], object]) -> Arm:
    def arm(
        server: FakeOllama, op: Operation, started: threading.Event
    ) -> AbstractContextManager[object]:
        action(server)
        return nullcontext()

    return arm


def _window(action: Callable[[FakeOllama], object], seconds: float) -> Arm:
    """Start a refused or hung period now; end it ``seconds`` after the first request.

    Timing the end from the first request (not from now) gives a CLI, which needs a moment to
    start, the same fault as an in-process call.
    """

    def arm(
        server: FakeOllama, op: Operation, started: threading.Event
    ) -> AbstractContextManager[object]:
        action(server)
        return _clear_after_first_request(server, started, seconds)

    return arm


@contextmanager
def _clear_after_first_request(
    server: FakeOllama, started: threading.Event, seconds: float
) -> Iterator[None]:
    done = threading.Event()

    def clear() -> None:
        while not done.is_set():
            if started.wait(0.01):
                if not done.wait(seconds):
                    server.clear_faults()
                return

    clearer = threading.Thread(target=clear, name="clear-fault", daemon=True)
    clearer.start()
    try:
        yield
    finally:
        done.set()
        clearer.join(5)


@contextmanager
def _restart_mid_pull(server: FakeOllama, fraction: float, down_for: float) -> Iterator[None]:
    """Restart the server once the first blob of the pull is ``fraction`` done."""
    blob = MODEL.blobs[0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if server.count(*PULL) and server.partial_bytes(blob.digest) >= fraction * blob.size:
                server.restart(down_for=down_for)
                return
            done.wait(0.002)

    watcher = threading.Thread(target=watch, name="restart-mid-pull", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(5)


def _restart(
    server: FakeOllama, op: Operation, started: threading.Event
) -> AbstractContextManager[object]:
    if op.pulls:
        return _restart_mid_pull(server, 0.3, down_for=0.2)
    return _window(lambda s: s.restart(down_for=60.0), 0.3)(server, op, started)


# --- the rows ------------------------------------------------------------------------------------


def _refused(op: Operation) -> Expect:
    if op.name == "check":
        return Expect(outcome="NotReadyError", phase="check")
    if op.name == "pull":
        return Expect(retries=(1, 5), requests=_baseline(op))
    return Expect(retries=(1, 40), requests=_baseline(op))


def _hung(op: Operation) -> Expect:
    return Expect(requests=_baseline(op), min_wall=0.25)


def _busy(op: Operation) -> Expect:
    if op.name == "check":
        return Expect(outcome="NotReadyError", requests=_exactly(version=1), phase="check")
    key = "show" if op.name == "pull" else "version"
    (lo, hi) = _baseline(op)[SHOW if key == "show" else VERSION]
    return Expect(retries=(1, 1), requests=_with(_baseline(op), **{key: (lo + 1, hi + 1)}))


def _on_pull_path(expect: Callable[[Operation], Expect]) -> Callable[[Operation], Expect]:
    def for_op(op: Operation) -> Expect:
        return expect(op) if op.pulls else _unaffected(op)

    return for_op


def _retried_once(op: Operation) -> Expect:
    return _retried_pull(op, (1, 1))


def _stalled(op: Operation) -> Expect:
    # A re-issued pull that arrives before the server noticed the abandoned stream joins the
    # frozen download and stalls once more (ensure's jittered first delay can be that short).
    return _retried_pull(op, (1, 2) if op.name == "pull" else (1, 3))


def _past_deadline(op: Operation) -> Expect:
    return replace(_pull_failed(op, "DeadlineExceeded"), at_deadline=True)


def _error_line(outcome: str) -> Callable[[Operation], Expect]:
    def for_op(op: Operation) -> Expect:
        if outcome == "ok":
            return _retried_once(op)
        return _pull_failed(op, outcome)

    return _on_pull_path(for_op)


def _restarted(op: Operation) -> Expect:
    if op.name == "wait":
        return Expect(retries=(1, 40), requests=_baseline(op))
    if op.name == "check":
        return Expect(outcome="NotReadyError", phase="check")
    span = (1, 5) if op.name == "pull" else (1, 6)
    return _retried_pull(op, span)


def _registry_down(op: Operation) -> Expect:
    if not op.pulls:
        return _unaffected(op)
    if op.name == "pull":
        return replace(_pull_failed(op, "PullRetriesExhausted", pulls=6), retries=(5, 5))
    expect = _pull_failed(op, "PullRetriesExhausted")
    return replace(expect, retries=(1, 7), requests=_with(expect.requests, pull=(2, 8)))


def _registry_down_present(op: Operation) -> Expect:
    expect = _unaffected(op, present=True)
    return replace(expect, reaches=op.pulls)


def _slow(op: Operation) -> Expect:
    return Expect(requests=_baseline(op), min_wall=0.4) if op.pulls else _unaffected(op)


def _never_up(op: Operation) -> Expect:
    if op.name == "check":
        return Expect(outcome="NotReadyError", phase="check")
    if op.name == "pull":
        return Expect(outcome="PullRetriesExhausted", retries=(5, 5), phase="pull")
    return Expect(outcome="NotReadyError", retries=(5, 100), at_deadline=True, phase="wait")


def _never_serves(op: Operation) -> Expect:
    outcome = {"check": "NotReadyError", "pull": "PullRetriesExhausted"}.get(
        op.name, "NotReadyError"
    )
    phase = {"check": "check", "pull": "pull"}.get(op.name, "wait")
    return Expect(outcome=outcome, at_deadline=True, phase=phase)


def _error_at_half(message: str) -> Callable[[FakeOllama], None]:
    def arm(server: FakeOllama) -> None:
        server.error_mid_stream(message, at_fraction=0.5)

    return arm


def _shorten(message: str, limit: int = 60) -> str:
    first = message.splitlines()[0]
    return repr(first) if len(first) <= limit and first == message else f"{first[:limit]!r}…"


def _error_rows() -> list[Fault]:
    rows = []
    for rule in ERROR_RULES:
        if rule.pattern is None:  # recognised by status or kind: the rows below and above
            continue
        message, outcome = ERROR_SAMPLES[rule.name]
        specified = (
            "transient: retried once, then ok (CLI exit 0)"
            if outcome == "ok"
            else f"permanent: {outcome} at once, one pull (CLI exit {EXIT_CODES[outcome]})"
        )
        rows.append(
            Fault(
                name=f"error line: {rule.name}",
                injection=f"error_mid_stream({_shorten(message)}, 0.5)",
                specified=specified,
                arm=_now(_error_at_half(message)),
                expect=_error_line(outcome),
            )
        )
    message, _ = ERROR_SAMPLES["server-error"]
    rows.append(
        Fault(
            name="error line: unclassified",
            injection=f"error_mid_stream({message!r}, 0.5)",
            specified="an unknown error is transient (server-error): retried once, then ok",
            arm=_now(_error_at_half(message)),
            expect=_error_line("ok"),
        )
    )
    return rows


FAULTS: tuple[Fault, ...] = (
    Fault(
        name="refused",
        injection="the port refuses from before the first request until 0.3 s after it",
        specified="waits retry until the port opens; a pull retries its refused request; "
        "check is one probe: NotReadyError (exit 3)",
        arm=_window(lambda s: s.refuse_connections(60.0), 0.3),
        expect=_refused,
    ),
    Fault(
        name="bound, not serving",
        injection="the port hangs (bound, nothing answered) until 0.3 s after the first request",
        specified="the waiting request is answered when serving starts: ok, no retry",
        arm=_window(lambda s: s.hang_connections(60.0), 0.3),
        expect=_hung,
    ),
    Fault(
        name="503 once",
        injection="fail_next(1, 503)",
        specified="the busy answer is retried once (the first request of each operation); "
        "check: NotReadyError",
        arm=_now(lambda s: s.fail_next(1, status=503)),
        expect=_busy,
    ),
    Fault(
        name="500 once on /api/pull",
        injection='fail_next(1, 500, path="/api/pull")',
        specified="server-error is transient: one retry, then ok",
        arm=_now(lambda s: s.fail_next(1, status=500, path="/api/pull")),
        expect=_on_pull_path(_retried_once),
    ),
    Fault(
        name="reset at 30%",
        injection="reset_at(0.3)",
        specified="one retry that resumes on the server, then ok",
        arm=_now(lambda s: s.reset_at(0.3)),
        expect=_on_pull_path(_retried_once),
    ),
    Fault(
        name="reset at 70%",
        injection="reset_at(0.7)",
        specified="one retry that resumes on the server, then ok",
        arm=_now(lambda s: s.reset_at(0.7)),
        expect=_on_pull_path(_retried_once),
    ),
    Fault(
        name="stall, repeated lines",
        injection='stall(1.0, "repeat", at_fraction=0.3); stall_timeout 0.3 s',
        specified="completed bytes stop growing: PullStalled after 0.3 s, re-issued, ok",
        arm=_now(lambda s: s.stall(1.0, "repeat", at_fraction=0.3)),
        expect=_on_pull_path(_stalled),
    ),
    Fault(
        name="stall, silent",
        injection='stall(1.0, "silent", at_fraction=0.3); stall_timeout 0.3 s',
        specified="the read timeout (= stall timeout) fires, the pull is re-issued, ok",
        arm=_now(lambda s: s.stall(1.0, "silent", at_fraction=0.3)),
        expect=_on_pull_path(_stalled),
    ),
    Fault(
        name="stall past the deadline",
        injection='stall(30, "silent", at_fraction=0.3); stall_timeout 10 s; deadline 0.8 s',
        specified="DeadlineExceeded within 100 ms of the deadline (CLI exit 5)",
        arm=_now(lambda s: s.stall(30.0, "silent", at_fraction=0.3)),
        expect=_on_pull_path(_past_deadline),
        deadline=0.8,
        stall_timeout=10.0,
    ),
    *_error_rows(),
    Fault(
        name="server restart mid-pull",
        injection="restart(down_for=0.2) once the first blob is 30% done (for a readiness "
        "operation: a restart that stays down until 0.3 s after its first request)",
        specified="the broken stream and the refused re-issues are retried, the pull starts "
        "again, ok; check: NotReadyError",
        arm=_restart,
        expect=_restarted,
    ),
    Fault(
        name="registry unreachable (dial)",
        injection='registry_unreachable(kind="dial"); deadline 2 s',
        specified="transient: retried until the tries or the deadline run out: "
        "PullRetriesExhausted (exit 5)",
        arm=_now(lambda s: s.registry_unreachable(True, kind="dial")),
        expect=_registry_down,
        deadline=2.0,
    ),
    Fault(
        name="registry unreachable (DNS)",
        injection='registry_unreachable(kind="dns"); deadline 2 s',
        specified="transient: retried until the tries or the deadline run out: "
        "PullRetriesExhausted (exit 5)",
        arm=_now(lambda s: s.registry_unreachable(True, kind="dns")),
        expect=_registry_down,
        deadline=2.0,
    ),
    Fault(
        name="registry unreachable, model present",
        injection="the model is present; registry_unreachable()",
        specified="a present model never contacts the registry: ok, no /api/pull",
        arm=_now(lambda s: s.registry_unreachable(True)),
        expect=_registry_down_present,
        present=True,
    ),
    Fault(
        name="slow bandwidth",
        injection="set_bandwidth(4 MB/s): the pull takes 0.5 s",
        specified="ok, no retry, the pull takes as long as the bytes need",
        arm=_now(lambda s: s.set_bandwidth(4_000_000)),
        expect=_slow,
    ),
    Fault(
        name="slow bandwidth past the deadline",
        injection="set_bandwidth(400 kB/s): the pull would take 5 s; deadline 0.8 s",
        specified="DeadlineExceeded within 100 ms of the deadline (CLI exit 5)",
        arm=_now(lambda s: s.set_bandwidth(400_000)),
        expect=_on_pull_path(_past_deadline),
        deadline=0.8,
    ),
    Fault(
        name="never comes up",
        injection="refuse_connections(60); deadline 1 s",
        specified="NotReadyError at the deadline (exit 3); a pull exhausts its 6 tries",
        arm=_now(lambda s: s.refuse_connections(60.0)),
        expect=_never_up,
        deadline=1.0,
    ),
    Fault(
        name="never serves",
        injection="hang_connections(60): bound, never answers; deadline 1 s",
        specified="the one waiting request is cut at the deadline: NotReadyError (exit 3), "
        "a pull PullRetriesExhausted",
        arm=_now(lambda s: s.hang_connections(60.0)),
        expect=_never_serves,
        deadline=1.0,
    ),
)
