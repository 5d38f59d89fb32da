from __future__ import annotations

import pytest

from ollama_ready._format import human_bytes, human_seconds


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (None, "unknown"),
        (0, "0 B"),
        (13, "13 B"),
        (410, "410 B"),
        (1400, "1.4 KB"),
        (262016, "262 KB"),
        (4_700_000_000, "4.7 GB"),
        (6_700_000_000, "6.7 GB"),
        (12_800_000_000, "12 GB"),
        (2_000_000_000, "2 GB"),
        (1_500_000_000_000, "1.5 TB"),
    ],
)
def test_human_bytes_matches_ollama(count: int | None, text: str) -> None:
    assert human_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0123, "12 ms"), (12.34, "12.3 s"), (245, "4m05s"), (3720, "1h02m")],
)
def test_human_seconds(seconds: float, text: str) -> None:
    assert human_seconds(seconds) == text
