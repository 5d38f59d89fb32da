"""Runner payload extraction against ``gzip -dc``, and a ``refresh()`` with nothing to do.

The payloads are generated for the run: eight gzip files laid out as Ollama embedded its runners
(``linux/amd64/<runner>/<file>.gz``), about 200 MB once decompressed, with data that compresses
about as well as executables do. ``RunnerPayloads(...).refresh()`` extracts them into a fresh
temp dir; the baseline decompresses the same files one after another with ``gzip -dc``.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._context import Context
from bench._format import number
from bench._model import Series
from bench._procs import BenchError
from bench.scenarios._base import Measured, Scenario, absolute_target, ratio_target

__all__ = ["SCENARIO", "make_payloads"]

_MB = 1_000_000
#: (runner, file, decompressed MB at full size): 200 MB in all.
_LAYOUT = (
    ("cpu", "ollama_llama_server", 10),
    ("cpu_avx", "ollama_llama_server", 10),
    ("cpu_avx2", "ollama_llama_server", 10),
    ("cuda_v11", "ollama_llama_server", 15),
    ("cuda_v11", "libggml_cuda.so", 60),
    ("cuda_v12", "ollama_llama_server", 15),
    ("cuda_v12", "libggml_cuda.so", 60),
    ("rocm", "ollama_llama_server", 20),
)
_POOL_BYTES = 4 * _MB
_SLICE = _MB
_GZIP_TIMEOUT = 120.0


def _pool(rng: random.Random) -> bytes:
    """Return bytes made of a small random vocabulary: they compress about 2.8x, like code."""
    vocabulary = [rng.randbytes(rng.randint(2, 10)) for _ in range(512)]
    words: list[bytes] = []
    size = 0
    while size < _POOL_BYTES:
        chunk = rng.choices(vocabulary, k=65536)
        words += chunk
        size += sum(map(len, chunk))
    return b"".join(words)


def _write_payload(path: Path, size: int, pool: bytes, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=6) as out:
        written = 0
        while written < size:
            length = min(_SLICE, size - written)
            start = rng.randrange(len(pool) - length)
            out.write(pool[start : start + length])
            written += length


def make_payloads(root: Path, scale: float, seed: int) -> list[Path]:
    """Write the eight payloads under ``root`` (sizes times ``scale``); return their paths."""
    pool = _pool(random.Random(seed))
    jobs = [
        (root / "linux" / "amd64" / runner / f"{name}.gz", max(1, int(mb * scale * _MB)))
        for runner, name, mb in _LAYOUT
    ]
    with ThreadPoolExecutor(os.cpu_count() or 2) as executor:
        futures = [
            executor.submit(_write_payload, path, size, pool, seed + index)
            for index, (path, size) in enumerate(jobs)
        ]
        for future in futures:
            future.result()
    return [path for path, _ in jobs]


def _gzip_dc(files: list[Path], out: Path) -> float:
    out.mkdir()
    started = time.perf_counter()
    for index, path in enumerate(files):
        with open(out / f"{index}-{path.stem}", "wb") as sink:
            done = subprocess.run(
                ["gzip", "-dc", str(path)],
                stdout=sink,
                stderr=subprocess.PIPE,
                timeout=_GZIP_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            raise BenchError(f"gzip -dc {path} failed: {done.stderr.decode(errors='replace')}")
    return time.perf_counter() - started


def _extract(payloads: Path, tmp_root: Path) -> float:
    from ollama_ready.payloads import RunnerPayloads

    tmp_root.mkdir()
    started = time.perf_counter()
    runner_payloads = RunnerPayloads(payloads, tmp_root=tmp_root)
    runner_payloads.refresh()
    elapsed = time.perf_counter() - started
    runner_payloads.cleanup()
    return elapsed


def _refresh_series(ctx: Context, payloads: Path) -> tuple[Series, Series]:
    from ollama_ready.payloads import RunnerPayloads

    tmp_root = ctx.work_dir / "refresh"
    tmp_root.mkdir()
    calls = ctx.pick(full=1000, quick=300, smoke=20)
    refresh_ms: list[float] = []
    stat_ms: list[float] = []
    with RunnerPayloads(payloads, tmp_root=tmp_root) as runner_payloads:
        runners_dir = runner_payloads.refresh()
        files = [p for p in runners_dir.rglob("*") if p.is_file()]
        for _ in range(calls):
            started = time.perf_counter()
            runner_payloads.refresh()
            refresh_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            for path in files:
                os.lstat(path)
            stat_ms.append((time.perf_counter() - started) * 1000)
    return (
        Series(
            key="refresh",
            label="refresh(), nothing missing",
            unit="ms",
            role="ours",
            samples=tuple(refresh_ms),
            note="RunnerPayloads.refresh() again after a complete extraction",
        ),
        Series(
            key="lstat",
            label=f"lstat() of the {len(files)} extracted files",
            unit="ms",
            role="baseline",
            samples=tuple(stat_ms),
            note="the least any check for missing files must do",
        ),
    )


def _run(ctx: Context) -> Measured:
    if shutil.which("gzip") is None:
        raise BenchError("gzip is not installed: no baseline to compare with")
    scale = ctx.pick(full=1.0, quick=0.15, smoke=0.02)
    trials = ctx.pick(full=5, quick=2, smoke=1)
    payloads = ctx.work_dir / "payloads"
    files = make_payloads(payloads, scale, ctx.seed)
    compressed = sum(p.stat().st_size for p in files)
    decompressed = int(sum(mb for _, _, mb in _LAYOUT) * scale * _MB)
    ours: list[float] = []
    baseline: list[float] = []
    for trial in range(trials):
        steps = ("ours", "gzip") if trial % 2 == 0 else ("gzip", "ours")
        for step in steps:
            target = ctx.work_dir / f"{step}-{trial}"
            if step == "ours":
                ours.append(_extract(payloads, target))
            else:
                baseline.append(_gzip_dc(files, target))
            shutil.rmtree(target)
    extraction = Series(
        key="extract",
        label="RunnerPayloads.refresh(), first call",
        unit="s",
        role="ours",
        samples=tuple(ours),
        extra={"throughput": number(decompressed / _MB / min(ours), "MB/s (best)")},
        note="RunnerPayloads(tree, tmp_root=fresh dir).refresh(): private dir, pid file, "
        "parallel extraction",
    )
    gzip_series = Series(
        key="gzip",
        label="gzip -dc, one file after another",
        unit="s",
        role="baseline",
        samples=tuple(baseline),
        extra={"throughput": number(decompressed / _MB / min(baseline), "MB/s (best)")},
        note="for f in payloads: gzip -dc f > out/f",
    )
    refresh, lstat = _refresh_series(ctx, payloads)
    return Measured(
        series=(extraction, gzip_series, refresh, lstat),
        targets=(
            ratio_target("extraction ≤ 1.0x gzip -dc", extraction, gzip_series, limit=1.0),
            absolute_target(
                "refresh() with nothing missing ≤ 2 ms", refresh, limit=2.0, baseline=lstat
            ),
        ),
        notes=(
            f"{len(files)} gz payloads, {decompressed / _MB:.0f} MB decompressed, "
            f"{compressed / _MB:.0f} MB compressed (level 6); {trials} trial(s) each, "
            "alternating, each into a fresh dir removed afterwards",
            f"the machine has {os.cpu_count()} CPUs; extraction uses a thread per payload up to "
            "max(4, CPUs)",
        ),
        parameters={"scale": scale, "trials": trials, "decompressed": decompressed},
    )


SCENARIO = Scenario(
    name="payloads",
    title="Runner payload extraction",
    description=(
        "Extracting eight gzip runner payloads (~200 MB decompressed) with "
        "`RunnerPayloads.refresh()` against a sequential `gzip -dc` of the same files, and a "
        "`refresh()` that finds nothing missing."
    ),
    run=_run,
)
