"""A pull nobody watches builds no snapshot per line, and loses nothing for that.

:meth:`ProgressAggregator.feed` applies an event without building a snapshot; the pull engine
uses it while every reporter of a pull is a :class:`NullReporter`. These tests check that the
accounting is the same either way, and that a caller who joins such a pull with a real reporter
still sees its progress and its end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollama_ready.client import ModelInfo, Timeout
from ollama_ready.errors import ModelNotPresent
from ollama_ready.names import ModelName
from ollama_ready.progress import (
    NullReporter,
    ProgressAggregator,
    ProgressSnapshot,
    PullEvent,
    Reporter,
)
from ollama_ready.pull import PullResult, pull_model
from ollama_ready.testing import FakeClock

DIGESTS = ("sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64)
HOST = "http://ollama.test:11434"

_numbers = st.one_of(st.none(), st.integers(min_value=-5, max_value=2000))
_events = st.one_of(
    st.builds(
        PullEvent,
        status=st.sampled_from(["pulling a", "pulling b"]),
        digest=st.sampled_from(DIGESTS),
        total=_numbers,
        completed=_numbers,
    ),
    st.builds(
        PullEvent,
        status=st.sampled_from(["pulling manifest", "verifying sha256 digest", "success"]),
    ),
)


def _sums(snapshot: ProgressSnapshot) -> tuple[int | None, int, int]:
    known = [layer.total for layer in snapshot.layers if layer.total is not None]
    return (
        sum(known) if known else None,
        sum(layer.completed for layer in snapshot.layers),
        sum(layer.cached for layer in snapshot.layers),
    )


@given(st.lists(_events, max_size=40))
def test_feeding_gives_the_snapshots_updating_gives(events: list[PullEvent]) -> None:
    fed_clock, updated_clock = FakeClock(), FakeClock()
    fed = ProgressAggregator("m", clock=fed_clock)
    updated = ProgressAggregator("m", clock=updated_clock)
    for event in events:
        fed_clock.advance(0.3)
        updated_clock.advance(0.3)
        fed.feed(event)
        snapshot = updated.update(event)
        assert (fed.phase, fed.status, fed.completed) == (
            snapshot.phase,
            snapshot.status,
            snapshot.completed,
        )
        assert fed.snapshot == snapshot
        assert (snapshot.total, snapshot.completed, snapshot.cached) == _sums(snapshot)
    assert fed.finish("done") == updated.finish("done")


def test_a_snapshot_built_late_carries_the_time_of_its_last_event() -> None:
    clock = FakeClock()
    aggregator = ProgressAggregator("m", clock=clock)
    clock.advance(2.0)
    aggregator.feed(PullEvent("pulling a", DIGESTS[0], 100, 10))
    clock.advance(5.0)
    assert aggregator.snapshot.elapsed == pytest.approx(2.0)
    assert aggregator.snapshot is aggregator.snapshot  # built once


# --- the engine --------------------------------------------------------------------------------


def _script(size: int = 1000) -> list[PullEvent]:
    return [
        PullEvent("pulling manifest"),
        PullEvent("pulling aaaaaaaaaaaa", DIGESTS[0], size, 0),
        PullEvent("pulling aaaaaaaaaaaa", DIGESTS[0], size, size // 2),
        PullEvent("pulling aaaaaaaaaaaa", DIGESTS[0], size, size),
        PullEvent("pulling bbbbbbbbbbbb", DIGESTS[1], 10, 10),
        PullEvent("verifying sha256 digest"),
        PullEvent("writing manifest"),
        PullEvent("success"),
    ]


@dataclass
class Scripted:
    """Plays the script on ``pull()``, optionally stopping midway until ``release`` is set."""

    pause_at: int | None = None
    pause_listing: bool = False
    base_url: str = HOST
    release: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    present: set[ModelName] = field(default_factory=set)

    def show(self, name: str, *, verbose: bool = False, timeout: Timeout | None = None) -> object:
        if ModelName.parse(name) not in self.present:
            raise ModelNotPresent(f"model {name!r} not found", host=self.base_url)
        return {}

    def list_models(self, *, timeout: Timeout | None = None) -> tuple[ModelInfo, ...]:
        if self.pause_listing:
            self.paused.set()
            assert self.release.wait(10)
        return ()

    def pull(
        self, name: str, *, insecure: bool = False, timeout: Timeout | None = None
    ) -> Iterator[PullEvent]:
        for index, event in enumerate(_script()):
            if index == self.pause_at:
                self.paused.set()
                assert self.release.wait(10)
            yield event
        self.present.add(ModelName.parse(name))


@pytest.mark.parametrize("reporter", [None, "none", NullReporter()])
def test_an_unwatched_pull_accounts_as_a_watched_one(reporter: Reporter | str | None) -> None:
    seen: list[ProgressSnapshot] = []
    watched = pull_model(Scripted(), "tiny", reporter=seen.append)
    unwatched = pull_model(Scripted(), "tiny", reporter=reporter)
    assert seen[-1].phase == "done"

    def accounting(result: PullResult) -> tuple[object, ...]:
        return (result.pulled, result.bytes_downloaded, result.bytes_present, result.size)

    assert accounting(unwatched) == accounting(watched) == (True, 1000, 10, 1010)


def test_a_caller_joining_an_unwatched_pull_sees_its_progress_and_its_end() -> None:
    client = Scripted(pause_at=3)
    results: list[PullResult] = []
    leader = threading.Thread(target=lambda: results.append(pull_model(client, "tiny")))
    leader.start()
    try:
        assert client.paused.wait(10)
        seen: list[ProgressSnapshot] = []
        caught_up = threading.Event()

        def watch(snapshot: ProgressSnapshot) -> None:
            seen.append(snapshot)
            if snapshot.completed == 500:
                caught_up.set()

        follower = threading.Thread(
            target=lambda: results.append(pull_model(client, "tiny", reporter=watch))
        )
        follower.start()
        # The leader's stream is silent now; the follower still gets its latest progress.
        assert caught_up.wait(10)
        assert seen[-1].phase == "downloading"
    finally:
        client.release.set()
        leader.join(10)
    follower.join(10)
    assert len(results) == 2
    assert results[0] is results[1]
    final = seen[-1]
    assert final.phase == "done"
    assert final.completed == 1010


def test_a_caller_joining_after_the_stream_ended_sees_the_end_at_once() -> None:
    client = Scripted(pause_listing=True)  # the leader lists the models after the stream
    leader = threading.Thread(target=pull_model, args=(client, "tiny"))
    leader.start()
    try:
        assert client.paused.wait(10)
        seen: list[ProgressSnapshot] = []
        delivered = threading.Event()

        def watch(snapshot: ProgressSnapshot) -> None:
            seen.append(snapshot)
            delivered.set()

        follower = threading.Thread(
            target=pull_model, args=(client, "tiny"), kwargs={"reporter": watch}
        )
        follower.start()
        assert delivered.wait(10)  # while the leader still waits for the listing
        assert [snapshot.phase for snapshot in seen] == ["done"]
    finally:
        client.release.set()
        leader.join(10)
    follower.join(10)
