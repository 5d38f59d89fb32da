from __future__ import annotations

import math

import pytest

from ollama_ready._format import human_bytes, human_seconds


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
