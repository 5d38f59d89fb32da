from __future__ import annotations

import math

import pytest

from ollama_ready.clock import SYSTEM_CLOCK, Clock, Deadline
from ollama_ready.testing import FakeClock


def test_time_module_is_a_clock() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock)
    assert isinstance(FakeClock(), Clock)


def test_deadline_counts_down_on_the_fake_clock() -> None:
    clock = FakeClock()
    deadline = Deadline(10, clock=clock)
    assert deadline.remaining() == 10
    clock.advance(4)
    assert deadline.remaining() == 6
    assert deadline.elapsed() == 4
    assert not deadline.expired
    clock.advance(7)
    assert deadline.remaining() == 0
    assert deadline.expired


def test_sleep_never_passes_the_deadline() -> None:
    clock = FakeClock()
    deadline = Deadline(5, clock=clock)
    assert deadline.sleep(3) == 3
    assert deadline.sleep(3) == 2
    assert deadline.sleep(3) == 0
    assert clock.sleeps == [3, 2]


def test_no_deadline_never_expires() -> None:
    clock = FakeClock()
    deadline = Deadline(None, clock=clock)
    clock.advance(1e9)
    assert deadline.remaining() == math.inf
    assert deadline.bound(None) is None
    assert deadline.bound(2.5) == 2.5
    assert repr(deadline) == "Deadline(None)"


def test_bound_caps_at_what_is_left() -> None:
    clock = FakeClock()
    deadline = Deadline(10, clock=clock)
    clock.advance(8)
    assert deadline.bound(5) == 2
    assert deadline.bound(None) == 2


def test_sub_deadline_never_outlives_its_parent() -> None:
    clock = FakeClock()
    parent = Deadline(10, clock=clock)
    clock.advance(6)
    assert parent.sub(30).remaining() == 4
    assert parent.sub(1).remaining() == 1
    assert parent.sub(None).remaining() == 4
    assert Deadline(None, clock=clock).sub(None).remaining() == math.inf


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_invalid_timeout_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Deadline(bad)


def test_fake_clock_rejects_negative_sleep_and_records_sleeps() -> None:
    clock = FakeClock(start=0)
    clock.sleep(0.25)
    clock.sleep(0.5)
    assert clock.monotonic() == 0.75
    assert clock.slept == 0.75
    with pytest.raises(ValueError, match="non-negative"):
        clock.sleep(-1)


def test_cancel_ends_the_deadline_and_its_children() -> None:
    clock = FakeClock()
    deadline = Deadline(60, clock=clock)
    child = deadline.sub(30)
    deadline.cancel()
    assert deadline.cancelled
    assert deadline.expired
    assert child.expired
    assert deadline.remaining() == 0
    assert deadline.sleep(5) == 0
    assert clock.sleeps == []


def test_cancel_wakes_a_real_sleep() -> None:
    import threading
    import time

    deadline = Deadline(30)
    timer = threading.Timer(0.05, deadline.cancel)
    started = time.monotonic()
    timer.start()
    deadline.sleep(10)
    timer.join()
    assert time.monotonic() - started < 2
