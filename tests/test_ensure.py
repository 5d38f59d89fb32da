"""End-to-end tests of ensure_model() against FakeOllama, a real server on loopback."""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from ollama_ready import errors
from ollama_ready.clock import Deadline
from ollama_ready.ensure import (
    EnsureResult,
    ensure_fleet,
    ensure_model,
    ensure_model_async,
    ensure_models,
)
from ollama_ready.readiness import Poll
from ollama_ready.testing import FakeClock, FakeNvml, FakeOllama

TICK = 0.005


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.2:1b"], tick=TICK) as fake:
        yield fake


def test_cached_model_needs_no_pull_and_at_most_three_requests(server: FakeOllama) -> None:
    result = ensure_model("llama3.2:1b", host=server.url, progress="none")

    assert result.model == "registry.ollama.ai/library/llama3.2:1b"
    assert result.display_name == "llama3.2:1b"
    assert result.pulled is False
    assert result.bytes_downloaded == 0
    assert result.server_version == "0.12.11"
    assert result.host == server.url
    assert result.digest == server.model("llama3.2:1b").manifest_digest  # type: ignore[union-attr]
    assert result.size == server.model("llama3.2:1b").size  # type: ignore[union-attr]
    assert server.count("POST", "/api/pull") == 0
    assert len(server.requests) <= 3
    assert list(result.phases) == ["wait", "version", "pull"]


def test_missing_model_is_pulled_then_verified(server: FakeOllama) -> None:
    server.set_bandwidth(4_000_000_000)
    result = ensure_model("qwen2.5:0.5b", host=server.url, progress="none")

    assert result.pulled is True
    assert result.bytes_downloaded > 0
    assert result.digest is not None
    assert len(result.digest) == 64
    assert server.has_model("qwen2.5:0.5b")
    assert server.count("POST", "/api/pull") == 1
    assert result.duration >= sum(result.phases[p] for p in ("pull", "verify")) * 0.99


def test_registry_unreachable_but_model_present_still_succeeds(server: FakeOllama) -> None:
    server.registry_unreachable(kind="dns")
    result = ensure_model("llama3.2:1b", host=server.url, progress="none")
    assert result.pulled is False
    assert server.count("POST", "/api/pull") == 0


def test_model_name_is_checked_before_any_request(server: FakeOllama) -> None:
    with pytest.raises(errors.InvalidModelName):
        ensure_model("bad name!", host=server.url, progress="none")
    assert server.requests == []


def test_no_model_uses_the_environment(server: FakeOllama) -> None:
    environ = {"OLLAMA_HOST": server.url, "OLLAMA_READY_MODELS": "llama3.2:1b"}
    result = ensure_model(environ=environ, progress="none")
    assert result.display_name == "llama3.2:1b"

    with pytest.raises(errors.ConfigError, match="ensure_models"):
        ensure_model(environ={**environ, "OLLAMA_READY_MODELS": "a,b"})
    with pytest.raises(errors.ConfigError, match="OLLAMA_READY_MODELS"):
        ensure_model(environ={"OLLAMA_HOST": server.url})


def test_explicit_arguments_win_over_the_environment(server: FakeOllama) -> None:
    environ = {"OLLAMA_HOST": "127.0.0.1:9", "OLLAMA_READY_PULL_POLICY": "never"}
    result = ensure_model("qwen2.5:0.5b", host=server.url, pull_policy="missing", environ=environ)
    assert result.pulled


def test_policy_never_refuses_to_pull(server: FakeOllama) -> None:
    with pytest.raises(errors.ModelNotPresent) as caught:
        ensure_model("qwen2.5:0.5b", host=server.url, pull_policy="never", progress="none")
    assert caught.value.phase == "pull"
    assert server.count("POST", "/api/pull") == 0


# -- every phase failing names its phase ------------------------------------------------------


def test_wait_phase_failure() -> None:
    server = FakeOllama(tick=TICK).start(refuse_for=30)
    try:
        with pytest.raises(errors.NotReadyError) as caught:
            ensure_model("llama3.2:1b", host=server.url, timeout=0.3, progress="none")
    finally:
        server.stop()
    error = caught.value
    assert error.phase == "wait"
    assert error.host == server.url
    assert "wait phase failed after" in str(error)
    assert "llama3.2:1b" in str(error)
    assert server.url in str(error)


def test_version_phase_failure() -> None:
    with (
        FakeOllama(models=["llama3.2:1b"], version="0.3.14", tick=TICK) as server,
        pytest.raises(errors.ServerTooOld) as caught,
    ):
        ensure_model("llama3.2:1b", host=server.url, min_server_version=">=0.11", progress="none")
    assert caught.value.phase == "version"
    assert "0.3.14" in str(caught.value)
    assert ">=0.11" in str(caught.value)


def test_bare_minimum_version_means_at_least(server: FakeOllama) -> None:
    result = ensure_model("llama3.2:1b", host=server.url, min_server_version="0.5", progress="none")
    assert result.server_version == "0.12.11"
    with pytest.raises(errors.ServerTooOld, match=r">=0\.13"):
        ensure_model("llama3.2:1b", host=server.url, min_server_version="0.13", progress="none")


def test_bad_version_specifier_is_a_config_error(server: FakeOllama) -> None:
    with pytest.raises(errors.ConfigError):
        ensure_model("llama3.2:1b", host=server.url, min_server_version="at least 11")
    assert server.requests == []


def test_pull_phase_failure_model_not_found(server: FakeOllama) -> None:
    with pytest.raises(errors.ModelNotFound) as caught:
        ensure_model("no-such-model:7b", host=server.url, progress="none")
    assert caught.value.phase == "pull"
    assert "no-such-model:7b" in str(caught.value)
    assert server.count("POST", "/api/pull") == 1  # permanent: never retried


def test_verify_phase_failure(server: FakeOllama) -> None:
    def delete_when_done(snapshot: object) -> None:
        # Another client deletes the model the moment the pull reports success.
        if getattr(snapshot, "phase", None) == "done":
            server.remove_model("qwen2.5:0.5b")

    with pytest.raises(errors.ModelNotPresent) as caught:
        ensure_model("qwen2.5:0.5b", host=server.url, progress=delete_when_done)
    assert caught.value.phase == "verify"
    assert "verify phase failed" in str(caught.value)


def test_load_phase_failure(server: FakeOllama) -> None:
    server.fail_next(
        1, status=500, message="llama runner process has terminated", path="/api/generate"
    )
    with pytest.raises(errors.ResponseError) as caught:
        ensure_model("llama3.2:1b", host=server.url, load=True, progress="none")
    assert caught.value.phase == "load"
    assert "llama runner process has terminated" in str(caught.value)


@pytest.mark.parametrize(
    ("fraction", "label"),
    [(1.0, "100% GPU"), (0.0, "100% CPU"), (0.25, "75%/25% CPU/GPU")],
)
def test_load_reports_the_placement(fraction: float, label: str) -> None:
    with FakeOllama(models=["llama3.2:1b"], vram_fraction=fraction, tick=TICK) as server:
        result = ensure_model("llama3.2:1b", host=server.url, load=True, keep_alive="5m")
    assert result.placement is not None
    assert result.placement.label == label
    assert list(result.phases)[-2:] == ["load", "placement"]


def test_require_gpu_fails_on_cpu_with_what_nvml_sees() -> None:
    nvml = FakeNvml.preset("h100") if hasattr(FakeNvml, "preset") else FakeNvml()
    with (
        FakeOllama(models=["llama3.2:1b"], vram_fraction=0.0, tick=TICK) as server,
        pytest.raises(errors.PlacementError) as caught,
    ):
        ensure_model("llama3.2:1b", host=server.url, require_gpu=True, nvml=nvml)
    error = caught.value
    assert error.phase == "placement"
    assert "100% CPU" in str(error)
    assert error.hint is not None
    assert "GPU" in error.hint


def test_require_gpu_passes_when_fully_on_gpu() -> None:
    with FakeOllama(models=["llama3.2:1b"], vram_fraction=1.0, tick=TICK) as server:
        result = ensure_model("llama3.2:1b", host=server.url, require_gpu=True)
    assert result.placement is not None
    assert result.placement.on_gpu


# -- one deadline ------------------------------------------------------------------------------


def test_deadline_is_shared_by_every_phase_on_a_fake_clock() -> None:
    clock = FakeClock()
    with FakeOllama(tick=TICK) as server:
        server.refuse_connections(3600)
        with pytest.raises(errors.NotReadyError):
            ensure_model(
                "llama3.2:1b",
                host=server.url,
                timeout=600,
                clock=clock,
                wait=Poll(interval=5.0),
                progress="none",
            )
    # Ten minutes of waiting in no real time, and never a sleep past the deadline.
    assert clock.slept == pytest.approx(600, abs=5.0)


def test_real_clock_deadline_overshoot_is_small() -> None:
    with FakeOllama(tick=TICK) as server:
        server.stall(60, mode="silent")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ensure_model("qwen2.5:0.5b", host=server.url, timeout=0.8, progress="none")
        elapsed = time.monotonic() - started
    assert elapsed < 0.8 + 0.1, elapsed


def test_given_deadline_bounds_the_call() -> None:
    with FakeOllama(tick=TICK) as server:
        server.refuse_connections(3600)
        shared = Deadline(0.2)
        started = time.monotonic()
        with pytest.raises(errors.NotReadyError):
            ensure_model("llama3.2:1b", host=server.url, timeout=600, deadline=shared)
    assert time.monotonic() - started < 1.0


# -- many models, many hosts ------------------------------------------------------------------


def test_many_models_with_one_failing_lists_every_cause(server: FakeOllama) -> None:
    with pytest.raises(errors.AggregateError) as caught:
        ensure_models(
            ["llama3.2:1b", "nope:1b", "qwen2.5:0.5b"],
            host=server.url,
            concurrency=3,
            progress="none",
        )
    error = caught.value
    assert list(error.errors) == ["nope:1b"]
    assert isinstance(error.errors["nope:1b"], errors.ModelNotFound)
    assert "nope:1b" in str(error)
    done = [r for r in error.results if isinstance(r, EnsureResult)]
    assert sorted(r.display_name for r in done) == ["llama3.2:1b", "qwen2.5:0.5b"]
    assert server.count("GET", "/api/version") == 1  # the server is waited for once


def test_many_models_in_order(server: FakeOllama) -> None:
    results = ensure_models(["tinyllama", "llama3.2:1b"], host=server.url, progress="none")
    assert [r.display_name for r in results] == ["tinyllama:latest", "llama3.2:1b"]
    assert [r.pulled for r in results] == [True, False]


def test_fleet_reports_per_host_with_one_down() -> None:
    with (
        FakeOllama(models=["llama3.2:1b"], tick=TICK) as up,
        FakeOllama(tick=TICK) as other,
    ):
        down = FakeOllama(tick=TICK).start(refuse_for=60)
        try:
            with pytest.raises(errors.AggregateError) as caught:
                ensure_fleet(
                    "llama3.2:1b", [up.url, other.url, down.url], timeout=0.5, progress="none"
                )
        finally:
            down.stop()
    error = caught.value
    assert list(error.errors) == [down.url]
    assert isinstance(error.errors[down.url], errors.NotReadyError)
    assert {host for host, _ in cast("list[tuple[str, object]]", error.results)} == {
        up.url,
        other.url,
    }
    assert other.has_model("llama3.2:1b")


def test_fleet_success() -> None:
    with FakeOllama(tick=TICK) as one, FakeOllama(tick=TICK) as two:
        fleet = ensure_fleet(["tinyllama"], [one.url, two.url], progress="none")
    assert list(fleet) == [one.url, two.url]
    assert all(results[0].pulled for results in fleet.results.values())


# -- async ------------------------------------------------------------------------------------


def test_async_ensure_does_not_block_the_loop(server: FakeOllama) -> None:
    async def main() -> tuple[EnsureResult, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        result = await ensure_model_async("qwen2.5:0.5b", host=server.url, progress="none")
        task.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result.pulled
    assert ticks > 0


def test_async_cancellation_stops_promptly() -> None:
    with FakeOllama(tick=TICK) as server:
        server.set_bandwidth(1_000)  # a pull that would take hours

        async def main() -> float:
            task = asyncio.create_task(
                ensure_model_async("qwen2.5:0.5b", host=server.url, progress="none")
            )
            await asyncio.sleep(0.3)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - started

        assert asyncio.run(main()) < 1.0
        # The server sees the client go away and stops the download.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not server.has_model("qwen2.5:0.5b"):
            time.sleep(0.02)
        assert not server.has_model("qwen2.5:0.5b")


# -- creating from local files (air-gapped sites) ---------------------------------------------


def test_modelfile_creates_once_then_skips(tmp_path: Path, server: FakeOllama) -> None:
    gguf = tmp_path / "custom.gguf"
    with gguf.open("wb") as handle:
        handle.write(b"GGUF" + b"\0" * 4096)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM ./custom.gguf\nPARAMETER num_ctx 4096\nSYSTEM You are terse.\n")

    first = ensure_model("custom-model", host=server.url, modelfile=modelfile, progress="none")
    second = ensure_model("custom-model", host=server.url, modelfile=modelfile, progress="none")

    assert first.created
    assert not first.pulled
    assert not second.created
    assert server.count("POST", "/api/create") == 1
    assert server.count("POST", "/api/pull") == 0


# -- results ----------------------------------------------------------------------------------


def test_result_is_frozen_readable_and_json_ready(server: FakeOllama) -> None:
    result = ensure_model("llama3.2:1b", host=server.url, progress="none")
    with pytest.raises(AttributeError):
        result.pulled = True  # type: ignore[misc]
    text = repr(result)
    assert "llama3.2:1b" in text
    assert "pulled=False" in text
    assert "<table" in result._repr_html_()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["model"] == result.model
    assert set(data["phases"]) == {"wait", "version", "pull"}


def test_errors_keep_their_type_through_pickling(server: FakeOllama) -> None:
    with pytest.raises(errors.ModelNotFound) as caught:
        ensure_model("nope:1b", host=server.url, progress="none")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is errors.ModelNotFound
    assert copy.phase == "pull"
