from __future__ import annotations

import math

import pytest

from ollama_ready._format import go_duration_seconds, human_bytes, human_seconds


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (None, "unknown"),
        (math.nan, "unknown"),
        (0, "0 B"),
        (13, "13 B"),
        (410, "410 B"),
        (999.9, "999 B"),
        (1000, "1 KB"),
        (1400, "1.4 KB"),
        (262016, "262 KB"),
        (4_700_000_000, "4.7 GB"),
        (6_700_000_000, "6.7 GB"),
        (9_999_999_999, "10.0 GB"),
        (12_800_000_000, "12 GB"),
        (2_000_000_000, "2 GB"),
        (1_500_000_000_000, "1.5 TB"),
        (41_300_000.5, "41 MB"),
    ],
)
def test_human_bytes_matches_ollama(count: float | None, text: str) -> None:
    assert human_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0s"),
        (0.44, "0.4s"),
        (9.94, "9.9s"),
        (10, "10s"),
        (12.7, "12s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (542, "9m02s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3720, "1h02m"),
        (-2.5, "0.0s"),
        (None, "?"),
        (math.nan, "?"),
        (math.inf, "?"),
    ],
)
def test_human_seconds(seconds: float | None, text: str) -> None:
    assert human_seconds(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("-1m", -60.0),
        ("+1.5h", 5400.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("500ms", 0.5),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("3ns", 3e-9),
        ("1h1m1s", 3661.0),
        ("3000000h", 1.08e10),  # the form only: the range is the caller's to check
    ],
)
def test_go_duration_seconds(text: str, seconds: float) -> None:
    assert go_duration_seconds(text) == pytest.approx(seconds)


# "0" is Go's one unitless duration; the callers decide what a bare number means.
@pytest.mark.parametrize(
    "text", ["", "0", "5", "-", "m", "5 m", "1..5s", "+-5m", "1h-5m", "5d", "1e3s"]
)
def test_go_duration_seconds_rejects_numbers_without_units_and_other_forms(text: str) -> None:
    assert go_duration_seconds(text) is None
