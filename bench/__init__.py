"""ollama_ready's benchmark suite: every claim measured next to its baseline, in the same run.

Run it with ``nox -s bench`` (or ``python -m bench``); ``--quick`` is a reduced run for
development and ``--smoke`` the minimal one the test suite uses to keep the suite from rotting.
Each scenario prints its tables and writes ``bench/results/<scenario>.json``;
:mod:`bench.report` turns those files into ``docs/performance.md``.

Machines are noisy and only ratios are stable, so every scenario runs its baselines in the same
run, interleaved with ours, and reports medians and 95th percentiles, never single runs.

It needs the ``test`` extra (the official ``ollama`` client is a baseline) and, for the other
baselines, ``bash``, ``curl`` and ``gzip``; it runs on Linux and macOS.
"""

from __future__ import annotations

__all__: list[str] = []
