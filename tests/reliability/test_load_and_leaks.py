"""Load and leaks: 64 concurrent ensures share pulls and leave nothing behind; RSS stays flat.

The load test runs ``ensure_model`` on 64 threads at once over four absent models and one
present one: every call succeeds, each absent model is pulled exactly once from this process
(concurrent callers share the pull), and the thread count and the open file descriptors go
back to where they were. The leak test makes 1000 cached calls in a fresh interpreter (see
``_rss_probe.py``) and bounds the growth of its resident memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ollama_ready.ensure import EnsureResult, ensure_model
from ollama_ready.errors import OllamaReadyError
from ollama_ready.names import ModelName
from ollama_ready.testing import FakeModel, FakeOllama

from .conftest import Recorder

THREADS = 64
ABSENT = tuple(FakeModel.synthetic(f"load{i}:1b", size=2_000_000, layers=2) for i in range(4))
PRESENT = FakeModel.synthetic("cached:1b", size=1_000_000, layers=1)
MODELS = (*ABSENT, PRESENT)
SETTLE_SECONDS = 5.0
CALLS = 1000
WARMUP = 100
RSS_LIMIT_KIB = 2048


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled(baseline: tuple[int, int]) -> tuple[int, int]:
    """Wait until threads and fds are back to ``baseline`` (or the settle time is over)."""
    until = time.monotonic() + SETTLE_SECONDS
    while True:
        now = (threading.active_count(), _open_fds())
        if (now[0] <= baseline[0] and now[1] <= baseline[1]) or time.monotonic() > until:
            return now
        time.sleep(0.02)


@pytest.mark.timeout(90)
def test_64_threads_ensure_a_mix_of_models_and_leave_nothing_behind(
    reliability: Recorder,
) -> None:
    with FakeOllama(registry=MODELS, models=(PRESENT,), tick=0.005, bandwidth=8_000_000) as server:
        ensure_model(PRESENT.name, host=server.url, progress="none")  # imports and caches
        server.clear_requests()
        baseline = _settled((threading.active_count(), _open_fds()))
        results: list[EnsureResult] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(THREADS)

        def ensure(index: int) -> None:
            start.wait()
            try:
                result = ensure_model(
                    MODELS[index % len(MODELS)].name, host=server.url, progress="none", timeout=60
                )
            except OllamaReadyError as exc:
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    results.append(result)

        started = time.monotonic()
        workers = [
            threading.Thread(target=ensure, args=(i,), name=f"load-{i}") for i in range(THREADS)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        wall = time.monotonic() - started
        assert not any(worker.is_alive() for worker in workers), "an ensure hung"
        pulls = Counter(
            ModelName.parse(r.body["model"]).display
            for r in server.requests
            if r.path == "/api/pull" and isinstance(r.body, dict)
        )
        after = _settled(baseline)
    wanted = {model.display: 1 for model in ABSENT}
    reliability.add(
        "load",
        threads=THREADS,
        models=len(MODELS),
        present=1,
        succeeded=len(results),
        pulls={m.display: pulls[m.display] for m in MODELS},
        max_pulls=max(pulls.values(), default=0),
        threads_before=baseline[0],
        threads_after=after[0],
        fds_before=baseline[1],
        fds_after=after[1],
        wall=round(wall, 3),
    )
    assert errors == []
    assert len(results) == THREADS
    assert dict(pulls) == wanted
    assert {r.model for r in results} == {m.name for m in MODELS}
    assert after[0] <= baseline[0], f"threads {baseline[0]} -> {after[0]}"
    assert after[1] <= baseline[1], f"open fds {baseline[1]} -> {after[1]}"


@pytest.mark.timeout(120)
def test_1000_cached_ensures_keep_the_resident_memory_flat(reliability: Recorder) -> None:
    probe = Path(__file__).with_name("_rss_probe.py")
    with FakeOllama(registry=(), models=(PRESENT,), tick=0.005) as server:
        done = subprocess.run(
            [sys.executable, str(probe), server.url, PRESENT.name, str(CALLS), str(WARMUP)],
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        asked = server.count()
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    growth = figures["rss_after_kib"] - figures["rss_before_kib"]
    reliability.add(
        "leak",
        calls=CALLS,
        warmup=WARMUP,
        rss_before_kib=figures["rss_before_kib"],
        rss_after_kib=figures["rss_after_kib"],
        growth_kib=growth,
        limit_kib=RSS_LIMIT_KIB,
        fds_growth=figures["fds_after"] - figures["fds_before"],
        threads_growth=figures["threads_after"] - figures["threads_before"],
    )
    assert asked == 3 * (CALLS + WARMUP)  # the cached path: version, show, tags
    assert growth <= RSS_LIMIT_KIB, f"RSS grew by {growth} KiB over {CALLS} calls"
    assert figures["fds_after"] <= figures["fds_before"]
    assert figures["threads_after"] <= figures["threads_before"]
