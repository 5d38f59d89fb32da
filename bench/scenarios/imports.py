"""Import time: ``python -c "import ollama_ready"`` against ``requests`` and ``ollama``.

Each is a whole fresh process (what a CLI or an init container pays), timed from spawn to exit,
many times, in rounds whose order is shuffled. ``python -c pass`` is measured alongside, so the
interpreter's own start-up can be subtracted to show the import alone.
"""

from __future__ import annotations

import random

from bench._context import Context
from bench._format import number
from bench._model import Role, Series, median
from bench._procs import time_command
from bench.scenarios._base import Measured, Scenario, ratio_target

__all__ = ["SCENARIO"]

_TIMEOUT = 60.0
#: key -> (code, label, role)
_PROGRAMS: dict[str, tuple[str, str, Role]] = {
    "ours": ("import ollama_ready", "import ollama_ready", "ours"),
    "requests": ("import requests", "import requests", "baseline"),
    "ollama": ("import ollama", "import ollama (official client)", "baseline"),
    "first_use": (
        "from ollama_ready.ensure import ensure_model",
        "from ollama_ready.ensure import ensure_model",
        "info",
    ),
    "bare": ("pass", "python -c pass (interpreter alone)", "info"),
}


def _run(ctx: Context) -> Measured:
    rounds = ctx.pick(full=30, quick=5, smoke=2)
    rng = random.Random(ctx.seed)
    keys = list(_PROGRAMS)
    timings: dict[str, list[float]] = {key: [] for key in keys}
    for key in keys:  # fills the file and bytecode caches; not counted
        time_command([ctx.python, "-c", _PROGRAMS[key][0]], timeout=_TIMEOUT)
    for _ in range(rounds):
        rng.shuffle(keys)
        for key in keys:
            seconds = time_command([ctx.python, "-c", _PROGRAMS[key][0]], timeout=_TIMEOUT)
            timings[key].append(seconds * 1000)
    bare = median(timings["bare"])
    series = tuple(
        Series(
            key=key,
            label=label,
            unit="ms",
            role=role,
            samples=tuple(timings[key]),
            extra={
                "minus interpreter start": "-"
                if key == "bare"
                else number(median(timings[key]) - bare, "ms")
            },
            note=f'{ctx.python.rsplit("/", 1)[-1]} -c "{code}", wall time of the process',
        )
        for key, (code, label, role) in _PROGRAMS.items()
    )
    by_key = {s.key: s for s in series}
    return Measured(
        series=series,
        targets=(
            ratio_target(
                "import ollama_ready ≤ 1.3x import requests",
                by_key["ours"],
                by_key["requests"],
                limit=1.3,
            ),
        ),
        notes=(
            f"{rounds} rounds of every program in a shuffled order, after one untimed warm-up "
            "run each; bytecode is cached (in a private PYTHONPYCACHEPREFIX) as for an "
            "installed package",
            "`import ollama_ready` loads its public names lazily; the 'first use' row shows what "
            "the first ensure_model call adds",
        ),
        parameters={"rounds": rounds},
    )


SCENARIO = Scenario(
    name="imports",
    title="Import time",
    description=(
        "Wall time of a fresh `python -c 'import ollama_ready'` process against the same for "
        "`requests` (which ollama_ready builds on) and for the official `ollama` client."
    ),
    run=_run,
)
