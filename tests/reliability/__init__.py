"""Reliability and security proof: fault matrix, hostile servers, fuzzing, secrets, load and leaks.

Run with ``OLLAMA_READY_RELIABILITY_REPORT=docs/reliability.md`` to regenerate the figures in
``docs/reliability.md`` (see :mod:`tests.reliability._report` for the exact command).
"""
