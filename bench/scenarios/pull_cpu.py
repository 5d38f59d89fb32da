"""Pull client CPU: CPU seconds per simulated GB, ours against the official client's loop.

FakeOllama streams at full speed in its own process: a progress line every 2 ms, each line
5 MB further on, i.e. 200 lines per GB, as a real server downloading at ~83 MB/s sends them
(a line every 60 ms). Each pull runs in a fresh client process that meters only itself, and
only around the pull (imports and set-up excluded).

``pull_model()`` reads so fast a stream in batches (its reader pauses for 50 ms after a line
it had to wait for when lines come less than 12.5 ms apart); the loops over the clients read
line by line, as a caller of ``OllamaClient.pull()`` gets them.
"""

from __future__ import annotations

from bench._context import Context
from bench._format import number
from bench._model import Role, Series, median
from bench._procs import ServerProcess
from bench._pull_client import PullMeasurement, measure_pull
from bench.scenarios._base import Measured, Scenario, ratio_target

__all__ = ["SCENARIO"]

_GB = 1_000_000_000
_TICK = 0.002
_BYTES_PER_LINE = 5_000_000
_WARM_UP_SIZE = 50_000_000
_CLIENTS = ("ours", "ollama", "raw", "floor")
_LABELS = {
    "ours": "pull_model()",
    "raw": "OllamaClient.pull() loop",
    "ollama": "ollama client pull(stream=True) loop",
    "floor": "requests iter_lines() + json.loads",
}
_ROLES: dict[str, Role] = {"ours": "ours", "raw": "info", "ollama": "baseline", "floor": "info"}
_NOTES = {
    "ours": "ollama_ready.pull.pull_model(client, name): the whole engine, no reporter",
    "raw": "for event in OllamaClient(url).pull(name): our client alone, without the engine",
    "ollama": "for part in ollama.Client(url).pull(name, stream=True): pass",
    "floor": "requests.post(stream=True), iter_lines(), json.loads(line): the least a Python "
    "client can do",
}


def _series(client: str, size: int, runs: list[PullMeasurement], lines_per_gb: float) -> Series:
    gigabytes = size / _GB
    cpu = [r.cpu_s / gigabytes for r in runs]
    return Series(
        key=client,
        label=_LABELS[client],
        unit="CPU s/GB",
        role=_ROLES[client],
        samples=tuple(cpu),
        extra={
            "wall time": number(median([r.wall_s / gigabytes for r in runs]), "s/GB"),
            "CPU per line": number(median(cpu) / lines_per_gb * 1e6, "us"),
        },
        note=_NOTES[client],
    )


def _lines_per_gb(measured: dict[str, list[PullMeasurement]], size: int) -> float:
    """The progress lines per GB the server sent, as counted by the clients that see them."""
    counts = [r.events for runs in measured.values() for r in runs if r.events is not None]
    return median([count / (size / _GB) for count in counts])


def _run(ctx: Context) -> Measured:
    size = ctx.pick(full=10 * _GB, quick=4 * _GB, smoke=_GB // 2)
    runs = ctx.pick(full=5, quick=1, smoke=1)
    names = {(c, i): f"bench-cpu-{c}-{i}:latest" for c in _CLIENTS for i in range(runs)}
    warm_up = {c: f"bench-cpu-{c}-warm-up:latest" for c in _CLIENTS}
    spec = {
        "tick": _TICK,
        "bandwidth": _BYTES_PER_LINE / _TICK,
        "registry": [{"name": n, "size": size, "layers": 3} for n in names.values()]
        + [{"name": n, "size": _WARM_UP_SIZE, "layers": 3} for n in warm_up.values()],
    }
    measured: dict[str, list[PullMeasurement]] = {c: [] for c in _CLIENTS}
    timeout = 60 + 10 * size / _GB
    with ServerProcess(spec, python=ctx.python) as server:
        for client in _CLIENTS:  # fills the bytecode cache; not counted
            measure_pull(ctx.python, client, server.url, warm_up[client], timeout=timeout)
        for i in range(runs):
            order = _CLIENTS if i % 2 == 0 else tuple(reversed(_CLIENTS))
            for client in order:
                measured[client].append(
                    measure_pull(ctx.python, client, server.url, names[client, i], timeout=timeout)
                )
    lines_per_gb = _lines_per_gb(measured, size)
    series = tuple(_series(c, size, measured[c], lines_per_gb) for c in _CLIENTS)
    by_key = {s.key: s for s in series}
    return Measured(
        series=series,
        targets=(
            ratio_target(
                "CPU per GB ≤ 0.5x the official client", by_key["ours"], by_key["ollama"], limit=0.5
            ),
        ),
        notes=(
            f"{runs} pull(s) of a {size / _GB:g} GB simulated model per client, each of a model "
            "not yet present, each in a fresh process, after one untimed warm-up pull per "
            "client; the clients alternate",
            f"FakeOllama in its own process: a line every {_TICK * 1000:g} ms, "
            f"{_BYTES_PER_LINE / 1e6:g} MB of progress per line per blob",
            "pull_model() reads a stream this fast in batches: its reader pauses 50 ms after "
            "a line it waited for that came less than 12.5 ms after the one before (a real "
            "server's line every 60 ms is read at once); the client loops read line by line",
            "CPU = time.process_time() of the client process around the pull (all its threads); "
            f"the server sent {lines_per_gb:.0f} progress lines per GB (median of the clients' "
            "counts), which gives the CPU per line",
        ),
        parameters={"size": size, "runs": runs, "tick": _TICK, "bytes_per_line": _BYTES_PER_LINE},
    )


SCENARIO = Scenario(
    name="pull_cpu",
    title="Pull client CPU per simulated GB",
    description=(
        "CPU seconds the client process spends per simulated GB pulled, with FakeOllama "
        "streaming progress at full speed: `pull_model()` against the official client's "
        "`pull(stream=True)` loop on the same server, in the same run."
    ),
    run=_run,
)
