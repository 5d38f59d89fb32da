"""The ``ollama-ready`` command: a thin argparse adapter over the library."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ollama_ready._version import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``ollama-ready`` command."""
    parser = argparse.ArgumentParser(
        prog="ollama-ready",
        description="Wait for an Ollama server, make sure models are present, check the GPU.",
    )
    parser.add_argument("--version", action="version", version=f"ollama-ready {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    build_parser().parse_args(argv)
    return 0
