"""A pytest plugin that gathers the reliability figures of a test run and writes them as markdown.

Tests of this package record facts through the ``reliability`` fixture (one dict per fact, kept in
``item.user_properties`` so that they also travel from pytest-xdist workers). The plugin adds, for
every test of the run, its outcome, its duration and the number of Hypothesis examples it ran.

Nothing is written unless :data:`REPORT_VARIABLE` names a file; a plain ``pytest`` run leaves the
committed report alone. Regenerate it with :data:`COMMAND`.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from hypothesis.utils.dynamicvariables import DynamicVariable

__all__ = [
    "COMMAND",
    "EXAMPLES_PROPERTY",
    "OTHER_FILES",
    "PLUGIN_NAME",
    "RECORD_PROPERTY",
    "REPORT_VARIABLE",
    "ReliabilityReport",
    "render",
]

REPORT_VARIABLE = "OLLAMA_READY_RELIABILITY_REPORT"
PLUGIN_NAME = "ollama-ready-reliability-report"
RECORD_PROPERTY = "ollama_ready_reliability"
EXAMPLES_PROPERTY = "ollama_ready_hypothesis_examples"

#: The test files whose figures the report includes besides ``tests/reliability``.
OTHER_FILES: tuple[tuple[str, str], ...] = (
    ("tests/test_client_hostile.py", "hostile server responses at the client level"),
    ("tests/test_fuzz_inputs.py", "fuzzing of parse_host, ModelName and headers"),
    ("tests/test_strategy_spec.py", "strategy specs, fuzzed"),
    ("tests/test_payload_safety.py", "runner payloads: hostile trees and stale-dir cleanup"),
    ("tests/test_payloads.py", "runner payloads: extraction, refresh, interruption, concurrency"),
    ("tests/test_cli_process.py", "the CLI as a process: SIGINT and SIGTERM at each phase"),
)

COMMAND = (
    f"{REPORT_VARIABLE}=docs/reliability.md .venv/bin/python -m pytest -q -n 2 tests/reliability "
    + " ".join(path for path, _ in OTHER_FILES)
)

_EXAMPLE_STATUSES = frozenset({"valid", "interesting"})


@dataclass(slots=True)
class _Test:
    nodeid: str
    outcome: str = "not run"
    duration: float = 0.0
    examples: int | None = None
    reason: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def file(self) -> str:
        return self.nodeid.split("::", 1)[0]


class ReliabilityReport:
    """Collect outcomes, records and Hypothesis examples; write the report at the end if asked."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.tests: dict[str, _Test] = {}

    # -- on the process that runs the test --------------------------------------------------

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """Count the examples a Hypothesis test runs (innermost, so nothing shadows it)."""
        function = getattr(item, "obj", None)
        if not getattr(function, "is_hypothesis_test", False):
            yield
            return
        from hypothesis import statistics

        # Typed DynamicVariable[None] upstream, but it holds the callback of the current test.
        collector = cast("DynamicVariable[Callable[[Any], None] | None]", statistics.collector)
        outer = collector.value
        counts: list[int] = []

        def note(statistics: Any) -> None:
            counts.append(_examples(statistics))
            if outer is not None:
                outer(statistics)

        with collector.with_value(note):
            yield
        item.user_properties.append((EXAMPLES_PROPERTY, sum(counts)))

    # -- on the controller (or the only process) ------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Note the outcome, duration, records and examples of each test."""
        test = self.tests.setdefault(report.nodeid, _Test(report.nodeid))
        test.duration += report.duration
        if report.when == "teardown":
            properties: list[tuple[str, Any]] = list(report.user_properties)
            test.records = [dict(v) for k, v in properties if k == RECORD_PROPERTY]
            counted = [int(v) for k, v in properties if k == EXAMPLES_PROPERTY]
            test.examples = sum(counted) if counted else None
        outcome = _outcome(report)
        if outcome is not None:
            test.outcome = outcome
            reason = getattr(report, "wasxfail", None)
            test.reason = reason if isinstance(reason, str) else test.reason

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the report when asked to, once, from the controlling process."""
        if not self.target or hasattr(session.config, "workerinput"):
            return
        path = Path(self.target)
        if not path.is_absolute():
            path = Path(session.config.rootpath) / path
        path.write_text(render(self.tests.values()), encoding="utf-8")


def _examples(statistics: Mapping[str, Any]) -> int:
    """Return the test cases Hypothesis ran to completion or to a failure, over all phases."""
    total = 0
    for key, phase in statistics.items():
        if key.endswith("-phase") and isinstance(phase, Mapping):
            cases = phase.get("test-cases", ())
            total += sum(1 for case in cases if case.get("status") in _EXAMPLE_STATUSES)
    return total


def _outcome(report: pytest.TestReport) -> str | None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xfailed" if report.skipped else "xpassed"
        return report.outcome
    if report.failed:
        return "error"
    if report.when == "setup" and report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


# --- rendering ---------------------------------------------------------------------------------


def render(tests: Iterable[_Test]) -> str:
    """Return the markdown report for the tests of one run."""
    every = sorted(tests, key=lambda t: t.nodeid)
    records = _records_by_kind(every)
    sections = [
        _header(),
        _summary(every, records),
        _matrix(records.get("cell", [])),
        _faults(records.get("cell", [])),
        _clock(records.get("clock", [])),
        _hostile(records.get("hostile", [])),
        _fuzz(every),
        _secrets(records.get("secret", [])),
        _load(records.get("load", []), records.get("leak", [])),
        _others(every),
        _known_bugs(every),
        _method(),
    ]
    return "\n\n".join(section.strip("\n") for section in sections if section) + "\n"


def _records_by_kind(tests: Sequence[_Test]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for test in tests:
        for record in test.records:
            kinds[str(record["kind"])].append({**record, "passed": test.outcome == "passed"})
    return kinds


def _header() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"Python {platform.python_version()}, {sys.platform}/{platform.machine()}"
    return f"""\
# Reliability and security figures

<!-- Generated by tests/reliability/_report.py from a test run. Do not edit by hand. -->

Every figure below comes from one test run of the reliability suite in `tests/reliability/`
plus the hostile-input, fuzzing, payload-safety and signal tests of the other modules. Each
number is asserted by a test, so a regression turns a test red before it can turn this page
wrong. Regenerate it with:

```sh
{COMMAND}
```

This run: {now}; {machine}; {os.cpu_count()} CPUs, shared with other work."""


def _summary(tests: Sequence[_Test], records: Mapping[str, list[dict[str, Any]]]) -> str:
    cells = records.get("cell", [])
    on_path = [c for c in cells if c["reaches"]]
    hostile = records.get("hostile", [])
    secrets = records.get("secret", [])
    faults = len({c["fault"] for c in cells})
    ops = len({c["op"] for c in cells})
    fuzz = [t for t in tests if t.examples is not None]
    bugs = [t for t in tests if t.outcome == "xfailed"]
    failed = [t for t in tests if t.outcome in ("failed", "error", "xpassed")]
    rows = [
        (
            "Fault matrix",
            f"{_passed(cells)} of {len(cells)} cells passed ({faults} faults x {ops} operations); "
            f"{_passed(on_path)} of {len(on_path)} where the fault is on the operation's path",
        ),
        (
            "Hostile server responses",
            f"{len({h['input'] for h in hostile})} hostile inputs x their operations: "
            f"{_passed(hostile)} of {len(hostile)} runs refused or survived them as specified",
        ),
        (
            "Fuzzing",
            f"{sum(t.examples or 0 for t in fuzz):,} Hypothesis examples in {len(fuzz)} tests "
            f"({sum(t.outcome == 'passed' for t in fuzz)} passed)",
        ),
        (
            "Secrets",
            f"canary searched in {len(secrets)} surfaces "
            f"({sum(int(s['searched']) for s in secrets):,} bytes); "
            f"{sum(int(s['hits']) for s in secrets)} hits",
        ),
        ("Load", _load_line(records.get("load", []))),
        ("Leaks", _leak_line(records.get("leak", []))),
        (
            "Tests in this run",
            f"{len(tests)}: {_count_outcomes(tests)}",
        ),
        (
            "Known bugs (strict xfail)",
            f"{len(bugs)}, see below" if bugs else "none",
        ),
    ]
    if failed:
        rows.append(("FAILED", ", ".join(t.nodeid for t in failed)))
    return "## Summary\n\n" + _table(("figure", "value"), rows)


def _passed(records: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for record in records if record["passed"])


def _count_outcomes(tests: Sequence[_Test]) -> str:
    counts = Counter(t.outcome for t in tests)
    order = ("passed", "xfailed", "skipped", "failed", "error", "xpassed", "not run")
    return ", ".join(f"{counts[o]} {o}" for o in order if counts[o])


def _load_line(loads: Sequence[Mapping[str, Any]]) -> str:
    if not loads:
        return "not measured in this run"
    load = loads[0]
    status = "held" if load["passed"] else "FAILED"
    return (
        f"{status}: {load['threads']} threads x ensure_model over {load['models']} models, "
        f"{load['succeeded']} succeeded, max {load['max_pulls']} pull per model, threads "
        f"{load['threads_before']} → {load['threads_after']}, open fds "
        f"{load['fds_before']} → {load['fds_after']}"
    )


def _leak_line(leaks: Sequence[Mapping[str, Any]]) -> str:
    if not leaks:
        return "not measured in this run"
    leak = leaks[0]
    status = "within the limit" if leak["passed"] else "FAILED"
    return (
        f"{status}: RSS {_kib(leak['growth_kib'])} over {leak['calls']} cached ensure_model "
        f"calls (limit {_kib(leak['limit_kib'])}), open fds {leak['fds_growth']:+d}"
    )


def _kib(value: object) -> str:
    kib = int(str(value))
    return f"{kib / 1024:+.2f} MiB" if abs(kib) >= 1024 else f"{kib:+d} KiB"


def _matrix(cells: Sequence[Mapping[str, Any]]) -> str:
    if not cells:
        return ""
    ops = [op for _, op in sorted({(int(c["op_index"]), str(c["op"])) for c in cells})]
    faults = sorted({(int(c["fault_index"]), str(c["fault"])) for c in cells})
    by_key = {(str(c["fault"]), str(c["op"])): c for c in cells}
    rows = []
    for _, fault in faults:
        row = [fault]
        for op in ops:
            cell = by_key.get((fault, op))
            row.append(_cell_text(cell) if cell is not None else "—")
        rows.append(tuple(row))
    return (
        "## Fault matrix\n\n"
        "Each cell is one test: the outcome (`ok`, or the error class; the CLI column shows its "
        "exit code and the error type of its `--json` output), the retries, the requests the "
        "server received, and the wall time against the deadline. ✓ means every assertion of "
        "the cell held; `·` marks a fault that is not on the operation's path (a pull-stream "
        "fault against a readiness probe), where the cell proves the fault leaves the "
        "operation alone.\n\n" + _table(("fault", *ops), rows)
    )


def _cell_text(cell: Mapping[str, Any]) -> str:
    mark = "✓" if cell["passed"] else "✗ FAILED"
    if not cell["reaches"]:
        mark += "·"
    outcome = str(cell["outcome"])
    if cell.get("exit_code") is not None:
        outcome = f"exit {cell['exit_code']}" + ("" if outcome == "ok" else f" ({outcome})")
    retries = int(cell["retries"])
    gone = cell.get("exit_wall")
    process = "" if gone is None else f" (gone {float(gone):.2f})"
    return (
        f"{mark} {outcome}; {retries} retr{'y' if retries == 1 else 'ies'}; "
        f"{cell['server_requests']} req; {float(cell['wall']):.2f}/{float(cell['deadline']):g} s"
        f"{process}"
    )


def _faults(cells: Sequence[Mapping[str, Any]]) -> str:
    if not cells:
        return ""
    seen: dict[str, tuple[int, str, str]] = {}
    for cell in cells:
        seen[str(cell["fault"])] = (
            int(cell["fault_index"]),
            str(cell["injection"]),
            str(cell["expected"]),
        )
    rows = [(name, inj, exp) for name, (_, inj, exp) in sorted(seen.items(), key=lambda x: x[1])]
    return "### How each fault is injected, and what is specified\n\n" + _table(
        ("fault", "injection (FakeOllama)", "specified outcome"), rows
    )


def _clock(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return ""
    rows = [
        (
            str(r["scenario"]),
            str(r["op"]),
            ("✓ " if r["passed"] else "✗ FAILED ") + str(r["outcome"]),
            str(r["retries"]),
            f"{float(r['fake']):g} of {float(r['deadline']):g} s",
            f"{float(r['real']):.2f} s",
        )
        for r in records
    ]
    return (
        "### Long deadlines on a FakeClock\n\n"
        "Where the schedule, not the waiting, is the point, the operation runs on a `FakeClock`: "
        "its deadline and every back-off pause pass in no real time, against a real "
        "FakeOllama.\n\n"
        + _table(("scenario", "operation", "outcome", "retries", "clock time", "real time"), rows)
    )


def _hostile(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return ""
    rows = [
        (
            str(r["input"]),
            str(r["op"]),
            ("✓ " if r["passed"] else "✗ FAILED ") + str(r["outcome"]),
            str(r["detail"]),
        )
        for r in sorted(records, key=lambda r: (int(r["input_index"]), str(r["op"])))
    ]
    return (
        "## Hostile server responses, at the operation level\n\n"
        "FakeOllama answers with `respond_with(...)`; the client-level cases are in "
        "`tests/test_client_hostile.py` (counted below).\n\n"
        + _table(("hostile input", "operation", "outcome", "what was checked"), rows)
    )


def _fuzz(tests: Sequence[_Test]) -> str:
    fuzz = [t for t in tests if t.examples is not None]
    if not fuzz:
        return ""
    rows = [(f"`{t.nodeid}`", f"{t.examples:,}", _mark(t.outcome)) for t in fuzz if t.examples]
    total = sum(t.examples or 0 for t in fuzz)
    return (
        "## Fuzzing\n\n"
        f"{total:,} examples in all (Hypothesis test cases that ran to completion, counted "
        "from Hypothesis' own statistics, every phase included).\n\n"
        + _table(("test", "examples", "outcome"), rows)
    )


def _secrets(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return ""
    rows = [
        (str(r["surface"]), f"{int(r['searched']):,}", str(r["hits"]), _mark_bool(r["passed"]))
        for r in records
    ]
    return (
        "## Secrets\n\n"
        "A canary API key (`OLLAMA_API_KEY`) and a canary header value (`OLLAMA_READY_HEADERS`) "
        "are set; each surface is captured whole and searched for both. Each test also asserts "
        "that the server did receive the credentials, so a search of an empty capture cannot "
        "pass.\n\n" + _table(("surface", "bytes searched", "hits", "outcome"), rows)
    )


def _load(loads: Sequence[Mapping[str, Any]], leaks: Sequence[Mapping[str, Any]]) -> str:
    if not loads and not leaks:
        return ""
    rows: list[tuple[str, ...]] = []
    for load in loads:
        pulls = ", ".join(f"{k}: {v}" for k, v in sorted(dict(load["pulls"]).items()))
        rows += [
            ("threads running ensure_model at once", str(load["threads"])),
            ("models (absent and present)", f"{load['models']} ({load['present']} present)"),
            ("succeeded", f"{load['succeeded']} of {load['threads']}"),
            ("POST /api/pull per model", pulls),
            ("threads before → after", f"{load['threads_before']} → {load['threads_after']}"),
            ("open fds before → after", f"{load['fds_before']} → {load['fds_after']}"),
            ("wall time", f"{float(load['wall']):.2f} s"),
            ("outcome", _mark_bool(load["passed"])),
        ]
    for leak in leaks:
        rows += [
            (
                "cached ensure_model calls measured",
                f"{leak['calls']} after {leak['warmup']} warm-up",
            ),
            (
                "VmRSS before → after",
                f"{leak['rss_before_kib']:,} KiB → {leak['rss_after_kib']:,} KiB "
                f"({_kib(leak['growth_kib'])}; limit {_kib(leak['limit_kib'])})",
            ),
            ("open fds growth", f"{leak['fds_growth']:+d}"),
            ("outcome", _mark_bool(leak["passed"])),
        ]
    return "## Load and leaks\n\n" + _table(("figure", "value"), rows)


def _others(tests: Sequence[_Test]) -> str:
    rows = []
    for path, what in OTHER_FILES:
        mine = [t for t in tests if t.file == path]
        examples = sum(t.examples or 0 for t in mine)
        status = _count_outcomes(mine) if mine else "not in this run"
        rows.append((f"`{path}`", what, status, f"{examples:,}" if examples else "—"))
    return "## Figures of the other modules' reliability tests\n\n" + _table(
        ("file", "what", "tests", "fuzz examples"), rows
    )


def _known_bugs(tests: Sequence[_Test]) -> str:
    bugs = [t for t in tests if t.outcome in ("xfailed", "xpassed")]
    if not bugs:
        return "## Known bugs\n\nNone: no test of this run is marked as a known failure."
    rows = [(f"`{t.nodeid}`", _mark(t.outcome), t.reason or "") for t in bugs]
    return (
        "## Known bugs\n\n"
        "These tests state the specified behaviour and fail today; they are marked "
        "`xfail(strict=True)`, so the day the bug is fixed they turn red until the mark is "
        "removed.\n\n" + _table(("test", "outcome", "bug"), rows)
    )


def _method() -> str:
    return """\
## Method

- **Operations.** `wait` is `wait_until_ready` with a 20 ms `Poll` of `GET /api/version`;
  `check` is the one-shot `readiness.check(level="model")`; `pull` is `pull_model` with a
  fixed 0.1 s `RetryPolicy` of 6 tries; `ensure` is `ensure_model` with its defaults (the
  default `Poll` wait and the default jittered retry policy); `CLI` is `python -m ollama_ready
  ensure --json -v --progress none` in a subprocess, whose outcome is its exit code and the
  error type of its `--json` error object.
- **Timed faults** (a refused or hung port, a restart seen by a readiness probe) start before
  the operation and end 0.3 s after its first request, so a CLI's start-up does not use them up.
- **Retries** are counted from what the library reports: probes beyond the first (the client's
  DEBUG request log, which also sees refused connections; `ReadyReport.attempts` agrees) plus
  pull retries (progress snapshots in phase `retrying`; for the CLI, the `attempt N of M
  failed ... retrying` warnings of its `-v` log).
- **Requests** are those FakeOllama recorded (`FakeOllama.requests`); connections refused or
  never answered do not reach it. A cell lists the requests it allows; any other request fails
  it.
- **Wall time** is measured around the call, and must stay within 100 ms after the deadline;
  an operation that ends because of the deadline must also end no earlier than 50 ms before
  it. For the CLI it runs from the timestamp of the first request in its `-v` log (the
  deadline starts a moment before) to its last line of output, when the outcome is known;
  the process must be gone 500 ms after that at the latest: CPython's own shutdown (module
  teardown and a last garbage collection) takes 50-110 ms on an idle machine and up to about
  400 ms on a loaded one, on top of the overshoot. The "gone" time is shown in brackets.
- **Hangs.** Every test runs under `pytest-timeout` with a limit of a few seconds above its
  deadline; a CLI that outlives its deadline by 20 s is killed and fails its cell.
- **Memory.** In process: the `tracemalloc` peak during the operation (the hostile body is
  allocated before tracing starts). CLI: the child's `VmHWM` (its own peak since `exec`,
  sampled every 5 ms from `/proc/PID/status`) against that of a plain CLI run that ensures a
  present model. RSS growth: `VmRSS` from `/proc/self/status` in a fresh interpreter that runs
  `ensure_model` against a FakeOllama in the parent process (so the server's request log does
  not count), after a warm-up and a `gc.collect()`.
- **Fuzz examples** are the test cases Hypothesis reports in its statistics for each test."""


def _mark(outcome: str) -> str:
    return {"passed": "✓ passed", "xfailed": "known bug (xfail)"}.get(outcome, f"✗ {outcome}")


def _mark_bool(passed: object) -> str:
    return "✓" if passed else "✗ FAILED"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return (
            "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )

    lines = [line(header), "|" + "|".join("---" for _ in header) + "|"]
    lines += [line(row) for row in rows]
    return "\n".join(lines)
