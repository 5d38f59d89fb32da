"""Peak RSS of a pull: 1 GB against 100 GB simulated. Memory must not grow with the pull.

Each pull runs in a fresh client process, which reports its peak resident set size after the
pull (``VmHWM`` on Linux, since ``ru_maxrss`` would include the parent's memory from before
``exec``); the difference between the medians of the two sizes is what the pull itself kept.
The official client's loop is measured the same way beside ours.
"""

from __future__ import annotations

from bench._context import Context
from bench._format import number
from bench._model import Role, Series, Target, median
from bench._procs import ServerProcess
from bench._pull_client import PullMeasurement, measure_pull
from bench.scenarios._base import Measured, Scenario

__all__ = ["SCENARIO"]

_GB = 1_000_000_000
_MB = 1_000_000
_TICK = 0.002
_SIZES = (1, 100)
_CLIENTS = ("ours", "ollama")
_LABELS = {"ours": "pull_model()", "ollama": "ollama client pull(stream=True) loop"}
_ROLES: dict[str, Role] = {"ours": "ours", "ollama": "baseline"}


def _series(client: str, gigabytes: int, runs: list[PullMeasurement]) -> Series:
    return Series(
        key=f"{client}.{gigabytes}",
        label=f"{_LABELS[client]}, {gigabytes} GB",
        unit="MB",
        role=_ROLES[client],
        samples=tuple(r.rss_peak_kib * 1024 / _MB for r in runs),
        extra={
            "RSS before the pull": number(
                median([r.rss_before_kib * 1024 / _MB for r in runs]), "MB"
            ),
            "progress lines": median([float(r.events) for r in runs if r.events is not None])
            if client != "ours"
            else None,
        },
        note="peak RSS of a fresh process after the pull (Linux: VmHWM; else ru_maxrss)",
    )


def _growth(series: dict[str, Series], client: str) -> float:
    return series[f"{client}.{_SIZES[1]}"].median - series[f"{client}.{_SIZES[0]}"].median


def _run(ctx: Context) -> Measured:
    runs = ctx.pick(full=3, quick=1, smoke=1)
    bytes_per_line = ctx.pick(full=50 * _MB, quick=200 * _MB, smoke=1000 * _MB)
    names = {
        (c, gb, i): f"bench-rss-{c}-{gb}-{i}:latest"
        for c in _CLIENTS
        for gb in _SIZES
        for i in range(runs)
    }
    warm_up = {c: f"bench-rss-{c}-warm-up:latest" for c in _CLIENTS}
    spec = {
        "tick": _TICK,
        "bandwidth": bytes_per_line / _TICK,
        "registry": [
            {"name": name, "size": gb * _GB, "layers": 3} for (_, gb, _), name in names.items()
        ]
        + [{"name": name, "size": _GB // 10, "layers": 3} for name in warm_up.values()],
    }
    measured: dict[tuple[str, int], list[PullMeasurement]] = {
        (c, gb): [] for c in _CLIENTS for gb in _SIZES
    }
    with ServerProcess(spec, python=ctx.python) as server:
        for client in _CLIENTS:  # fills the bytecode cache; not counted
            measure_pull(ctx.python, client, server.url, warm_up[client], timeout=120)
        for i in range(runs):
            for gb in _SIZES if i % 2 == 0 else tuple(reversed(_SIZES)):
                for client in _CLIENTS if i % 2 == 0 else tuple(reversed(_CLIENTS)):
                    measured[client, gb].append(
                        measure_pull(
                            ctx.python,
                            client,
                            server.url,
                            names[client, gb, i],
                            timeout=120 + gb * _GB / bytes_per_line * _TICK * 5,
                        )
                    )
    series = {
        s.key: s for s in (_series(c, gb, measured[c, gb]) for c in _CLIENTS for gb in _SIZES)
    }
    ours, official = _growth(series, "ours"), _growth(series, "ollama")
    target = Target(
        description=f"peak RSS {_SIZES[1]} GB - {_SIZES[0]} GB ≤ 5 MB",
        value=ours,
        limit=5.0,
        unit="MB",
        measure="median peak RSS pulling 100 GB - median peak RSS pulling 1 GB",
        ours=_LABELS["ours"],
        ours_value=ours,
        compared_unit="MB",
        baseline=_LABELS["ollama"],
        baseline_value=official,
    )
    return Measured(
        series=tuple(series.values()),
        targets=(target,),
        notes=(
            f"{runs} pull(s) per client and size, each of a model not yet present, each in a "
            "fresh process, after one untimed warm-up pull per client; sizes and clients "
            "alternate",
            f"FakeOllama in its own process: a line every {_TICK * 1000:g} ms, "
            f"{bytes_per_line / _MB:g} MB of progress per line, so the 100 GB pull reads "
            f"~{_SIZES[1] * _GB // bytes_per_line:,} progress lines",
            "MB = 10^6 bytes; the target and baseline columns compare the growth "
            "(100 GB minus 1 GB) of each client",
        ),
        parameters={"runs": runs, "bytes_per_line": bytes_per_line, "tick": _TICK},
    )


SCENARIO = Scenario(
    name="pull_memory",
    title="Peak RSS pulling 1 GB versus 100 GB",
    description=(
        "Peak resident memory of a client process that pulls a 1 GB and a 100 GB simulated "
        "model: whatever the pull keeps per progress line shows up as growth."
    ),
    run=_run,
)
