"""Cached ensure: the model is already there. How fast is "yes, it is", and how many requests?

In process, ``ensure_model`` against the official client's ``pull()`` (which on a real server
always goes through the registry path); as a whole process, the ``ollama-ready ensure`` command
against a Python process that makes the official client's ``pull()``. The server is a FakeOllama
in its own process, so the client side is all that runs in ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench._context import Context
from bench._model import Series
from bench._procs import ServerProcess, time_command
from bench.scenarios._base import Measured, Scenario, absolute_target

__all__ = ["SCENARIO"]

_MODEL = "llama3.2:1b"
_WARM_UP = 3
_PROCESS_TIMEOUT = 60.0


def _cli_command(python: str) -> list[str]:
    script = Path(python).parent / "ollama-ready"
    return [str(script)] if script.exists() else [python, "-m", "ollama_ready"]


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _in_process(ctx: Context, server: ServerProcess) -> tuple[Series, Series, Series, str]:
    import ollama

    from ollama_ready.ensure import ensure_model

    def ours() -> object:
        return ensure_model(_MODEL, host=server.url, progress="none")

    client = ollama.Client(host=server.url)

    def official() -> object:
        return client.pull(_MODEL)

    for _ in range(_WARM_UP):
        ours()
        official()
    runs = ctx.pick(full=60, quick=20, smoke=3)
    ours_ms: list[float] = []
    official_ms: list[float] = []
    ours_requests: list[float] = []
    official_requests: list[float] = []
    paths = ""
    for i in range(runs):
        order = ((ours, ours_ms, ours_requests), (official, official_ms, official_requests))
        for call, times, counts in order if i % 2 == 0 else reversed(order):
            server.clear_requests()
            times.append(_timed(call))
            log = server.requests()
            counts.append(float(len(log)))
            if call is ours:
                paths = ", ".join(f"{method} {path}" for method, path in log)
    latency = Series(
        key="ensure.latency",
        label="ensure_model(), cached",
        unit="ms",
        role="ours",
        samples=tuple(ours_ms),
        extra={"requests/call": max(ours_requests)},
        note=(
            f"ensure_model({_MODEL!r}, host=url, progress='none'): a new HTTP session (and "
            "connection) per call, as a program's one call before its first inference"
        ),
    )
    requests = Series(
        key="ensure.requests",
        label="ensure_model() requests per call",
        unit="requests",
        role="ours",
        samples=tuple(ours_requests),
        note=f"from FakeOllama's request log: {paths}",
    )
    baseline = Series(
        key="official.pull",
        label="ollama client pull(), cached",
        unit="ms",
        role="baseline",
        samples=tuple(official_ms),
        extra={"requests/call": max(official_requests)},
        note=(
            f"client.pull({_MODEL!r}) on one ollama.Client made beforehand (connection reused); "
            "a real server re-fetches the manifest from the registry on every pull, which "
            "FakeOllama answers locally, so the real cost is higher"
        ),
    )
    return latency, requests, baseline, paths


def _whole_process(ctx: Context, server: ServerProcess) -> tuple[Series, Series]:
    cli = [*_cli_command(ctx.python), "ensure", _MODEL, "--host", server.url, "--progress", "none"]
    official = [
        ctx.python,
        "-c",
        f"import ollama; ollama.Client(host={server.url!r}).pull({_MODEL!r})",
    ]
    time_command(cli, timeout=_PROCESS_TIMEOUT)
    time_command(official, timeout=_PROCESS_TIMEOUT)
    runs = ctx.pick(full=20, quick=4, smoke=2)
    ours_ms: list[float] = []
    official_ms: list[float] = []
    for i in range(runs):
        pairs = ((cli, ours_ms), (official, official_ms))
        for command, times in pairs if i % 2 == 0 else reversed(pairs):
            times.append(time_command(command, timeout=_PROCESS_TIMEOUT) * 1000)
    return (
        Series(
            key="cli.ensure",
            label="ollama-ready ensure (process)",
            unit="ms",
            role="ours",
            samples=tuple(ours_ms),
            note=f"{' '.join(cli[:-4])} ensure {_MODEL} --host URL --progress none, wall time",
        ),
        Series(
            key="official.process",
            label="python -c 'ollama pull()' (process)",
            unit="ms",
            role="baseline",
            samples=tuple(official_ms),
            note="a Python process that imports the official client and pulls, wall time",
        ),
    )


def _run(ctx: Context) -> Measured:
    spec = {"default_registry": True, "present": [_MODEL]}
    with ServerProcess(spec, python=ctx.python) as server:
        latency, requests, baseline, paths = _in_process(ctx, server)
        cli, official_process = _whole_process(ctx, server)
    targets = (
        absolute_target("in process: median ≤ 10 ms", latency, limit=10.0, baseline=baseline),
        absolute_target("in process: ≤ 3 requests", requests, limit=3.0, statistic="max"),
        absolute_target(
            "whole process: median ≤ 300 ms", cli, limit=300.0, baseline=official_process
        ),
    )
    return Measured(
        series=(latency, requests, baseline, cli, official_process),
        targets=targets,
        notes=(
            f"model {_MODEL} present on a FakeOllama in its own process; {_WARM_UP} warm-up "
            "calls each, then ours and the baseline alternate",
            f"requests of one cached ensure_model(): {paths}",
            "the seed's cached init container (`sleep 2 && ollama pull`) takes 3-5 s by its "
            "own account (not measured here)",
        ),
        parameters={"model": _MODEL},
    )


SCENARIO = Scenario(
    name="cached_ensure",
    title="Cached ensure",
    description=(
        "The model is already present. `ensure_model()` in process (latency and HTTP requests) "
        "against the official client's `pull()`, and the `ollama-ready ensure` command as a "
        "whole process against a Python process running the official client's `pull()`."
    ),
    run=_run,
)
