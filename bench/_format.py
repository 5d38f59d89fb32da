"""Numbers and tables as people read them: the terminal output and docs/performance.md."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench._model import Extra, ScenarioResult, Target

__all__ = ["number", "result_tables", "series_table", "table", "target_table", "verdict"]


def number(value: float | None, unit: str = "") -> str:
    """Format ``value`` with three significant digits at most, and its unit."""
    if value is None or math.isnan(value):
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.0f} %"
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    elif magnitude >= 0.01:
        text = f"{value:.3f}"
    else:
        text = f"{value:.2g}"
    return f"{text} {unit}" if unit else text


def verdict(met: bool | None) -> str:
    """Return ``yes``, ``NO`` or ``n/a`` for a target."""
    if met is None:
        return "n/a"
    return "yes" if met else "**NO**"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return the lines of a Markdown table (padded, so it reads in a terminal too)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(row) for row in rows
    ]


def _extra(value: Extra) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return number(float(value))


def series_table(result: ScenarioResult) -> list[str]:
    """Return the measurement table: every variant with n, median, p95 and its extra columns."""
    extra_columns: list[str] = []
    for series in result.series:
        extra_columns += [k for k in series.extra if k not in extra_columns]
    headers = ["Variant", "Role", "n", "Median", "p95", *extra_columns]
    rows = [
        [
            series.label,
            series.role,
            str(len(series.samples)),
            number(series.median, series.unit),
            number(series.p95, series.unit),
            *(_extra(series.extra.get(column)) for column in extra_columns),
        ]
        for series in result.series
    ]
    return table(headers, rows)


def target_table(targets: Sequence[Target], *, scenario: str | None = None) -> list[str]:
    """Return the targets table: ours, the baseline, their ratio, the value, the limit, met."""
    headers = ["Target", "Ours", "Baseline", "Ratio", "Measured", "Limit", "Met"]
    if scenario is not None:
        headers.insert(0, "Scenario")
    rows = []
    for target in targets:
        baseline = (
            f"{target.baseline}: {number(target.baseline_value, target.compared_unit)}"
            if target.baseline
            else "none"
        )
        row = [
            target.description,
            f"{target.ours}: {number(target.ours_value, target.compared_unit)}",
            baseline,
            number(target.ratio, "x"),
            number(target.value, target.unit),
            f"≤ {number(target.limit, target.unit)}",
            verdict(target.met),
        ]
        if scenario is not None:
            row.insert(0, scenario)
        rows.append(row)
    return table(headers, rows)


def result_tables(result: ScenarioResult) -> list[str]:
    """Return what a scenario prints when it finishes: its tables and its notes."""
    lines = [f"## {result.title} ({result.level}, {result.duration:.1f} s)", ""]
    if result.error:
        lines += [f"ERROR: {result.error}", ""]
    if result.series:
        lines += [*series_table(result), ""]
    if result.targets:
        lines += [*target_table(result.targets), ""]
    lines += [f"- {note}" for note in result.notes]
    return lines
