"""Four throttled models: ``pull_models(concurrency=4)`` against pulling them one after another.

FakeOllama (in its own process) caps every blob download at the same bandwidth, as a registry
or CDN that limits each stream does, so the concurrent pull can only win by overlapping them.
"""

from __future__ import annotations

import time

from bench._context import Context
from bench._model import Series
from bench._procs import BenchError, ServerProcess
from bench.scenarios._base import Measured, Scenario, ratio_target

__all__ = ["SCENARIO"]

_MB = 1_000_000
_MODELS = 4
_TICK = 0.02
_BANDWIDTH = 100 * _MB


def _run(ctx: Context) -> Measured:
    from ollama_ready.client import OllamaClient
    from ollama_ready.pull import pull_model, pull_models

    seconds_per_model = ctx.pick(full=2.0, quick=1.0, smoke=0.3)
    size = int(seconds_per_model * _BANDWIDTH)
    trials = ctx.pick(full=3, quick=1, smoke=1)
    variants = ("concurrent", "sequential")
    names = {
        (v, t): [f"bench-multi-{v}-{t}-{m}:latest" for m in range(_MODELS)]
        for v in variants
        for t in range(trials)
    }
    spec = {
        "tick": _TICK,
        "bandwidth": _BANDWIDTH,
        "registry": [
            {"name": n, "size": size, "layers": 3} for group in names.values() for n in group
        ],
    }
    walls: dict[str, list[float]] = {v: [] for v in variants}
    with ServerProcess(spec, python=ctx.python) as server, OllamaClient(server.url) as client:
        for t in range(trials):
            for variant in variants if t % 2 == 0 else tuple(reversed(variants)):
                started = time.perf_counter()
                if variant == "concurrent":
                    outcomes = pull_models(client, names[variant, t], concurrency=_MODELS)
                    if not outcomes.ok:
                        raise BenchError(f"concurrent pull failed: {outcomes.errors}")
                else:
                    for name in names[variant, t]:
                        pull_model(client, name)
                walls[variant].append(time.perf_counter() - started)
    concurrent = Series(
        key="concurrent",
        label=f"pull_models(concurrency={_MODELS})",
        unit="s",
        role="ours",
        samples=tuple(walls["concurrent"]),
        note=f"pull_models(client, {_MODELS} names, concurrency={_MODELS})",
    )
    sequential = Series(
        key="sequential",
        label=f"pull_model() x {_MODELS}, one after another",
        unit="s",
        role="baseline",
        samples=tuple(walls["sequential"]),
        note="for name in names: pull_model(client, name)",
    )
    return Measured(
        series=(concurrent, sequential),
        targets=(
            ratio_target("concurrent ≤ 0.35x sequential", concurrent, sequential, limit=0.35),
        ),
        notes=(
            f"{_MODELS} models of {size / _MB:g} MB simulated each, every blob capped at "
            f"{_BANDWIDTH / _MB:g} MB/s (~{seconds_per_model:g} s per model), progress every "
            f"{_TICK * 1000:g} ms; {trials} trial(s) per variant, alternating, fresh models each",
            f"the ideal ratio is 1/{_MODELS} = {1 / _MODELS:.2f}x",
        ),
        parameters={"size": size, "bandwidth": _BANDWIDTH, "trials": trials, "tick": _TICK},
    )


SCENARIO = Scenario(
    name="multi_pull",
    title="Four throttled models, concurrent versus sequential",
    description=(
        "Wall time to pull four models from a server that caps every download stream: "
        "`pull_models(concurrency=4)` against pulling them one after another."
    ),
    run=_run,
)
