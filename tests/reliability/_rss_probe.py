"""Measure what repeated cached ``ensure_model`` calls cost in resident memory.

Run by ``test_load_and_leaks.py`` in a fresh interpreter, against a FakeOllama in the parent
process (so the server's own request log is not counted)::

    python _rss_probe.py URL MODEL CALLS WARMUP

It warms up with WARMUP calls (imports, caches and allocator arenas settle), collects garbage,
reads ``VmRSS`` from ``/proc/self/status``, the open fds and the threads, makes CALLS more calls,
collects garbage again and prints the figures as one JSON object on stdout.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
from collections.abc import Sequence

from ollama_ready.ensure import ensure_model

__all__ = ["main", "rss_kib"]


def rss_kib() -> int:
    """Return this process's resident set size in KiB (``VmRSS``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line in /proc/self/status")


def _state() -> tuple[int, int, int]:
    gc.collect()
    return rss_kib(), len(os.listdir("/proc/self/fd")), threading.active_count()


def main(argv: Sequence[str]) -> int:
    """Run the measurement; print it as JSON."""
    url, model, calls, warmup = argv[0], argv[1], int(argv[2]), int(argv[3])
    for _ in range(warmup):
        ensure_model(model, host=url, progress="none", timeout=30)
    rss_before, fds_before, threads_before = _state()
    for _ in range(calls):
        result = ensure_model(model, host=url, progress="none", timeout=30)
        assert not result.pulled
    rss_after, fds_after, threads_after = _state()
    figures = {
        "calls": calls,
        "warmup": warmup,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "threads_before": threads_before,
        "threads_after": threads_after,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
