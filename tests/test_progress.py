"""Progress: the aggregator's accounting, the snapshots and the reporters' exact output."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import math
import os
import struct
import subprocess
import sys
import termios
import types
from collections.abc import Iterable, Iterator
from typing import TextIO

import pytest

from ollama_ready._reporters import format_bytes
from ollama_ready.errors import ConfigError
from ollama_ready.progress import (
    JsonReporter,
    LinesReporter,
    NullReporter,
    ProgressAggregator,
    ProgressSnapshot,
    PullEvent,
    TqdmReporter,
    make_reporter,
)
from ollama_ready.testing import FakeClock

BIG = "sha256:" + "1df98b4ea3fe" + "a" * 52
SMALL = "sha256:" + "b507b9c2f6ca" + "b" * 52


def manifest() -> PullEvent:
    return PullEvent("pulling manifest")


def blob(digest: str, total: int | None, completed: int | None) -> PullEvent:
    return PullEvent(f"pulling {digest[7:19]}", digest, total, completed)


def scripted_pull() -> list[tuple[float, PullEvent]]:
    """A small pull: a 2 MB layer at 100 kB/s, a cached 13-byte layer, then the tail."""
    steps: list[tuple[float, PullEvent]] = [(0.0, manifest()), (0.1, blob(BIG, 2_000_000, 0))]
    done = 0
    for _ in range(20):
        done += 100_000
        steps.append((1.0, blob(BIG, 2_000_000, done)))
    steps += [
        (0.1, blob(SMALL, 13, 13)),
        (0.1, PullEvent("verifying sha256 digest")),
        (0.5, PullEvent("writing manifest")),
        (0.1, PullEvent("success")),
    ]
    return steps


def run(
    steps: Iterable[tuple[float, PullEvent]], clock: FakeClock, model: str = "tiny:latest"
) -> list[ProgressSnapshot]:
    aggregator = ProgressAggregator(model, clock=clock)
    snapshots = []
    for delay, event in steps:
        clock.advance(delay)
        snapshots.append(aggregator.update(event))
    return snapshots


def test_phases_follow_the_server_statuses() -> None:
    clock = FakeClock()
    phases = [s.phase for s in run(scripted_pull(), clock)]
    assert phases[0] == "manifest"
    assert set(phases[1:22]) == {"downloading"}
    assert phases[-4:] == ["downloading", "verifying", "writing", "done"]


def test_cleanup_statuses_count_as_writing_and_unknown_statuses_keep_the_phase() -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    aggregator.update(PullEvent("verifying sha256 digest"))
    assert aggregator.update(PullEvent("something new")).phase == "verifying"
    assert aggregator.update(PullEvent("removing unused layers")).phase == "writing"
    assert aggregator.update(PullEvent("couldn't remove unused layers: x")).phase == "writing"
    assert aggregator.snapshot.status == "couldn't remove unused layers: x"


def test_totals_become_known_layer_by_layer() -> None:
    snapshots = run(scripted_pull(), FakeClock())
    assert snapshots[0].total is None
    assert snapshots[0].fraction is None
    assert snapshots[1].total == 2_000_000
    assert snapshots[-1].total == 2_000_013
    assert snapshots[-1].completed == 2_000_013
    assert snapshots[-1].fraction == 1.0
    assert [layer.short for layer in snapshots[-1].layers] == ["1df98b4ea3fe", "b507b9c2f6ca"]


def test_cache_hits_and_resumed_data_count_as_cached_growth_as_downloaded() -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    aggregator.update(blob(SMALL, 13, 13))  # a cache hit: one line, complete
    aggregator.update(blob(BIG, 1000, 400))  # a resumed download
    snapshot = aggregator.update(blob(BIG, 1000, 1000))
    assert snapshot.cached == 413
    assert snapshot.downloaded == 600
    assert snapshot.layer is not None
    assert snapshot.layer.cached == 400
    assert snapshot.layer.done


def test_a_small_blob_complete_on_its_first_line_but_repeated_was_downloaded() -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    aggregator.update(blob(SMALL, 13, 13))
    aggregator.update(blob(SMALL, 13, 13))  # a real server repeats a fresh blob for ~1 s
    snapshot = aggregator.update(blob(BIG, 100, 100))  # one line: a cache hit
    assert snapshot.downloaded == 13
    assert snapshot.cached == 100
    assert [layer.cached for layer in snapshot.layers] == [0, 100]


def test_bytes_lost_in_a_retry_are_downloaded_again_and_counted_once_each() -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    aggregator.update(blob(BIG, 1000, 0))
    aggregator.update(blob(BIG, 1000, 600))
    aggregator.begin_attempt(2)
    aggregator.update(manifest())
    aggregator.update(blob(BIG, 1000, 100))  # the server pruned its partial data
    snapshot = aggregator.update(blob(BIG, 1000, 1000))
    assert snapshot.attempt == 2
    assert snapshot.downloaded == 600 + 900
    assert snapshot.cached == 0
    assert snapshot.completed == 1000


def test_resumed_attempt_counts_only_new_growth() -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    aggregator.update(blob(BIG, 1000, 0))
    aggregator.update(blob(BIG, 1000, 500))
    aggregator.begin_attempt(2)
    aggregator.update(blob(BIG, 1000, 500))  # the server kept the partial data
    snapshot = aggregator.update(blob(BIG, 1000, 1000))
    assert snapshot.downloaded == 1000


@pytest.mark.parametrize(
    ("total", "completed", "expected_completed", "expected_total"),
    [
        (100, 250, 100, 100),  # completed > total: clamped
        (-5, 10, 10, None),  # negative total: unknown
        (100, -1, 0, 100),  # negative completed: zero
        (math.nan, math.inf, 0, None),  # NaN and infinity: unknown
        (None, None, 0, None),  # Ollama omits zero values
        (True, 5, 5, None),  # a bool is not a byte count
    ],
)
def test_out_of_range_numbers_never_crash(
    total: object, completed: object, expected_completed: int, expected_total: int | None
) -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    event = PullEvent("pulling x", BIG, total, completed)  # type: ignore[arg-type]
    snapshot = aggregator.update(event)
    assert snapshot.completed == expected_completed
    assert snapshot.total == expected_total
    assert snapshot.fraction is None or 0.0 <= snapshot.fraction <= 1.0
    assert snapshot.eta is None or snapshot.eta >= 0


def test_pull_event_from_json_drops_negative_numbers() -> None:
    event = PullEvent.from_json({"status": "pulling x", "digest": BIG, "total": -1})
    assert event.total is None
    assert event.layer == "1df98b4ea3fe"


def test_rate_is_smoothed_and_eta_follows_it() -> None:
    snapshots = run(scripted_pull(), FakeClock())
    downloading = [s for s in snapshots if s.phase == "downloading" and s.layer is not None]
    assert downloading[0].rate is None  # one sample is not a rate
    steady = downloading[15]
    assert steady.rate == pytest.approx(100_000, rel=0.01)
    assert steady.eta == pytest.approx((2_000_000 - steady.completed) / 100_000, rel=0.01)
    assert snapshots[-1].eta is None  # no ETA once the download is over


def test_rate_ignores_cache_hits_and_decays_when_stuck() -> None:
    clock = FakeClock()
    aggregator = ProgressAggregator("m", clock=clock)
    aggregator.update(blob(BIG, 10_000_000, 0))
    for step in range(1, 6):
        clock.advance(1.0)
        aggregator.update(blob(BIG, 10_000_000, step * 1000))
    clock.advance(0.1)
    assert aggregator.update(blob(SMALL, 5_000_000, 5_000_000)).rate == pytest.approx(
        1000, rel=0.01
    )
    for _ in range(30):  # completed frozen while lines keep coming, like a real stuck server
        clock.advance(1.0)
        snapshot = aggregator.update(blob(BIG, 10_000_000, 5000))
    assert snapshot.rate is not None
    assert snapshot.rate < 10


def test_snapshots_are_immutable_values() -> None:
    snapshot = run(scripted_pull(), FakeClock())[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.phase = "failed"  # type: ignore[misc]
    assert snapshot.layers[0] == dataclasses.replace(snapshot.layers[0])


def test_engine_phases_retrying_failed_and_finish() -> None:
    clock = FakeClock()
    aggregator = ProgressAggregator("m", clock=clock)
    retry = aggregator.retrying(1, 2.25, "connection reset")
    assert retry.phase == "retrying"
    assert retry.message is not None
    assert "attempt 1 failed (connection reset); retrying in 2.2s" in retry.message
    assert not retry.finished
    assert aggregator.begin_attempt(2).phase == "manifest"
    assert aggregator.fail("boom").finished
    done = aggregator.finish("already present")
    assert (done.phase, done.message, done.finished) == ("done", "already present", True)


def test_as_dict_is_json_ready() -> None:
    snapshot = run(scripted_pull()[:12], FakeClock())[-1]
    record = snapshot.as_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["layer"] == "1df98b4ea3fe"
    assert record["layer_total"] == 2_000_000


# --- reporters ---------------------------------------------------------------------------------


def feed(reporter: object, snapshots: Iterable[ProgressSnapshot]) -> None:
    assert callable(reporter)
    for snapshot in snapshots:
        reporter(snapshot)


def test_lines_reporter_output_verbatim() -> None:
    clock = FakeClock()
    snapshots = run(scripted_pull(), clock)
    out = io.StringIO()
    feed(LinesReporter(out, step=25.0), snapshots)
    assert out.getvalue() == (
        "tiny:latest: pulling manifest\n"
        "tiny:latest: pulling 1df98b4ea3fe:   0% of 2 MB\n"
        "tiny:latest: pulling 1df98b4ea3fe:  25% of 2 MB, 100 KB/s, eta 15s\n"
        "tiny:latest: pulling 1df98b4ea3fe:  50% of 2 MB, 100 KB/s, eta 10s\n"
        "tiny:latest: pulling 1df98b4ea3fe:  75% of 2 MB, 100 KB/s, eta 5.0s\n"
        "tiny:latest: pulling 1df98b4ea3fe: 100% of 2 MB, 100 KB/s, eta 0.0s\n"
        "tiny:latest: pulling b507b9c2f6ca: 100% of 13 B, 100 KB/s, eta 0.0s\n"
        "tiny:latest: verifying sha256 digest\n"
        "tiny:latest: writing manifest\n"
        "tiny:latest: success: 2.0 MB in 20s (2 MB downloaded, 13 B already present)\n"
    )


def test_lines_reporter_never_writes_ansi_or_carriage_returns() -> None:
    out = io.StringIO()
    feed(LinesReporter(out), run(scripted_pull(), FakeClock()))
    assert "\x1b" not in out.getvalue()
    assert "\r" not in out.getvalue()


def test_lines_reporter_speaks_every_interval_while_stuck() -> None:
    clock = FakeClock()
    aggregator = ProgressAggregator("m", clock=clock)
    out = io.StringIO()
    reporter = LinesReporter(out, interval=10.0)
    reporter(aggregator.update(blob(BIG, 1000, 500)))
    for _ in range(400):  # 24 s of identical lines every 60 ms
        clock.advance(0.06)
        reporter(aggregator.update(blob(BIG, 1000, 500)))
    assert out.getvalue().count("\n") == 3  # the first line, then one per 10 s


def test_lines_reporter_reports_retries_and_failures_with_a_label() -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    out = io.StringIO()
    reporter = make_reporter("lines", stream=out, label="my-model")
    reporter(aggregator.update(manifest()))
    reporter(aggregator.retrying(1, 1.5, "connection refused"))
    reporter(aggregator.begin_attempt(2))
    reporter(aggregator.fail("ModelNotFound: no such model"))
    assert out.getvalue() == (
        "my-model: pulling manifest\n"
        "my-model: attempt 1 failed (connection refused); retrying in 1.5s, "
        "the server resumes from the data it kept\n"
        "my-model: pulling manifest (attempt 2)\n"
        "my-model: failed: ModelNotFound: no such model\n"
    )


def test_lines_reporter_keeps_state_per_model() -> None:
    clock = FakeClock()
    first = ProgressAggregator("a", clock=clock)
    second = ProgressAggregator("b", clock=clock)
    out = io.StringIO()
    reporter = LinesReporter(out, step=50.0)
    reporter(first.update(blob(BIG, 100, 10)))
    reporter(second.update(blob(BIG, 100, 10)))
    reporter(first.update(blob(BIG, 100, 20)))  # same bucket: silent
    reporter(second.update(blob(BIG, 100, 60)))
    assert out.getvalue().splitlines() == [
        "a: pulling 1df98b4ea3fe:  10% of 100 B",
        "b: pulling 1df98b4ea3fe:  10% of 100 B",
        "b: pulling 1df98b4ea3fe:  60% of 100 B",
    ]


def test_json_reporter_output_verbatim() -> None:
    clock = FakeClock()
    snapshots = run(scripted_pull(), clock)
    out = io.StringIO()
    feed(JsonReporter(out, step=50.0), snapshots)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        '{"model":"tiny:latest","phase":"manifest","status":"pulling manifest","attempt":1,'
        '"layer":null,"layer_completed":null,"layer_total":null,"completed":0,"total":null,'
        '"cached":0,"downloaded":0,"rate":null,"eta":null,"elapsed":0.0,"message":null}'
    )
    assert lines[-1] == (
        '{"model":"tiny:latest","phase":"done","status":"success","attempt":1,'
        '"layer":"b507b9c2f6ca","layer_completed":13,"layer_total":13,"completed":2000013,'
        '"total":2000013,"cached":13,"downloaded":2000000,"rate":100000.0,"eta":null,'
        '"elapsed":20.9,"message":null}'
    )
    phases = [json.loads(line)["phase"] for line in lines]
    assert phases == ["manifest"] + ["downloading"] * 4 + ["verifying", "writing", "done"]


def test_tqdm_reporter_draws_a_bar_and_closes_it() -> None:
    out = io.StringIO()
    feed(TqdmReporter(out, ncols=80), run(scripted_pull(), FakeClock()))
    text = out.getvalue()
    assert "tiny:latest: 100%|" in text
    assert "2.00M/2.00M" in text
    assert "success" in text
    final = text.rstrip("\n").split("\r")[-1]
    assert final.startswith("tiny:latest: 100%|")


def test_tqdm_reporter_prints_present_models_and_failures_as_lines() -> None:
    aggregator = ProgressAggregator("m", clock=FakeClock())
    out = io.StringIO()
    reporter = TqdmReporter(out)
    reporter(aggregator.finish("already present, not pulled"))
    assert out.getvalue() == "m: already present, not pulled\n"


def test_make_reporter_names() -> None:
    assert isinstance(make_reporter("none"), NullReporter)
    assert isinstance(make_reporter(None), NullReporter)
    assert isinstance(make_reporter(" Lines "), LinesReporter)
    assert isinstance(make_reporter("json"), JsonReporter)

    def mine(snapshot: ProgressSnapshot) -> None:
        del snapshot

    assert make_reporter(mine) is mine
    with pytest.raises(ConfigError, match="unknown progress reporter 'fancy'"):
        make_reporter("fancy")


@contextlib.contextmanager
def _terminal(columns: int) -> Iterator[TextIO]:
    """Yield a real pseudo-terminal that reports ``columns`` as its width."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with os.fdopen(follower, "w") as stream:
        try:
            yield stream
        finally:
            os.close(leader)


def test_auto_picks_lines_off_a_terminal_and_tqdm_on_one() -> None:
    assert isinstance(make_reporter("auto", stream=io.StringIO()), LinesReporter)
    with _terminal(80) as tty:
        assert isinstance(make_reporter("auto", stream=tty), TqdmReporter)


def test_auto_picks_lines_on_a_terminal_without_width() -> None:
    with _terminal(0) as tty:
        assert isinstance(make_reporter("auto", stream=tty), LinesReporter)


def test_auto_picks_the_notebook_widget_in_jupyter(monkeypatch: pytest.MonkeyPatch) -> None:
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    reporter = make_reporter("auto", stream=io.StringIO())
    assert isinstance(reporter, TqdmReporter)
    assert repr(reporter) == "TqdmReporter(notebook=True)"
    # A terminal IPython is not a notebook.
    shell.config = {"TerminalIPythonApp": {}}
    assert isinstance(make_reporter("auto", stream=io.StringIO()), LinesReporter)


def test_reporter_spacing_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        LinesReporter(step=0)


def test_importing_progress_does_not_import_tqdm() -> None:
    code = "import sys, ollama_ready.progress; print('tqdm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (None, "?"),
        (0, "0 B"),
        (13, "13 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1400, "1.4 KB"),
        (262_016, "262 KB"),
        (202_792_128, "202 MB"),
        (6_700_000_000, "6.7 GB"),
        (12_800_000_000, "12 GB"),
        (-3, "0 B"),
        (math.nan, "?"),
        (999.7, "999 B"),
        (41_300_000.5, "41 MB"),
    ],
)
def test_format_bytes_like_ollama(count: float | None, text: str) -> None:
    assert format_bytes(count) == text
