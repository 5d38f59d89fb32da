"""The benchmark suite keeps running: a smoke run of every scenario, and an honest report.

These tests check that the benchmarks run and report, never how fast anything is: timings are
the benchmarks' business (``nox -s bench``), not the test suite's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The scenarios the issues ask for; the suite may grow, never lose one.
REQUIRED = {
    "readiness",
    "cached_ensure",
    "pull_cpu",
    "pull_memory",
    "multi_pull",
    "payloads",
    "imports",
    "gpu",
}


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _result(name: str, *, ours: float, baseline: float, limit: float) -> dict[str, Any]:
    value = ours / baseline
    return {
        "schema": 1,
        "name": name,
        "title": "Pull client CPU per simulated GB",
        "description": "A scenario written by hand.",
        "level": "full",
        "started": "2025-01-01T00:00:00+00:00",
        "duration": 1.0,
        "machine": {"cpu": "Test CPU 9000", "logical_cpus": 2, "python": "CPython 3.11.0"},
        "parameters": {},
        "notes": ["a note on the method"],
        "error": None,
        "series": [
            {
                "key": "ours",
                "label": "pull_model()",
                "unit": "CPU s/GB",
                "role": "ours",
                "samples": [ours, ours, ours],
                "extra": {},
                "note": "",
            },
            {
                "key": "official",
                "label": "official loop",
                "unit": "CPU s/GB",
                "role": "baseline",
                "samples": [baseline, baseline * 2, baseline / 2],
                "extra": {},
                "note": "",
            },
        ],
        "targets": [
            {
                "description": f"CPU per GB ≤ {limit}x the official client",
                "value": value,
                "limit": limit,
                "unit": "x",
                "measure": "median / median",
                "ours": "pull_model()",
                "ours_value": ours,
                "compared_unit": "CPU s/GB",
                "baseline": "official loop",
                "baseline_value": baseline,
                "ratio": value,
                "met": value <= limit,
            }
        ],
    }


@pytest.mark.timeout(110)
def test_smoke_run_measures_every_scenario_and_writes_the_report(tmp_path: Path) -> None:
    listed = _run("-m", "bench", "--list", timeout=60)
    names = [line.partition(":")[0] for line in listed.stdout.splitlines()]
    assert set(names) >= REQUIRED, listed.stdout + listed.stderr
    results, doc = tmp_path / "results", tmp_path / "performance.md"
    done = _run(
        "-m",
        "bench",
        "--smoke",
        "--seed",
        "7",
        "--results",
        str(results),
        "--doc",
        str(doc),
        timeout=100,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = doc.read_text(encoding="utf-8")
    assert "## Machine" in report
    assert "## Summary" in report
    for name in names:
        data = json.loads((results / f"{name}.json").read_text(encoding="utf-8"))
        assert data["error"] is None, (name, data["error"])
        assert data["level"] == "smoke"
        assert data["series"], name
        for series in data["series"]:
            assert series["samples"], (name, series["key"])
            assert all(math.isfinite(s) for s in series["samples"]), (name, series["key"])
        for target in data["targets"]:
            assert target["met"] in (True, False), (name, target["description"])
        assert f"## {data['title']}" in report
        assert f"## {data['title']}" in done.stdout
    assert report.count("| Target ") >= 7  # every scenario with targets, plus the summary


def test_report_shows_the_ratio_and_a_missed_target(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    data = _result("pull_cpu", ours=0.03, baseline=0.02, limit=0.5)
    (results / "pull_cpu.json").write_text(json.dumps(data), encoding="utf-8")
    output = tmp_path / "performance.md"

    done = _run(
        "-m", "bench.report", "--results", str(results), "--output", str(output), timeout=60
    )

    assert done.returncode == 0, done.stderr
    report = output.read_text(encoding="utf-8")
    assert "Test CPU 9000" in report
    assert "0 of 1 targets met." in report
    assert "1.50x" in report  # ours / baseline
    assert "| **NO** |" in report
    assert "0.030 CPU s/GB" in report  # the median of ours
    assert "a note on the method" in report


def test_a_met_target_is_reported_as_met(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    data = _result("pull_cpu", ours=0.01, baseline=0.04, limit=0.5)
    (results / "pull_cpu.json").write_text(json.dumps(data), encoding="utf-8")
    output = tmp_path / "performance.md"

    done = _run(
        "-m", "bench.report", "--results", str(results), "--output", str(output), timeout=60
    )

    assert done.returncode == 0, done.stderr
    report = output.read_text(encoding="utf-8")
    assert "1 of 1 targets met." in report
    assert "0.25x" in report
    assert "| **NO** |" not in report
    assert "| yes |" in report
