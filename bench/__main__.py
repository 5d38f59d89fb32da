"""Run the benchmarks: ``python -m bench [--quick | --smoke] [--only NAME ...]``.

Each scenario prints its tables and writes ``<results>/<name>.json``; at the end the report is
regenerated from every result file in ``<results>``: ``docs/performance.md`` after a full run,
``<results>/performance.md`` after a quick or smoke run (so that reduced numbers never replace
the published ones by accident), or wherever ``--doc`` says.

The exit status is 1 when a scenario could not run; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from bench import report
from bench._context import REPO_ROOT, Context, Level, describe_machine
from bench._format import result_tables
from bench._model import ScenarioResult
from bench.scenarios import NAMES, load
from bench.scenarios._base import Measured

__all__ = ["DEFAULT_RESULTS", "main", "run_scenario"]

DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"
DEFAULT_DOC = REPO_ROOT / "docs" / "performance.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run ollama_ready's benchmarks against baselines."
    )
    level = parser.add_mutually_exclusive_group()
    level.add_argument(
        "--quick", action="store_true", help="a reduced run (under two minutes in all)"
    )
    level.add_argument(
        "--smoke", action="store_true", help="the least that exercises every scenario (tests)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios (repeatable, or comma-separated): {', '.join(NAMES)}",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help="where the JSON results go (default: bench/results)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="the report to write (default: docs/performance.md after a full run, "
        "<results>/performance.md otherwise)",
    )
    parser.add_argument("--no-doc", action="store_true", help="do not regenerate the report")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed for random choices (default: random)"
    )
    return parser


def _selected(parser: argparse.ArgumentParser, only: Sequence[str]) -> list[str]:
    wanted = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    return [name for name in NAMES if not wanted or name in wanted]


def run_scenario(name: str, ctx: Context) -> ScenarioResult:
    """Run one scenario and return its result; a failure becomes the result's ``error``."""
    scenario = load(name)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = describe_machine()
    clock = time.perf_counter()
    error: str | None = None
    try:
        measured = scenario.run(ctx)
    except Exception as exc:  # one broken scenario must not hide the others' results
        traceback.print_exc()
        measured, error = Measured(series=()), f"{type(exc).__name__}: {exc}"
    return ScenarioResult(
        name=scenario.name,
        title=scenario.title,
        description=scenario.description,
        level=ctx.level,
        started=started,
        duration=time.perf_counter() - clock,
        machine=machine,
        series=measured.series,
        targets=measured.targets,
        notes=measured.notes,
        parameters=measured.parameters,
        error=error,
    )


def _cache_bytecode(prefix: Path) -> None:
    """Let child Python processes cache bytecode, as an installed package does.

    With ``PYTHONDONTWRITEBYTECODE`` every child would compile ollama_ready from source, while
    ``requests`` and ``ollama`` come with compiled files from their installation. The cache goes
    to a private prefix, so the working tree stays clean; scenarios warm it up before timing.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scenarios, write their results and the report; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in NAMES:
            print(f"{name}: {load(name).title}")
        return 0
    level: Level = "quick" if args.quick else "smoke" if args.smoke else "full"
    names = _selected(parser, args.only)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    failed: list[str] = []
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ollama-ready-bench-") as work:
        _cache_bytecode(Path(work) / "pycache")
        ctx = Context(level=level, work_dir=Path(work), seed=seed)
        for name in names:
            print(f"\n=== {name} ({level}) ===", flush=True)
            result = run_scenario(name, ctx)
            path = result.write(args.results)
            print("\n".join(result_tables(result)), flush=True)
            print(f"\n-> {path}", flush=True)
            if result.error:
                failed.append(name)
    print(f"\n{len(names)} scenario(s) in {time.perf_counter() - clock:.1f} s", flush=True)
    if not args.no_doc:
        doc = args.doc or (DEFAULT_DOC if level == "full" else args.results / "performance.md")
        report.write(args.results, doc)
        print(f"report: {doc}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
