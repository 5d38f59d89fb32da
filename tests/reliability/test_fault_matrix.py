"""Every FakeOllama fault against every operation: outcome, retries, requests and wall time.

The rows are in :mod:`._faults`, the columns in :mod:`._ops`. Each cell asserts what its row
specifies and records what it observed for ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter

import pytest

from ollama_ready.ensure import ensure_model
from ollama_ready.errors import NotReadyError, PullRetriesExhausted
from ollama_ready.pull import DEFAULT_RETRY, ERROR_RULES, classify_error
from ollama_ready.readiness import Poll, wait_until_ready
from ollama_ready.testing import FakeClock, FakeOllama

from ._faults import ERROR_SAMPLES, FAULTS, Expect, Fault
from ._ops import (
    BANDWIDTH,
    MODEL,
    MODEL_NAME,
    OPERATIONS,
    PULL,
    TICK,
    Key,
    Observed,
    Operation,
    Run,
)
from .conftest import Recorder

pytestmark = pytest.mark.timeout(10)  # tests that take longer set their own

MAX_OVERSHOOT = 0.1  # seconds an operation may run past its deadline
#: CPython's own shutdown after ``main`` returned (module teardown and a final garbage
#: collection; measured 50-110 ms for the CLI), on top of the overshoot, until the process is gone.
INTERPRETER_EXIT = 0.5
EARLY = 0.05  # an operation that ends because of the deadline ends no earlier than this before it

_CELLS = [
    pytest.param(
        fault,
        op,
        marks=pytest.mark.timeout(fault.deadline + (25 if op.name == "CLI" else 8)),
        id=f"{fault.name}-{op.name}",
    )
    for fault in FAULTS
    for op in OPERATIONS
]


@pytest.mark.parametrize(("fault", "op"), _CELLS)
def test_cell(fault: Fault, op: Operation, reliability: Recorder) -> None:
    expect = fault.expect(op)
    with FakeOllama(registry=(MODEL,), tick=TICK, bandwidth=BANDWIDTH) as server:
        op.prepare(server)
        if fault.present:
            server.add_model(MODEL)
        run = Run(deadline=fault.deadline, stall_timeout=fault.stall_timeout)
        started = threading.Event()
        with fault.arm(server, op, started):
            seen = op(server, run, started)
        received = Counter((r.method, r.path) for r in server.requests)
    reliability.add(
        "cell",
        fault=fault.name,
        fault_index=FAULTS.index(fault),
        injection=fault.injection,
        expected=fault.specified,
        op=op.name,
        op_index=OPERATIONS.index(op),
        outcome=seen.outcome,
        exit_code=seen.exit_code,
        retries=seen.retries,
        server_requests=sum(received.values()),
        client_requests=sum(seen.client_requests.values()),
        wall=round(seen.wall, 4),
        exit_wall=None if seen.exit_wall is None else round(seen.exit_wall, 4),
        deadline=fault.deadline,
        reaches=expect.reaches,
    )
    _assert_outcome(expect, seen, op)
    _assert_retries(expect, seen)
    _assert_requests(expect, received)
    _assert_wall(expect, seen, fault.deadline)


def _assert_outcome(expect: Expect, seen: Observed, op: Operation) -> None:
    if op.name == "CLI":
        assert seen.exit_code == expect.exit_code, (expect.outcome, seen.stderr[-3000:])
        assert "this is a bug in ollama-ready" not in seen.stderr, seen.stderr
        assert seen.outcome == expect.outcome, seen.stdout
        if expect.outcome == "ok":
            (result,) = json.loads(seen.stdout)
            assert result["model"] == MODEL.name
            assert result["pulled"] is (PULL in expect.requests)
        elif expect.phase is not None:
            assert json.loads(seen.stdout)["error"]["phase"] == expect.phase, seen.stdout
        return
    assert seen.outcome == expect.outcome, repr(seen.error)
    if seen.error is not None and expect.phase is not None:
        assert getattr(seen.error, "phase", None) == expect.phase, repr(seen.error)


def _assert_retries(expect: Expect, seen: Observed) -> None:
    low, high = expect.retries
    assert low <= seen.retries <= high, (
        f"{seen.retries} retries (probes {seen.probes}, pull retries {seen.pull_retries}); "
        f"specified {low}..{high}"
    )


def _assert_requests(expect: Expect, received: Counter[Key]) -> None:
    for key in set(received) | set(expect.requests):
        low, high = expect.requests.get(key, (0, 0))
        assert low <= received[key] <= high, (
            f"{key}: {received[key]} received, specified {low}..{high}; all: {dict(received)}"
        )


def _assert_wall(expect: Expect, seen: Observed, deadline: float) -> None:
    assert seen.wall <= deadline + MAX_OVERSHOOT, f"{seen.wall:.3f} s against {deadline} s"
    if seen.exit_wall is not None:
        limit = deadline + MAX_OVERSHOOT + INTERPRETER_EXIT
        assert seen.exit_wall <= limit, f"process gone after {seen.exit_wall:.3f} s"
    if expect.at_deadline:
        assert seen.wall >= deadline - EARLY, f"ended {deadline - seen.wall:.3f} s early"
    assert seen.wall >= expect.min_wall, f"{seen.wall:.3f} s, expected >= {expect.min_wall}"


def test_every_error_rule_with_a_pattern_has_a_row() -> None:
    patterned = {rule.name for rule in ERROR_RULES if rule.pattern is not None}
    assert patterned <= set(ERROR_SAMPLES)
    rows = {fault.name for fault in FAULTS}
    assert {f"error line: {name}" for name in patterned} <= rows


@pytest.mark.parametrize("rule", sorted(ERROR_SAMPLES))
def test_each_sample_message_is_classified_by_its_rule(rule: str) -> None:
    message, outcome = ERROR_SAMPLES[rule]
    classified = classify_error(message)
    assert classified.name == rule
    assert classified.transient is (outcome == "ok")
    if outcome != "ok":
        assert classified.error.__name__ == outcome


# --- long deadlines on a FakeClock: the schedule, not the waiting, is the point -----------------


@pytest.mark.timeout(30)
def test_a_10_minute_wait_for_a_server_that_never_comes_up(reliability: Recorder) -> None:
    clock = FakeClock()
    with FakeOllama(tick=TICK) as server:
        server.refuse_connections(3600)
        started = time.monotonic()
        with pytest.raises(NotReadyError) as caught:
            wait_until_ready(server.url, strategy=Poll(interval=2.0), timeout=600, clock=clock)
        real = time.monotonic() - started
    found = re.search(r"(\d+) probes", str(caught.value))
    assert found is not None, caught.value
    probes = int(found[1])
    reliability.add(
        "clock",
        scenario="a server that never comes up, 10-minute deadline",
        op="wait (Poll every 2 s)",
        outcome=type(caught.value).__name__,
        retries=probes - 1,
        fake=round(clock.monotonic() - 1000.0, 3),
        deadline=600,
        real=round(real, 3),
    )
    assert clock.monotonic() - 1000.0 == pytest.approx(600, abs=0.001)
    assert all(1.8 <= pause <= 2.2 for pause in clock.sleeps[:-1])  # 2 s, 10% jitter
    assert 270 <= probes <= 335
    assert real < 10


@pytest.mark.timeout(30)
def test_the_default_retry_schedule_gives_up_after_eight_attempts(reliability: Recorder) -> None:
    clock = FakeClock()
    with FakeOllama(registry=(MODEL,), tick=TICK) as server:
        server.registry_unreachable(True)
        started = time.monotonic()
        with pytest.raises(PullRetriesExhausted) as caught:
            ensure_model(MODEL_NAME, host=server.url, progress="none", clock=clock)
        real = time.monotonic() - started
        pulls = server.count(*PULL)
    backoff = [s for s in clock.sleeps if s >= 0.05 or s == 0]  # the Poll probe slept nothing
    reliability.add(
        "clock",
        scenario="registry unreachable, the default retry policy, 600 s deadline",
        op="ensure",
        outcome=type(caught.value).__name__,
        retries=pulls - 1,
        fake=round(clock.monotonic() - 1000.0, 3),
        deadline=600,
        real=round(real, 3),
    )
    assert pulls == DEFAULT_RETRY.max_tries
    assert "after 8 attempts" in str(caught.value)
    assert len(backoff) == DEFAULT_RETRY.max_tries - 1
    for attempt, delay in enumerate(backoff):
        assert 0 <= delay <= min(DEFAULT_RETRY.max_interval, 2**attempt)  # full jitter
    assert real < 10
